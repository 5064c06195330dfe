"""What the update run and the CLI ask of snapshots, so that they can be tested with a fake.

The real implementation is :class:`supervisor.snapshots.service.SnapshotService`.
Every method raises only :class:`~supervisor.exceptions.SnapshotError` subclasses
for expected failures (a bad id, a corrupt snapshot, a full disk, a refused dump).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from supervisor.snapshots.const import SnapshotReason
from supervisor.snapshots.models import SnapshotManifest


@dataclass(frozen=True)
class SnapshotProgress:
    """One step of a snapshot or restore, for a progress bar or the SSE stream."""

    step: str  # preflight, postgres, influxdb, config, commit, verify, done
    message: str
    percent: float


SnapshotProgressCallback = Callable[[SnapshotProgress], None]


@dataclass(frozen=True)
class CopySwap:
    """What :meth:`Snapshots.swap_in_copy` did. ``swapped`` False: the copy is gone and
    nothing changed (the caller restores the dump instead). ``kept``: the name the
    replaced database is kept under, None when there was no live database to keep."""

    swapped: bool
    kept: str | None = None


@dataclass(frozen=True)
class RunDatabases:
    """The databases a run's tag names that exist now (checked, not assumed)."""

    copy: str | None = None  # <db>__copy_<tag>: the rollback copy
    kept: str | None = None  # <db>__old_<tag>: a database a swap or restore replaced


class Snapshots(Protocol):
    async def estimate_size(self) -> int:
        """Bytes a new snapshot is expected to take (database sizes times a factor)."""
        ...

    async def preflight(self) -> int:
        """:meth:`estimate_size`, after proving a snapshot can be written now: the backups
        folder takes a file (else BackupDirUnwritable) and the estimate plus the margin
        fit in its free space (else InsufficientDiskSpace). Call it before stopping
        anything; ``create`` checks the space again."""
        ...

    async def create(
        self,
        reason: SnapshotReason,
        run_id: str | None = None,
        images: Mapping[str, str] | None = None,
        progress: SnapshotProgressCallback | None = None,
        *,
        postgres: bool = True,
        influxdb: bool = True,
        postgres_source: str | None = None,
    ) -> SnapshotManifest:
        """Preflight the disk, dump everything, commit; on failure nothing is left behind
        (a disk that fills up mid-write raises DiskFull, ``disk_full``).

        ``postgres`` / ``influxdb`` leave a part out. ``postgres_source`` dumps another
        database of the same server in the live one's name (a rollback copy, or a database
        a rollback replaced): the snapshot restores as the live database."""
        ...

    async def add_postgres(
        self,
        snapshot_id: str,
        source: str,
        progress: SnapshotProgressCallback | None = None,
    ) -> SnapshotManifest:
        """Dump database ``source`` (the rollback copy) into the complete snapshot
        ``snapshot_id``, which lacks PostgreSQL, in the live database's name; its manifest
        is replaced atomically. A snapshot that has PostgreSQL already is returned as is."""
        ...

    async def copy_database(self, tag: str) -> str | None:
        """Copy the live PostgreSQL database to ``<db>__copy_<tag>`` inside the server
        (see supervisor.snapshots.postgres_copy) and return that name; None without a
        postgres service. BackupFailed, with nothing left behind, when there is no room
        on the database's volume or the server refuses (e.g. a session it cannot end)."""
        ...

    async def swap_in_copy(self, tag: str) -> CopySwap:
        """Rename the live database to ``<db>__old_<tag>`` and the copy ``tag`` to the live
        name, in one transaction. Idempotent (a repeated call after the swap committed
        reports it again); ``swapped`` False, nothing changed, if the copy is gone."""
        ...

    async def run_databases(self, tag: str) -> RunDatabases:
        """Which of the run ``tag``'s databases (its rollback copy, the database a swap or
        restore kept aside) exist now; both None without a postgres service."""
        ...

    async def drop_copy(self, tag: str) -> None:
        """Drop the rollback copy ``tag`` (``<db>__copy_<tag>``); nothing if it is gone."""
        ...

    async def check(self, snapshot_id: str) -> SnapshotManifest:
        """Deep verification: :meth:`verify`, plus the dump read through by ``pg_restore``
        in the postgres container and the InfluxDB / config archives read; SnapshotCorrupt
        if the snapshot could not be restored. Call it right after ``create`` and before a
        restore that must not fail half-way."""
        ...

    async def restore(
        self,
        snapshot_id: str,
        progress: SnapshotProgressCallback | None = None,
        *,
        keep_replaced_as: str | None = None,
        influxdb: bool = True,
        postgres: bool = True,
    ) -> SnapshotManifest:
        """Verify every file, then replace the live PostgreSQL and InfluxDB data.

        ``influxdb=False`` leaves InfluxDB as it is: a rollback whose pre-rollback dump
        failed has no other copy of what the failed version wrote there.
        ``postgres=False`` leaves PostgreSQL as it is (a rollback that swapped its
        rollback copy in).

        With ``keep_replaced_as`` (a ``kept_database_name(db, tag)``) the replaced
        PostgreSQL database is renamed to it and kept, and a repeated call after its swap
        (a resumed rollback) restores nothing again. Safe to repeat after a crash at any
        point; a leftover ``<db>__old_*`` is never dropped.
        """
        ...

    async def restore_postgres_into(self, snapshot_id: str, database: str) -> None:
        """Restore the snapshot's dump into a new database ``database`` (a scratch copy)."""
        ...

    async def restore_postgres_into_sandbox(self, snapshot_id: str, container_id: str) -> None:
        """Restore the snapshot's dump, under its own database name, into the rehearsal
        sandbox server ``container_id`` (see supervisor.snapshots.scratch); any container
        not labelled as a sandbox, and the live server, are refused."""
        ...

    async def drop_database(self, database: str) -> None:
        """Drop a scratch database; the live database and kept databases are refused."""
        ...

    async def drop_kept_database(self, name: str) -> None:
        """Drop a database a restore kept (``<db>__old_<tag>`` only); idempotent."""
        ...

    async def get(self, snapshot_id: str) -> SnapshotManifest: ...

    async def verify(self, snapshot_id: str) -> SnapshotManifest:
        """Re-hash every file; SnapshotCorrupt if any differs."""
        ...

    async def delete(self, snapshot_id: str) -> None: ...

    async def apply_retention(self, protected: set[str]) -> list[str]:
        """Delete what is older than the newest N whole snapshots (see
        :mod:`~supervisor.snapshots.retention`), never ``protected``; the deleted ids."""
        ...

    async def list(self) -> list[SnapshotManifest]:  # last: shadows the builtin
        """Complete snapshots, newest first."""
        ...
