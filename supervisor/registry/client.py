"""``DistributionClient``: the aiohttp implementation of :class:`RegistryClient`.

This is the only code that speaks the OCI distribution API. It reads
(``HEAD``/``GET`` manifests, tags, blobs, referrers) and never writes.
Requests go through :class:`~supervisor.registry.transport.Transport`
(authentication, retries, error mapping) to the endpoint that
:class:`~supervisor.registry.endpoints.EndpointMap` chose for the reference's
host; whatever the client returns is about the reference as written.

Content is verified where the API allows it: a manifest fetched by digest (or
whose ``Docker-Content-Digest`` the registry states) and every blob must hash
to that digest, otherwise :class:`DigestMismatch`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from supervisor.exceptions import DigestMismatch, RegistryError
from supervisor.reference import ImageReference, is_digest
from supervisor.registry.auth import Authenticator
from supervisor.registry.credentials import CredentialStore
from supervisor.registry.endpoints import Endpoint, EndpointMap
from supervisor.registry.protocol import (
    DEFAULT_MAX_BLOB_BYTES,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_BYTES,
    MEDIA_OCI_INDEX,
    Manifest,
    RegistryClient,
    compute_digest,
    verify_digest,
)
from supervisor.registry.responses import json_object, media_type, paginate, referrers_page
from supervisor.registry.transport import Reply, RetryPolicy, Transport

_LOGGER = logging.getLogger(__name__)

_LIST_BYTES = 4 * 1024 * 1024
# Statuses after which HEAD gives way to GET: no digest header can be had from HEAD,
# and GET's body explains a 404 (MANIFEST_UNKNOWN vs NAME_UNKNOWN).
_HEAD_FALLBACK = frozenset({400, 404, 405, 501})
# A registry without the Referrers API answers these (OCI 1.1: fall back to tags).
_NO_REFERRERS_API = frozenset({400, 404, 405, 406, 501})


class DistributionClient(RegistryClient):
    """Read-only OCI distribution client; use ``async with`` or call :meth:`close`.

    ``mirrors`` maps reference hosts to the base URL dialled for them;
    ``insecure`` lists hosts allowed over plain http (loopback always is). A
    ``session`` passed in stays the caller's; otherwise one is created on first
    use (inside the running loop) and closed by :meth:`close`.
    """

    def __init__(
        self,
        *,
        mirrors: Mapping[str, str] | None = None,
        insecure: Collection[str] = (),
        credentials: CredentialStore | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        user_agent: str = "stack-supervisor",
        retry: RetryPolicy | None = None,
        tags_page_size: int = 100,
    ) -> None:
        self.endpoints = EndpointMap(mirrors, insecure)
        self._page_size = tags_page_size
        authenticator = Authenticator(
            credentials,
            allows_plain_http=self.endpoints.allows_plain_http,
            timeout=timeout,
            user_agent=user_agent,
        )
        self._transport = Transport(
            session,
            authenticator,
            timeout=timeout,
            user_agent=user_agent,
            retry=retry or RetryPolicy(),
        )

    async def resolve_digest(self, ref: ImageReference | str) -> str:
        ref = _parse(ref)
        reference = ref.digest or ref.tag or "latest"
        endpoint, url = self._url(ref, f"manifests/{reference}")
        accept = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        reply = await self._request(
            "HEAD", ref, endpoint, url, _describe(ref, reference), accept, _HEAD_FALLBACK
        )
        header = reply.headers.get("Docker-Content-Digest", "").strip()
        if reply.status == 200 and is_digest(header):
            if ref.digest and header != ref.digest:
                raise DigestMismatch(
                    f"registry {endpoint.describe()} reports {header} for {ref}",
                    expected=ref.digest,
                    actual=header,
                )
            _LOGGER.debug("resolved %s to %s", ref, header)
            return header
        _LOGGER.debug("HEAD %s gave %s without a digest; using GET", url, reply.status)
        manifest = await self.get_manifest(ref, reference)
        _LOGGER.debug("resolved %s to %s", ref, manifest.digest)
        return manifest.digest

    async def list_tags(self, ref: ImageReference | str) -> list[str]:
        ref = _parse(ref)
        endpoint, url = self._url(ref, "tags/list")
        tags: list[str] = []
        async for reply in self._pages(ref, endpoint, url.with_query(n=self._page_size), "tags"):
            page = json_object(reply, endpoint, f"tag list of {ref.repository}").get("tags")
            if not isinstance(page, list | None):
                raise RegistryError(f"registry {endpoint.describe()} sent a malformed tag list")
            tags.extend(str(tag) for tag in page or [])
        return tags

    async def get_manifest(
        self,
        ref: ImageReference | str,
        reference: str,
        accept: Sequence[str] = MANIFEST_MEDIA_TYPES,
    ) -> Manifest:
        ref = _parse(ref)
        endpoint, url = self._url(ref, f"manifests/{reference}")
        what = _describe(ref, reference)
        reply = await self._request(
            "GET", ref, endpoint, url, what, {"Accept": ", ".join(accept)}, ()
        )
        claimed = reply.headers.get("Docker-Content-Digest", "").strip()
        expected = reference if is_digest(reference) else claimed if is_digest(claimed) else None
        if expected is not None:
            verify_digest(reply.body, expected, f"{what} from registry {endpoint.describe()}")
        digest = expected or compute_digest(reply.body)
        return Manifest(digest, media_type(reply, endpoint, what), reply.body)

    async def get_blob(
        self,
        ref: ImageReference | str,
        digest: str,
        max_bytes: int = DEFAULT_MAX_BLOB_BYTES,
    ) -> bytes:
        ref = _parse(ref)
        _require_digest(digest, "blobs are fetched")
        endpoint, url = self._url(ref, f"blobs/{digest}")
        what = f"blob {digest} of {ref.registry}/{ref.repository}"
        reply = await self._request("GET", ref, endpoint, url, what, {}, (), max_bytes)
        verify_digest(reply.body, digest, f"{what} from registry {endpoint.describe()}")
        return reply.body

    async def get_referrers(
        self,
        ref: ImageReference | str,
        digest: str,
        artifact_type: str | None = None,
    ) -> list[dict[str, Any]] | None:
        ref = _parse(ref)
        _require_digest(digest, "referrers are listed")
        endpoint, url = self._url(ref, f"referrers/{digest}")
        if artifact_type:
            url = url.with_query(artifactType=artifact_type)
        found: list[dict[str, Any]] = []
        filtered = False
        async for reply in self._pages(ref, endpoint, url, "referrers"):
            page = referrers_page(reply)
            if page is None:
                _LOGGER.debug("registry %s has no Referrers API", endpoint.describe())
                return None
            found.extend(page[0])
            filtered = filtered or page[1]
        if artifact_type and not filtered:
            found = [m for m in found if m.get("artifactType") == artifact_type]
        return found

    async def close(self) -> None:
        """Close the session if this client created it (a passed-in one stays open)."""
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def base_url(self, ref: ImageReference | str) -> URL:
        """The URL requests for ``ref`` are sent to (after any endpoint mapping)."""
        return self.endpoints.endpoint(_parse(ref).registry).base_url

    # --- internals ------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        ref: ImageReference,
        endpoint: Endpoint,
        url: URL,
        what: str,
        headers: Mapping[str, str],
        passthrough: Collection[int],
        max_bytes: int = MAX_MANIFEST_BYTES,
    ) -> Reply:
        return await self._transport.request(
            method, ref, endpoint, url, what=what, headers=headers,
            passthrough=passthrough, max_bytes=max_bytes,
        )  # fmt: skip

    def _url(self, ref: ImageReference, tail: str) -> tuple[Endpoint, URL]:
        endpoint = self.endpoints.endpoint(ref.registry)
        return endpoint, endpoint.url(f"/v2/{ref.repository}/{tail}")

    async def _pages(
        self, ref: ImageReference, endpoint: Endpoint, url: URL, kind: str
    ) -> AsyncIterator[Reply]:
        referrers = kind == "referrers"
        accept = {"Accept": MEDIA_OCI_INDEX if referrers else "application/json"}
        passthrough = _NO_REFERRERS_API if referrers else ()
        what = f"{kind} of {ref.registry}/{ref.repository}"

        async def fetch(page: URL) -> Reply:
            return await self._request(
                "GET", ref, endpoint, page, what, accept, passthrough, _LIST_BYTES
            )

        async for reply in paginate(fetch, endpoint, url):
            yield reply


def _parse(ref: ImageReference | str) -> ImageReference:
    return ref if isinstance(ref, ImageReference) else ImageReference.parse(ref)


def _describe(ref: ImageReference, reference: str) -> str:
    kind = "manifest" if is_digest(reference) else "tag"
    return f"{kind} {reference} of {ref.registry}/{ref.repository}"


def _require_digest(value: str, use: str) -> None:
    if not is_digest(value):
        raise RegistryError(f"{value!r} is not a digest; {use} by digest only")
