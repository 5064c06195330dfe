"""A fake *upstream* registry (aiohttp.web) for protocol edge cases.

The real registry in the test environment (distribution 2.8) has no token
service, no rate limits, no Referrers API and never lies about digests; this
fake serves exactly those cases so the client's handling of them is proven
against real HTTP. It follows the distribution spec's shapes: error bodies
``{"errors": [{"code", "message"}]}``, ``WWW-Authenticate`` challenges,
``Docker-Content-Digest``, ``Link`` pagination, OCI 1.1 referrers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_body(media_type: str = DOCKER_MANIFEST, config: bytes = b"{}") -> bytes:
    """A small, valid-looking image manifest (or index) document."""
    if media_type in (OCI_INDEX, DOCKER_LIST):
        child = {"mediaType": OCI_MANIFEST, "digest": sha256(config), "size": len(config)}
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [{**child, "platform": {"architecture": "amd64", "os": "linux"}}],
        }
    else:
        document = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": "application/json", "digest": sha256(config), "size": 2},
            "layers": [],
        }
    return json.dumps(document, indent=1).encode()


@dataclass
class Seen:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeRegistry:
    """State and knobs; ``app()`` serves them. Mutate freely between requests."""

    auth: Literal["none", "basic", "bearer"] = "none"
    users: dict[str, str] = field(default_factory=dict)
    anonymous_tokens: bool = False  # token service grants tokens without credentials
    token_field: str = "token"  # or "access_token"
    token_lifetime: int | None = 300
    service: str = "fake-registry"
    head_digest_header: bool = True
    head_allowed: bool = True
    referrers_api: bool = False
    filters_applied: bool = True
    chunked_blobs: bool = False  # send blobs without Content-Length
    delay: float = 0.0  # seconds before answering any registry request
    realm: str | None = None  # token service URL to announce (default: this server)
    denied: set[str] = field(default_factory=set)  # repositories answered with 403
    # Answers served before normal handling, one per request: (status, headers).
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    # repo -> reference (tag or digest) -> (media type, body)
    manifests: dict[str, dict[str, tuple[str, bytes]]] = field(default_factory=dict)
    blobs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tampered: set[str] = field(default_factory=set)  # references served with altered bodies
    lying_header: dict[str, str] = field(default_factory=dict)  # reference -> digest header
    requests: list[Seen] = field(default_factory=list)
    token_requests: list[Seen] = field(default_factory=list)
    tokens: dict[str, set[str]] = field(default_factory=dict)  # issued token -> scopes

    def add_manifest(self, repo: str, tag: str | None, body: bytes, media_type: str) -> str:
        digest = sha256(body)
        refs = self.manifests.setdefault(repo, {})
        refs[digest] = (media_type, body)
        if tag:
            refs[tag] = (media_type, body)
        return digest

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        self.blobs.setdefault(repo, {})[digest] = data
        return digest

    def registry_requests(self, method: str | None = None) -> list[Seen]:
        return [r for r in self.requests if method is None or r.method == method]

    # --- the server -------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_post("/token", self._token)
        app.router.add_get("/v2/", self._base)
        manifests = "/v2/{name:.+}/manifests/{reference}"
        app.router.add_get(manifests, self._manifest, allow_head=False)
        app.router.add_route("HEAD", manifests, self._manifest)
        app.router.add_get("/v2/{name:.+}/tags/list", self._tags)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/v2/{name:.+}/referrers/{digest}", self._referrers)
        return app

    @staticmethod
    def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
        return web.Response(
            status=status, text=body, content_type="application/json", headers=headers
        )

    def _record(self, request: web.Request, into: list[Seen]) -> None:
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        into.append(Seen(request.method, request.path, query, dict(request.headers)))

    async def _check(self, request: web.Request, repo: str) -> web.Response | None:
        """Auth, queued failures and denials: a response to send instead, or None."""
        self._record(request, self.requests)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            status, headers = self.failures.pop(0)
            return self._error(status, "UNAVAILABLE", f"injected {status}", **headers)
        scope = f"repository:{repo}:pull"
        given = request.headers.get("Authorization", "")
        if self.auth == "basic" and self._basic_user(given) is None:
            return self._error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                **{"WWW-Authenticate": 'Basic realm="fake"'},
            )
        if self.auth == "bearer":
            token = given.removeprefix("Bearer ") if given.startswith("Bearer ") else None
            if token is None or scope not in self.tokens.get(token, set()):
                realm = self.realm or f"http://{request.host}/token"
                challenge = f'Bearer realm="{realm}",service="{self.service}",scope="{scope}"'
                return self._error(
                    401,
                    "UNAUTHORIZED",
                    "authentication required",
                    **{"WWW-Authenticate": challenge},
                )
        if repo in self.denied:
            return self._error(403, "DENIED", "requested access to the resource is denied")
        return None

    def _basic_user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password and user else None

    async def _token(self, request: web.Request) -> web.Response:
        self._record(request, self.token_requests)
        if request.method == "POST":
            form = await request.post()
            scopes = str(form.get("scope", "")).split()
            refresh = form.get("refresh_token")
            user = "refresh" if refresh and refresh == self.users.get("<token>") else None
        else:
            scopes = request.query.getall("scope", [])
            user = self._basic_user(request.headers.get("Authorization", ""))
        if user is None and ("Authorization" in request.headers or not self.anonymous_tokens):
            return web.json_response({"details": "incorrect username or password"}, status=401)
        token = secrets.token_hex(8)
        self.tokens[token] = set(scopes)
        answer: dict[str, Any] = {self.token_field: token}
        if self.token_lifetime is not None:
            answer["expires_in"] = self.token_lifetime
        return web.json_response(answer)

    async def _base(self, request: web.Request) -> web.Response:
        return await self._check(request, "") or web.json_response({})

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        repo, reference = request.match_info["name"], request.match_info["reference"]
        if (refused := await self._check(request, repo)) is not None:
            return refused
        if request.method == "HEAD" and not self.head_allowed:
            return web.Response(status=405)
        if repo not in self.manifests:
            return self._error(404, "NAME_UNKNOWN", "repository name not known to registry")
        if reference not in self.manifests[repo]:
            return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        media_type, body = self.manifests[repo][reference]
        accepted = ",".join(request.headers.getall("Accept", []))
        if media_type in (OCI_INDEX, DOCKER_LIST) and media_type not in accepted:
            return self._error(404, "MANIFEST_UNKNOWN", "no manifest in an accepted format")
        headers = {"Content-Type": media_type}
        digest = self.lying_header.get(reference, sha256(body))
        if request.method == "GET" or self.head_digest_header:
            headers["Docker-Content-Digest"] = digest
        if reference in self.tampered:
            body = body.replace(b"schemaVersion", b"schemaversion")
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return web.Response(status=200, headers=headers)
        return web.Response(body=body, headers=headers)

    async def _tags(self, request: web.Request) -> web.Response:
        repo = request.match_info["name"]
        if (refused := await self._check(request, repo)) is not None:
            return refused
        if repo not in self.manifests:
            return self._error(404, "NAME_UNKNOWN", "repository name not known to registry")
        tags = sorted(ref for ref in self.manifests[repo] if not ref.startswith("sha256:"))
        size, last = int(request.query.get("n", "1000")), request.query.get("last")
        if last is not None:
            tags = [tag for tag in tags if tag > last]
        page, headers = tags[:size], {}
        if len(tags) > size:
            headers["Link"] = f'</v2/{repo}/tags/list?n={size}&last={page[-1]}>; rel="next"'
        return web.json_response({"name": repo, "tags": page}, headers=headers)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        repo, digest = request.match_info["name"], request.match_info["digest"]
        if (refused := await self._check(request, repo)) is not None:
            return refused
        data = self.blobs.get(repo, {}).get(digest)
        if data is None:
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if digest in self.tampered:
            data = data[::-1]
        if self.chunked_blobs:
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(data)
            await response.write_eof()
            return response
        return web.Response(body=data, content_type="application/octet-stream")

    async def _referrers(self, request: web.Request) -> web.Response:
        repo, digest = request.match_info["name"], request.match_info["digest"]
        if (refused := await self._check(request, repo)) is not None:
            return refused
        if not self.referrers_api:
            return web.Response(status=404, text="404 page not found\n")
        found = self.referrers.get(digest, [])
        wanted = request.query.get("artifactType")
        headers = {}
        if wanted and self.filters_applied:
            found = [m for m in found if m.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
        return web.Response(text=json.dumps(body), content_type=OCI_INDEX, headers=headers)
