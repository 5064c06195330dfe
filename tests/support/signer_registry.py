"""Where the test signer's uploads go: the real registry, or an in-memory fake.

* :class:`RegistryWriter` pushes to a real distribution registry over its /v2 API
  with plain aiohttp (the product's client is read-only on purpose): blob uploads,
  cross-repository mounts, manifest PUTs and DELETEs.
* :class:`FakeRegistry` implements the product's ``RegistryClient`` protocol in
  memory for unit tests, with or without a Referrers API, and can be told to fail
  a request the way a broken registry does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from supervisor.exceptions import ManifestNotFound, RegistryError
from supervisor.reference import ImageReference
from supervisor.registry.protocol import (
    DEFAULT_MAX_BLOB_BYTES,
    MANIFEST_MEDIA_TYPES,
    Manifest,
    compute_digest,
)
from tests.support.cosign_signer import Upload
from tests.support.inmemory import NothingToClose


@dataclass
class RegistryWriter:
    """Writes to ``http://<host>/v2/``; every manifest it pushed can be deleted again."""

    session: aiohttp.ClientSession
    host: str
    pushed: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)

    def _url(self, path: str) -> str:
        return f"http://{self.host}/v2/{path}"

    async def mount(self, repository: str, digest: str, source: str) -> None:
        url = self._url(f"{repository}/blobs/uploads/?mount={digest}&from={source}")
        async with self.session.post(url) as reply:
            if reply.status != 201:
                raise RuntimeError(f"mount {digest} into {repository}: {reply.status}")

    async def put_blob(self, repository: str, digest: str, data: bytes) -> None:
        async with self.session.head(self._url(f"{repository}/blobs/{digest}")) as reply:
            if reply.status == 200:
                return
        async with self.session.post(self._url(f"{repository}/blobs/uploads/")) as reply:
            location = reply.headers["Location"]
        separator = "&" if "?" in location else "?"
        if location.startswith("/"):
            location = f"http://{self.host}{location}"
        async with self.session.put(f"{location}{separator}digest={digest}", data=data) as reply:
            if reply.status != 201:
                raise RuntimeError(f"upload {digest}: {reply.status} {await reply.text()}")

    async def put_manifest(
        self, repository: str, reference: str, media_type: str, body: bytes
    ) -> str:
        url = self._url(f"{repository}/manifests/{reference}")
        headers = {"Content-Type": media_type}
        async with self.session.put(url, data=body, headers=headers) as reply:
            if reply.status != 201:
                raise RuntimeError(f"manifest {reference}: {reply.status} {await reply.text()}")
        digest = compute_digest(body)
        self.pushed.append((repository, digest))
        return digest

    async def push(self, repository: str, upload: Upload) -> None:
        for digest, data in upload.blobs.items():
            await self.put_blob(repository, digest, data)
        for tag, media_type, body in upload.manifests:
            await self.put_manifest(repository, tag or compute_digest(body), media_type, body)

    async def copy_image(self, source: str, repository: str, digest: str) -> dict[str, Any]:
        """Copy one single-platform image by digest (blobs mounted); return its descriptor."""
        accept = ", ".join(MANIFEST_MEDIA_TYPES)
        url = self._url(f"{source}/manifests/{digest}")
        async with self.session.get(url, headers={"Accept": accept}) as reply:
            body = await reply.read()
            media_type = reply.headers["Content-Type"]
        document = json.loads(body)
        for blob in [document["config"], *document["layers"]]:
            await self.mount(repository, blob["digest"], source)
        await self.put_manifest(repository, digest, media_type, body)
        return {"mediaType": media_type, "digest": digest, "size": len(body)}

    async def delete_pushed(self) -> None:
        for repository, digest in reversed(self.pushed):
            async with self.session.delete(self._url(f"{repository}/manifests/{digest}")):
                pass
        self.pushed.clear()


Failure = Callable[[str, str], RegistryError | None]  # (method, reference) → error to raise


@dataclass
class FakeRegistry(NothingToClose):
    """An in-memory ``RegistryClient``; ``referrers_api`` False answers like distribution 2.8."""

    referrers_api: bool = False
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    failure: Failure | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _check(self, method: str, reference: str) -> None:
        self.calls.append((method, reference))
        error = self.failure(method, reference) if self.failure else None
        if error is not None:
            raise error

    def put_manifest(self, repository: str, tag: str | None, media_type: str, body: bytes) -> str:
        digest = compute_digest(body)
        self.manifests[(repository, digest)] = (media_type, body)
        if tag:
            self.tags[(repository, tag)] = digest
        return digest

    def push(self, repository: str, upload: Upload) -> None:
        self.blobs.update(upload.blobs)
        for tag, media_type, body in upload.manifests:
            self.put_manifest(repository, tag, media_type, body)

    def add_image(self, repository: str, marker: str = "app") -> dict[str, Any]:
        """A small image manifest in ``repository``; returns its descriptor."""
        config = json.dumps({"marker": marker}).encode()
        self.blobs[compute_digest(config)] = config
        media_type = "application/vnd.oci.image.manifest.v1+json"
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": compute_digest(config), "size": len(config)},
            "layers": [],
        }  # fmt: skip
        body = json.dumps(manifest).encode()
        digest = self.put_manifest(repository, marker, media_type, body)
        return {"mediaType": media_type, "digest": digest, "size": len(body)}

    # --- RegistryClient ----------------------------------------------------------------

    async def resolve_digest(self, ref: ImageReference | str) -> str:
        ref = ImageReference.parse(str(ref))
        return (await self.get_manifest(ref, ref.digest or ref.tag or "latest")).digest

    async def list_tags(self, ref: ImageReference | str) -> list[str]:
        repository = ImageReference.parse(str(ref)).repository
        return [tag for (repo, tag) in self.tags if repo == repository]

    async def get_manifest(
        self,
        ref: ImageReference | str,
        reference: str,
        accept: Sequence[str] = MANIFEST_MEDIA_TYPES,
    ) -> Manifest:
        self._check("manifest", reference)
        repository = ImageReference.parse(str(ref)).repository
        digest = self.tags.get((repository, reference), reference)
        if (repository, digest) not in self.manifests:
            raise ManifestNotFound(f"manifest {reference} of {repository} not found")
        media_type, body = self.manifests[(repository, digest)]
        if media_type not in accept:
            raise ManifestNotFound(f"manifest {reference} is a {media_type}, not accepted")
        return Manifest(digest, media_type, body)

    async def get_blob(
        self, ref: ImageReference | str, digest: str, max_bytes: int = DEFAULT_MAX_BLOB_BYTES
    ) -> bytes:
        self._check("blob", digest)
        if digest not in self.blobs:
            raise ManifestNotFound(f"blob {digest} not found")
        return self.blobs[digest]

    async def get_referrers(
        self, ref: ImageReference | str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        self._check("referrers", digest)
        if not self.referrers_api:
            return None
        repository = ImageReference.parse(str(ref)).repository
        found = []
        for (repo, manifest_digest), (media_type, body) in self.manifests.items():
            document = json.loads(body)
            if repo != repository or (document.get("subject") or {}).get("digest") != digest:
                continue
            kind = document.get("artifactType")
            if artifact_type is None or kind == artifact_type:
                found.append({"mediaType": media_type, "digest": manifest_digest,
                              "size": len(body), "artifactType": kind})  # fmt: skip
        return found
