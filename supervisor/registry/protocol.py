"""What the domain may ask of an OCI registry, and nothing more.

::

    update run / release policy / signature check
                 │  depends on this Protocol only
                 ▼
          RegistryClient ◀── DistributionClient (client.py, aiohttp)
                               └── the OCI distribution API, read-only

The domain never builds URLs, parses headers or computes digests itself: it
asks for a digest, a tag list, a manifest, a small blob or the referrers of a
digest, and gets verified content or one of the ``RegistryError`` subclasses
from :mod:`supervisor.exceptions`. Unit tests of the domain implement this
Protocol with in-memory fakes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from supervisor.exceptions import DigestMismatch, RegistryError
from supervisor.reference import ImageReference

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

INDEX_MEDIA_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST})
# Indexes first: a multi-platform image must be pinned at its index digest (what
# `docker push` and `docker pull` report), never at one platform's manifest.
MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_MANIFEST,
)

# Blobs this sidecar reads are signature payloads and attestations, not layers.
DEFAULT_MAX_BLOB_BYTES = 16 * 1024 * 1024
# The distribution registry refuses manifests over 4 MiB; so do we.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """``<algorithm>:<hex>`` of ``data``, the way registries name content."""
    try:
        hasher = _ALGORITHMS[algorithm]
    except KeyError:
        raise RegistryError(f"unsupported digest algorithm {algorithm!r}") from None
    return f"{algorithm}:{hasher(data).hexdigest()}"


def verify_digest(data: bytes, digest: str, what: str) -> None:
    """Raise :class:`DigestMismatch` unless ``data`` hashes to ``digest``.

    ``what`` names the content for the operator (registry, repository, kind).
    """
    algorithm = digest.partition(":")[0]
    actual = compute_digest(data, algorithm)
    if actual != digest:
        raise DigestMismatch(
            f"{what}: content does not match its digest (expected {digest}, got {actual}); "
            "the registry or something between it and us served altered content",
            expected=digest,
            actual=actual,
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest exactly as served: ``raw`` is what ``digest`` was checked against."""

    digest: str
    media_type: str
    raw: bytes

    def json(self) -> dict[str, Any]:
        """The parsed document (a ``RegistryError`` if it is not a JSON object)."""
        try:
            document = json.loads(self.raw)
        except ValueError as err:
            raise RegistryError(f"manifest {self.digest} is not valid JSON: {err}") from err
        if not isinstance(document, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return document

    @property
    def is_index(self) -> bool:
        """True for an OCI image index or a Docker manifest list (multi-platform)."""
        return self.media_type in INDEX_MEDIA_TYPES


class RegistryClient(Protocol):
    """Read-only access to OCI registries; every method raises ``RegistryError`` subclasses.

    A reference's ``registry`` is always the host as written in the image
    reference; implementations may dial another endpoint for it (a mirror), but
    what they return is about the original reference.
    """

    async def resolve_digest(self, ref: ImageReference | str) -> str:
        """The manifest digest a tag points to now (an index digest for multi-platform
        images); for a reference that already has a digest, check it exists and return it."""
        ...

    async def list_tags(self, ref: ImageReference | str) -> list[str]:
        """Every tag of ``ref``'s repository, in the registry's order (all pages)."""
        ...

    async def get_manifest(
        self,
        ref: ImageReference | str,
        reference: str,
        accept: Sequence[str] = MANIFEST_MEDIA_TYPES,
    ) -> Manifest:
        """The manifest for a tag or digest of ``ref``'s repository; by digest it is verified."""
        ...

    async def get_blob(
        self,
        ref: ImageReference | str,
        digest: str,
        max_bytes: int = DEFAULT_MAX_BLOB_BYTES,
    ) -> bytes:
        """A small blob, verified against ``digest``; larger than ``max_bytes`` is refused."""
        ...

    async def get_referrers(
        self,
        ref: ImageReference | str,
        digest: str,
        artifact_type: str | None = None,
    ) -> list[dict[str, Any]] | None:
        """Descriptors of the manifests that refer to ``digest`` (OCI 1.1 Referrers API),
        or None when the registry has no such API: then use the ``sha256-<hex>`` tag schema."""
        ...

    async def close(self) -> None:
        """Release connections; the client must not be used afterwards."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
