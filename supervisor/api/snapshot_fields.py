"""What the API reads of a snapshot: an id that is safe to put in a path, and its size.

The snapshot calls themselves go to the one snapshot adapter Protocol,
:class:`supervisor.snapshots.protocol.Snapshots` (the real one is
:class:`supervisor.snapshots.service.SnapshotService`; unit tests plug in a fake of it).
The helpers below read manifest dumps (``model_dump(mode="json")``), the shape the API sends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# `<UTC timestamp>_<short id>` and friends; no slash, no leading dot, no "..": a snapshot id
# from a URL can never name a path outside the backups folder (the store checks the exact
# format after this first gate).
SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


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
