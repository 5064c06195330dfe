"""What the update run needs from the snapshot, signature and probe adapters.

Small protocols owned by the domain; the adapters (``supervisor.snapshots``,
``supervisor.signatures``, ``supervisor.probes``) satisfy them, and the unit
tests hand in fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from supervisor.signatures.models import SignatureVerdict


class SnapshotRef(Protocol):
    @property
    def id(self) -> str: ...


class Snapshots(Protocol):
    async def estimate_size(self) -> int:
        """Bytes a new snapshot will take; raises when the disk cannot hold it."""
        ...

    async def create(
        self,
        reason: str,
        run_id: str | None,
        images: Mapping[str, str],
        progress: Callable[[str], None] | None = None,
    ) -> SnapshotRef: ...

    async def restore(
        self, snapshot_id: str, progress: Callable[[str], None] | None = None
    ) -> None: ...

    async def restore_postgres_into(self, snapshot_id: str, database: str) -> None: ...

    async def drop_database(self, database: str) -> None: ...

    async def apply_retention(self, protected: set[str]) -> list[str]: ...


class SignatureVerifier(Protocol):
    async def verify(self, service: str, image: str) -> SignatureVerdict:
        """Verdict for ``image`` (``name@digest``) under the service's policy."""
        ...


class Prober(Protocol):
    async def check(self, url: str, expect_status: int, timeout: float) -> None:
        """Raise HealthCheckFailed unless ``url`` answers ``expect_status`` in time."""
        ...

    async def version(self, url: str, json_field: str, timeout: float) -> str:
        """The version a service reports at ``url`` (a JSON field)."""
        ...
