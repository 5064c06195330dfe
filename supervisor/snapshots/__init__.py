"""Snapshots: consistent PostgreSQL / InfluxDB / config backups in the backups folder.

Use :class:`SnapshotService` (or a fake of :class:`Snapshots` in unit tests);
see docs/snapshots.md for the on-disk layout and the restore guarantees.
"""

from supervisor.snapshots.const import SnapshotReason
from supervisor.snapshots.models import (
    FileEntry,
    InfluxBackup,
    PostgresDump,
    SnapshotManifest,
    TableStats,
    check_snapshot_id,
)
from supervisor.snapshots.options import Locator, SnapshotOptions, compose_locator
from supervisor.snapshots.pg_commands import kept_database_name
from supervisor.snapshots.protocol import SnapshotProgress, SnapshotProgressCallback, Snapshots
from supervisor.snapshots.service import SnapshotService
from supervisor.snapshots.store import SnapshotStore

__all__ = [
    "FileEntry",
    "InfluxBackup",
    "Locator",
    "PostgresDump",
    "SnapshotManifest",
    "SnapshotOptions",
    "SnapshotProgress",
    "SnapshotProgressCallback",
    "SnapshotReason",
    "SnapshotService",
    "SnapshotStore",
    "Snapshots",
    "TableStats",
    "check_snapshot_id",
    "compose_locator",
    "kept_database_name",
]
