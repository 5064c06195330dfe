"""What the API asks of the snapshot store: four calls of ``supervisor.snapshots.Snapshots``.

Kept to the calls the HTTP layer makes, so :class:`supervisor.snapshots.service.SnapshotService`
satisfies it structurally (``cli/wiring.py`` has mypy check that) and tests plug in a fake.
Manifests are only required to dump themselves to JSON-able dicts; the API reads ``id``,
``reason``, ``created_at`` and the file sizes from the dump (see :func:`manifest_size`) and
passes everything else through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from supervisor.snapshots.const import SnapshotReason

# `<UTC timestamp>_<short id>` and friends; no slash, no leading dot, no "..": a snapshot id
# from a URL can never name a path outside the backups folder.
SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class SnapshotManifest(Protocol):
    def model_dump(self, *, mode: str = "python") -> dict[str, Any]: ...


class SnapshotService(Protocol):
    async def list(self) -> Sequence[SnapshotManifest]:
        """Complete snapshots, newest first."""
        ...

    async def get(self, snapshot_id: str) -> SnapshotManifest:
        """One manifest; raises a 404 :class:`~supervisor.exceptions.NotFound` if unknown."""
        ...

    async def create(
        self,
        reason: SnapshotReason,
        run_id: str | None = None,
        images: Mapping[str, str] | None = None,
    ) -> SnapshotManifest:
        """Take a snapshot now; ``images`` is service → image (``name@digest`` when known)."""
        ...

    async def restore(self, snapshot_id: str) -> SnapshotManifest:
        """Overwrite the live databases with the snapshot (verifying checksums first)."""
        ...


def valid_snapshot_id(snapshot_id: str) -> bool:
    return bool(SNAPSHOT_ID.fullmatch(snapshot_id)) and ".." not in snapshot_id


def manifest_id(manifest: Mapping[str, Any]) -> str:
    return str(manifest.get("snapshot_id") or manifest.get("id") or "")


def manifest_size(manifest: Mapping[str, Any]) -> int:
    """Total bytes: ``size_bytes``/``total_bytes`` if given, else the sum of ``files[].size``
    (``files`` as a list of entries or a name → entry mapping)."""
    for key in ("size_bytes", "total_bytes"):
        value = manifest.get(key)
        if isinstance(value, int):
            return value
    files = manifest.get("files") or []
    entries = files.values() if isinstance(files, Mapping) else files
    return sum(
        int(entry.get("size", 0))
        for entry in entries
        if isinstance(entry, Mapping) and isinstance(entry.get("size", 0), int)
    )
