"""The snapshot store: one folder per snapshot in the bind-mounted backups directory.

::

    backups/
    ├── 20250102T030405Z_0123abcd/      a complete snapshot
    │   ├── manifest.json               written last (see models.SnapshotManifest)
    │   ├── postgres.dump, postgres-globals.sql, influxdb.tar, config.tar.gz
    └── .tmp-20250102T040000Z_89abcdef/ being written, or left by a crash: never listed

A snapshot is built in ``.tmp-<id>``; every file and the folder are fsynced,
then the folder is renamed to ``<id>`` and the backups directory fsynced. So
after a crash at any moment a listed snapshot is complete, and a half one is
only ever a ``.tmp-`` folder, removed by the writer on failure or by
:meth:`SnapshotStore.remove_stale` later. Ids are checked by
:func:`~supervisor.snapshots.models.check_snapshot_id` before any path is built.

A snapshot folder whose ``manifest.json`` is missing, undecodable or names another
snapshot (a failing disk, a hand edit) is *damaged*: it is not listed, so neither a
restore nor retention ever picks it, and its folder is kept for an operator. It is
logged and counted once (:class:`~supervisor.damage.DamageReport`, kind
``manifest.json``); :meth:`SnapshotStore.scan` also names it with the reason.

Folders are 0700 and files 0600: dumps hold every row of the databases.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import ValidationError

from supervisor.damage import MANIFEST, DamageReport
from supervisor.exceptions import (
    BackupFailed,
    SnapshotCorrupt,
    SnapshotError,
    SnapshotNotFound,
    SnapshotWrongProject,
)
from supervisor.snapshots.const import MANIFEST_FILE, TEMP_PREFIX
from supervisor.snapshots.models import (
    SNAPSHOT_ID_RE,
    FileEntry,
    SnapshotManifest,
    check_snapshot_id,
)
from supervisor.snapshots.sink import HashingFileSink, hash_file, write_error

_LOGGER = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotWriter:
    """A snapshot being written into its temporary folder (from :meth:`SnapshotStore.begin`)."""

    def __init__(self, snapshot_id: str, path: Path) -> None:
        self.snapshot_id = snapshot_id
        self.path = path
        self.files: list[FileEntry] = []
        self.committed = False

    def sink(self, name: str) -> HashingFileSink:
        """A new file of the snapshot, fed by a stream; add its entry with :meth:`add`."""
        return HashingFileSink(self.path / FileEntry(name=name, size=0, sha256="0" * 64).name)

    def add(self, entry: FileEntry | None) -> FileEntry:
        if entry is None:
            raise BackupFailed("a snapshot file was not completed")
        self.files.append(entry)
        return entry

    async def add_path(self, name: str) -> FileEntry:
        """Record a file that was written into :attr:`path` by other means (hashed here)."""
        path = self.path / name
        entry = await asyncio.to_thread(hash_file, path)
        return self.add(entry)


async def _new_writer(snapshot_id: str, temp: Path) -> SnapshotWriter:
    try:
        await asyncio.to_thread(temp.mkdir, mode=0o700)
    except OSError as err:
        raise write_error(temp / MANIFEST_FILE, err, 0) from err
    return SnapshotWriter(snapshot_id, temp)


class SnapshotStore:
    """Snapshots of one Compose project in ``root``; the only code that touches those paths."""

    def __init__(self, root: Path, project: str, damage: DamageReport | None = None) -> None:
        self.root = root
        self.project = project
        self.damage = damage if damage is not None else DamageReport()

    def path_of(self, snapshot_id: str) -> Path:
        return self.root / check_snapshot_id(snapshot_id)

    # --- reading --------------------------------------------------------------------

    def _names(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return [e.name for e in entries if SNAPSHOT_ID_RE.fullmatch(e.name) and e.is_dir()]

    async def get(self, snapshot_id: str) -> SnapshotManifest:
        path = self.path_of(snapshot_id) / MANIFEST_FILE
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise SnapshotNotFound(
                f"no snapshot {snapshot_id} in {self.root}", snapshot_id=snapshot_id
            ) from None
        except OSError as err:
            raise SnapshotCorrupt(f"cannot read {path}: {err.strerror}") from err
        try:
            manifest = SnapshotManifest.model_validate_json(data)
        except ValidationError as err:
            raise SnapshotCorrupt(
                f"snapshot {snapshot_id}: manifest.json is invalid: {err.errors()[0]['msg']}",
                snapshot_id=snapshot_id,
            ) from err
        if manifest.id != snapshot_id:
            raise SnapshotCorrupt(
                f"snapshot folder {snapshot_id} holds the manifest of {manifest.id}",
                snapshot_id=snapshot_id,
            )
        return manifest

    async def verify(
        self, snapshot_id: str, names: Collection[str] | None = None
    ) -> SnapshotManifest:
        """Re-hash every file (or only ``names``: the parts about to be restored);
        SnapshotCorrupt names each one that differs or is missing."""
        manifest = await self.get(snapshot_id)
        folder = self.path_of(snapshot_id)
        problems: list[str] = []
        wanted = [e for e in manifest.files if names is None or e.name in names]
        # One thread per file: the dump and the InfluxDB archive are hashed side by side.
        hashed = await asyncio.gather(
            *(asyncio.to_thread(hash_file, folder / e.name) for e in wanted),
            return_exceptions=True,
        )
        for expected, actual in zip(wanted, hashed, strict=True):
            if isinstance(actual, OSError):
                problems.append(f"{expected.name}: {actual.strerror or actual}")
                continue
            if isinstance(actual, BaseException):
                raise actual
            if actual.size != expected.size:
                problems.append(f"{expected.name}: {actual.size} bytes, expected {expected.size}")
            elif actual.sha256 != expected.sha256:
                problems.append(f"{expected.name}: sha256 differs from the manifest")
        if problems:
            raise SnapshotCorrupt(
                f"snapshot {snapshot_id} is damaged, refusing to use it: " + "; ".join(problems),
                snapshot_id=snapshot_id,
                problems=problems,
            )
        return manifest

    @asynccontextmanager
    async def verifying(
        self, snapshot_id: str, names: Collection[str] | None = None
    ) -> AsyncIterator[asyncio.Future[SnapshotManifest]]:
        """:meth:`verify` running while the caller does what needs none of the files.

        The re-hash is the first step of a restore, and up to a third of a second per
        100 MB of dump: run alone, it is downtime. The caller awaits the future before a
        file is read or anything is changed from one (the read-only questions, the
        scratch database and the sibling do not wait for it). On leaving, it is awaited
        in any case (a damaged snapshot is an error even if nothing was read), and a
        damaged snapshot is the error raised whatever else failed meanwhile: it is the
        cause an operator must see.
        """
        task = asyncio.ensure_future(self.verify(snapshot_id, names))
        try:
            yield task
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        except BaseException as err:
            [outcome] = await asyncio.gather(task, return_exceptions=True)
            if isinstance(outcome, SnapshotCorrupt) and outcome is not err:
                raise outcome from err
            raise
        await task

    def check_project(self, manifest: SnapshotManifest) -> None:
        if manifest.project != self.project:
            raise SnapshotWrongProject(
                f"snapshot {manifest.id} belongs to Compose project {manifest.project!r}, "
                f"not {self.project!r}; refusing to restore another stack's data here",
                snapshot_id=manifest.id,
                snapshot_project=manifest.project,
            )

    # --- writing --------------------------------------------------------------------

    @asynccontextmanager
    async def begin(self, snapshot_id: str) -> AsyncIterator[SnapshotWriter]:
        """A temporary folder for a new snapshot, removed if the block fails.

        Call :meth:`commit` inside the block; leaving it without committing (an error, a
        cancellation) removes everything written so far.
        """
        final = self.path_of(snapshot_id)
        temp = self.root / f"{TEMP_PREFIX}{snapshot_id}"
        if await asyncio.to_thread(final.exists):
            raise BackupFailed(f"snapshot {snapshot_id} exists already")
        writer = await _new_writer(snapshot_id, temp)
        try:
            yield writer
        finally:
            if not writer.committed:
                await asyncio.shield(asyncio.to_thread(shutil.rmtree, temp, True))
                _LOGGER.info("removed incomplete snapshot folder %s", temp)

    async def commit(self, writer: SnapshotWriter, manifest: SnapshotManifest) -> None:
        if manifest.id != writer.snapshot_id or manifest.files != writer.files:
            raise BackupFailed("the manifest does not describe the files written")
        if manifest.project != self.project:
            raise BackupFailed(f"manifest for project {manifest.project}, store is {self.project}")
        data = manifest.model_dump_json(indent=2).encode()
        await asyncio.to_thread(self._commit, writer.path, self.path_of(manifest.id), data)
        writer.committed = True
        _LOGGER.info("snapshot %s complete (%d bytes)", manifest.id, manifest.total_bytes)

    def _commit(self, temp: Path, final: Path, manifest: bytes) -> None:
        path = temp / MANIFEST_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(manifest)
                handle.flush()
                os.fsync(handle.fileno())
            for entry in os.scandir(temp):  # the dumps were fsynced by their sinks
                if entry.name != MANIFEST_FILE and entry.is_file():
                    fd = os.open(entry.path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            _fsync_dir(temp)
            os.rename(temp, final)
            _fsync_dir(self.root)
        except OSError as err:
            raise write_error(path, err, len(manifest)) from err

    @asynccontextmanager
    async def amend(self, snapshot_id: str) -> AsyncIterator[SnapshotWriter]:
        """A temporary folder for files to add to the complete snapshot ``snapshot_id``
        (removed if the block fails); :meth:`commit_amend` adds them.

        For a pre-update snapshot whose PostgreSQL dump is taken from the rollback copy
        after the app runs again: the rest of it (InfluxDB, config) was committed while
        the app was stopped, so a crash before the dump is added still leaves it usable.
        """
        await self.get(snapshot_id)
        temp = self.root / f"{TEMP_PREFIX}{snapshot_id}-amend"
        await asyncio.to_thread(shutil.rmtree, temp, True)  # left by a crashed attempt
        writer = await _new_writer(snapshot_id, temp)
        try:
            yield writer
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, temp, True))

    async def commit_amend(self, writer: SnapshotWriter, manifest: SnapshotManifest) -> None:
        """Move the new files in, then replace the manifest atomically (written, fsynced,
        renamed over the old one): a crash before the rename leaves the snapshot as it
        was (unlisted files are ignored, and overwritten by the next attempt)."""
        before = await self.get(writer.snapshot_id)
        if manifest.id != writer.snapshot_id or manifest.files != [*before.files, *writer.files]:
            raise BackupFailed("the amended manifest does not describe the snapshot's files")
        data = manifest.model_dump_json(indent=2).encode()
        await asyncio.to_thread(self._commit_amend, writer, self.path_of(manifest.id), data)
        writer.committed = True
        _LOGGER.info("snapshot %s amended (%d bytes now)", manifest.id, manifest.total_bytes)

    def _commit_amend(self, writer: SnapshotWriter, final: Path, manifest: bytes) -> None:
        path = final / f"{MANIFEST_FILE}.new"
        try:
            for entry in writer.files:
                fd = os.open(writer.path / entry.name, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(writer.path / entry.name, final / entry.name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(manifest)
                handle.flush()
                os.fsync(handle.fileno())
            _fsync_dir(final)
            os.replace(path, final / MANIFEST_FILE)
            _fsync_dir(final)
        except OSError as err:
            raise write_error(path, err, len(manifest)) from err

    # --- removing -------------------------------------------------------------------

    async def delete(self, snapshot_id: str) -> None:
        """Remove a snapshot; renamed out of the listing first, so a crash never half-lists it."""
        folder = self.path_of(snapshot_id)
        if not await asyncio.to_thread(folder.is_dir):
            raise SnapshotNotFound(f"no snapshot {snapshot_id} in {self.root}")
        doomed = self.root / f"{TEMP_PREFIX}deleting-{snapshot_id}"
        await asyncio.to_thread(os.rename, folder, doomed)
        await asyncio.to_thread(_fsync_dir, self.root)
        await asyncio.to_thread(shutil.rmtree, doomed, True)
        _LOGGER.info("deleted snapshot %s", snapshot_id)

    async def remove_stale(self, older_than: float) -> list[str]:
        """Remove ``.tmp-`` folders untouched for ``older_than`` seconds (crashed writers)."""
        cutoff = time.time() - older_than

        def sweep() -> list[str]:
            removed: list[str] = []
            if not self.root.is_dir():
                return removed
            for entry in os.scandir(self.root):
                stale = entry.is_dir() and entry.stat().st_mtime < cutoff
                if entry.name.startswith(TEMP_PREFIX) and stale:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(entry.name)
            return removed

        removed = await asyncio.to_thread(sweep)
        for name in removed:
            _LOGGER.warning("removed a snapshot folder left by an interrupted run: %s", name)
        return removed

    async def scan(self) -> tuple[list[SnapshotManifest], dict[str, str]]:
        """Usable snapshots (newest first) and damaged folders (name → why), both kept on disk.

        A damaged folder is reported once per process (logged, counted), never raised: one bad
        manifest must not hide the good snapshots nor fail a listing.
        """
        names = await asyncio.to_thread(self._names)
        found: list[SnapshotManifest] = []
        damaged: dict[str, str] = {}
        for name in names:
            try:
                found.append(await self.get(name))
            except SnapshotNotFound:
                if await asyncio.to_thread((self.root / name).is_dir):
                    damaged[name] = "manifest.json is missing"
                    self.damage.report(MANIFEST, str(self.root / name), damaged[name])
                continue  # else: deleted while listing
            except SnapshotError as err:
                damaged[name] = err.message
                self.damage.report(
                    MANIFEST, str(self.root / name), f"{err.message}; folder kept, not listed"
                )
        found.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        return found, damaged

    # last in the class: the name shadows the builtin for annotations that follow it
    async def list(self) -> list[SnapshotManifest]:
        """Usable snapshots, newest first; damaged folders are reported and skipped."""
        found, _damaged = await self.scan()
        return found
