"""The snapshot facade the update run and the CLI use (implements :class:`.protocol.Snapshots`).

::

    SnapshotService ──▶ SnapshotStore (backups/)        manifests, verify, retention
          │ ├──────▶ check.py                          restorable? (pg_restore read, tars)
          │ ├──────▶ PostgresSnapshots ─┐
          │ └──────▶ InfluxSnapshots  ──┴─ Engine.exec / put_file ─▶ database containers
          └── locate(role) → container id (Compose labels, or a test's own containers)

One operation at a time (a lock): two snapshots would compete for the disk and the
preflight estimate would be wrong. Within a snapshot, PostgreSQL and InfluxDB are
dumped at the same time (different containers, different files). Containers are
looked up per operation, so a database container recreated since start-up is found
again. Engine failures are reported as BackupFailed / RestoreFailed with what they
interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from supervisor.const import Role
from supervisor.engine.protocol import Engine
from supervisor.exceptions import (
    BackupFailed,
    EngineError,
    RestoreFailed,
    SnapshotError,
)
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots import postgres_copy, postgres_restore, scratch
from supervisor.snapshots.check import check_local_archives, check_postgres_dump
from supervisor.snapshots.config_files import archive_config
from supervisor.snapshots.const import CONFIG_ARCHIVE_FILE, SnapshotReason
from supervisor.snapshots.disk import check_free_space, check_writable
from supervisor.snapshots.in_place import HostFolders
from supervisor.snapshots.influx import InfluxSnapshots
from supervisor.snapshots.models import (
    InfluxBackup,
    PostgresDump,
    SnapshotManifest,
    new_snapshot_id,
)
from supervisor.snapshots.options import Locator, SnapshotOptions, tree_size
from supervisor.snapshots.postgres import (
    PostgresCredentials,
    PostgresSnapshots,
    resolve_credentials,
)
from supervisor.snapshots.protocol import (
    CopySwap,
    RunDatabases,
    SnapshotProgress,
    SnapshotProgressCallback,
    Snapshots,
)
from supervisor.snapshots.retention import select_expired
from supervisor.snapshots.store import SnapshotStore, SnapshotWriter
from supervisor.snapshots.together import together

_LOGGER = logging.getLogger(__name__)


def _report(progress: SnapshotProgressCallback | None, step: str, message: str, pct: float) -> None:
    _LOGGER.info("%s: %s", step, message)
    if progress is not None:
        progress(SnapshotProgress(step, message, pct))


async def _dump_both(
    pg: PostgresSnapshots | None,
    influx: InfluxSnapshots | None,
    writer: SnapshotWriter,
    progress: SnapshotProgressCallback | None,
) -> tuple[PostgresDump | None, InfluxBackup | None]:
    """PostgreSQL and InfluxDB at the same time (different containers, different files):
    the backup takes as long as the longer of the two, not their sum. If one fails the
    other is stopped, and the caller's writer removes the whole folder."""
    dumping: list[Awaitable[Any]] = []
    if pg is not None:
        _report(progress, "postgres", f"dumping PostgreSQL database {pg.database}", 5)
        dumping.append(pg.dump(writer))
    if influx is not None:
        _report(progress, "influxdb", "backing up InfluxDB", 5)
        dumping.append(influx.backup(writer))
    results = await together(*dumping)
    dump = next((r for r in results if isinstance(r, PostgresDump)), None)
    backup = next((r for r in results if isinstance(r, InfluxBackup)), None)
    return dump, backup


def _restored_files(manifest: SnapshotManifest, postgres: bool, influxdb: bool) -> set[str]:
    names: set[str] = set()
    if postgres and manifest.postgres is not None:
        names |= {manifest.postgres.dump_file, manifest.postgres.globals_file}
    if influxdb and manifest.influxdb is not None:
        names.add(manifest.influxdb.archive_file)
    return names


class SnapshotService:
    def __init__(
        self, engine: Engine, store: SnapshotStore, options: SnapshotOptions, locate: Locator
    ) -> None:
        self.engine = engine
        self.store = store
        self.options = options
        self._locate = locate
        self._lock = asyncio.Lock()
        self._hosts = HostFolders(
            engine, options.backup_dir, options.backup_host_dir, options.project
        )

    async def _postgres(self, error: type[SnapshotError]) -> PostgresSnapshots | None:
        container_id = await self._find(Role.POSTGRES, error)
        if container_id is None:
            return None
        credentials = await resolve_credentials(
            self.engine, container_id, self.options.postgres_user,
            self.options.postgres_db, self.options.postgres_password,
        )  # fmt: skip
        return PostgresSnapshots(
            self.engine, container_id, credentials,
            timeout=self.options.timeout, exec_timeout=self.options.exec_timeout,
            restore_jobs=self.options.restore_jobs, hosts=self._hosts,
        )  # fmt: skip

    async def _influx(self, error: type[SnapshotError]) -> InfluxSnapshots | None:
        container_id = await self._find(Role.INFLUXDB, error)
        if container_id is None:
            return None
        return InfluxSnapshots(
            self.engine, container_id, version=self.options.influxdb_version,
            token=self.options.influx_token, org=self.options.influx_org,
            timeout=self.options.timeout, exec_timeout=self.options.exec_timeout,
        )  # fmt: skip

    async def _find(self, role: Role, error: type[SnapshotError]) -> str | None:
        try:
            return await self._locate(role)
        except (EngineError, SnapshotError) as err:
            raise error(f"cannot find the {role} container: {err.message}") from err

    async def estimate_size(self) -> int:
        pg, influx = await self._postgres(BackupFailed), await self._influx(BackupFailed)
        return await self._estimate(pg, influx)

    async def preflight(self) -> int:
        """The estimate, once the backups folder took a test file and the estimate plus
        the margin fit in its free space; for the update run's ``preflight`` stage, while
        nothing is stopped yet. The database containers must be running (a backup needs
        them). Not under the lock: it must not wait for a long dump to end."""
        await asyncio.to_thread(check_writable, self.options.backup_dir)
        try:
            pg, influx = await self._postgres(BackupFailed), await self._influx(BackupFailed)
            if pg is not None:
                await pg.ensure_running(BackupFailed)
            if influx is not None:
                await influx.detect(BackupFailed)
            needed = await self._estimate(pg, influx)
        except EngineError as err:
            raise BackupFailed(f"cannot estimate the snapshot size: {err.message}") from err
        free = await asyncio.to_thread(
            check_free_space, self.options.backup_dir, needed, self.options.min_free_bytes_margin
        )
        _LOGGER.info(
            "preflight: a snapshot needs about %d bytes (+%d margin), %d are free",
            needed, self.options.min_free_bytes_margin, free,
        )  # fmt: skip
        return needed

    async def _estimate(self, pg: PostgresSnapshots | None, influx: InfluxSnapshots | None) -> int:
        sizes: list[int] = await together(
            *(part.size() for part in (pg, influx) if part is not None),
            asyncio.to_thread(tree_size, self.options.config_paths),
        )
        return int(sum(sizes[:-1]) * self.options.size_factor) + sizes[-1]

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
        async with self._lock:
            try:
                return await self._create(
                    SnapshotReason(reason), run_id, images or {}, progress,
                    (postgres, influxdb, postgres_source),
                )  # fmt: skip
            except EngineError as err:
                raise BackupFailed(f"snapshot failed, nothing was kept: {err.message}") from err

    async def _create(
        self,
        reason: SnapshotReason,
        run_id: str | None,
        images: Mapping[str, str],
        progress: SnapshotProgressCallback | None,
        parts: tuple[bool, bool, str | None] = (True, True, None),
    ) -> SnapshotManifest:
        with_postgres, with_influxdb, source = parts
        _report(progress, "preflight", "checking the databases and free disk space", 0)
        pg = await self._postgres(BackupFailed) if with_postgres else None
        influx = await self._influx(BackupFailed) if with_influxdb else None
        live_name = pg.database if pg is not None else None
        if pg is not None and source is not None:
            pg = self._source(pg, source)
        if pg is not None:
            await pg.ensure_running(BackupFailed)
        if influx is not None:
            await influx.detect(BackupFailed)
        needed = await self._estimate(pg, influx)
        await asyncio.to_thread(
            check_free_space, self.options.backup_dir, needed, self.options.min_free_bytes_margin
        )
        snapshot_id = new_snapshot_id()
        versions: dict[str, str] = {}
        async with self.store.begin(snapshot_id) as writer:
            dump, influx_backup = await _dump_both(pg, influx, writer, progress)
            if dump is not None and live_name is not None:
                dump = dump.model_copy(update={"database": live_name})  # restored as the live one
            if dump is not None:
                versions["postgres"] = dump.server_version
            if influx_backup is not None:
                versions["influxdb"] = influx_backup.server_version
            if self.options.config_paths:
                _report(progress, "config", "archiving config files", 90)
                await archive_config(writer, self.options.config_paths)
            _report(progress, "commit", "writing the manifest", 95)
            manifest = SnapshotManifest(
                id=snapshot_id,
                project=self.options.project,
                reason=reason,
                run_id=run_id,
                created_at=datetime.now(UTC),
                images=dict(images),
                database_versions=versions,
                migration_revision=dump.migration_revision if dump else None,
                postgres=dump,
                influxdb=influx_backup,
                config_paths=[str(path) for path in self.options.config_paths],
                files=list(writer.files),
            )
            await self.store.commit(writer, manifest)
        _report(progress, "done", f"snapshot {snapshot_id} complete", 100)
        return manifest

    async def add_postgres(
        self,
        snapshot_id: str,
        source: str,
        progress: SnapshotProgressCallback | None = None,
    ) -> SnapshotManifest:
        async with self._lock:
            try:
                return await self._add_postgres(snapshot_id, source, progress)
            except EngineError as err:
                raise BackupFailed(
                    f"adding the PostgreSQL dump to snapshot {snapshot_id} failed: {err.message}"
                ) from err

    async def _add_postgres(
        self, snapshot_id: str, source: str, progress: SnapshotProgressCallback | None
    ) -> SnapshotManifest:
        manifest = await self.store.get(snapshot_id)
        if manifest.postgres is not None:
            return manifest  # added by an earlier call
        live = await self._postgres(BackupFailed)
        if live is None:
            raise BackupFailed("no postgres service is managed")
        pg = self._source(live, source)
        await pg.ensure_running(BackupFailed)
        needed = int(await pg.size() * self.options.size_factor)
        await asyncio.to_thread(
            check_free_space, self.options.backup_dir, needed, self.options.min_free_bytes_margin
        )
        async with self.store.amend(snapshot_id) as writer:
            _report(progress, "postgres", f"dumping PostgreSQL database {source}", 5)
            dump = (await pg.dump(writer)).model_copy(update={"database": live.database})
            amended = manifest.model_copy(
                update={
                    "postgres": dump,
                    "database_versions": {
                        **manifest.database_versions, "postgres": dump.server_version,
                    },
                    "migration_revision": dump.migration_revision,
                    "files": [*manifest.files, *writer.files],
                }
            )  # fmt: skip
            await self.store.commit_amend(writer, amended)
        _report(progress, "done", f"snapshot {snapshot_id} complete with PostgreSQL", 100)
        return amended

    def _source(self, pg: PostgresSnapshots, source: str) -> PostgresSnapshots:
        """The same server, another database of the live one's: its rollback copy, or the
        database a rollback replaced (dumped after the previous version is back)."""
        if not (sql.is_copy_name(pg.database, source) or sql.is_kept_name(pg.database, source)):
            raise BackupFailed(f"refusing to dump {source!r} as database {pg.database!r}")
        credentials = PostgresCredentials(pg.credentials.user, source, pg.credentials.password)
        return PostgresSnapshots(
            self.engine, pg.container_id, credentials, timeout=pg.timeout,
            exec_timeout=pg.exec_timeout, restore_jobs=pg.restore_jobs,
        )  # fmt: skip

    async def copy_database(self, tag: str) -> str | None:
        async with self._lock:
            pg = await self._postgres(BackupFailed)
            if pg is None:
                return None
            name = sql.copy_database_name(pg.database, tag)
            try:
                await pg.ensure_running(BackupFailed)
                size = await postgres_copy.make_copy(pg, name, self.options.min_free_bytes_margin)
            except EngineError as err:
                raise BackupFailed(f"the rollback copy failed: {err.message}") from err
            _LOGGER.info("copied %s to %s (%d bytes)", pg.database, name, size)
            return name

    async def swap_in_copy(self, tag: str) -> CopySwap:
        async with self._lock:
            pg = await self._postgres(RestoreFailed)
            if pg is None:
                return CopySwap(swapped=False)
            copy = sql.copy_database_name(pg.database, tag)
            kept = sql.kept_database_name(pg.database, tag)
            try:
                await pg.ensure_running(RestoreFailed)
                return await postgres_copy.swap_in(pg, copy, kept)
            except EngineError as err:
                raise RestoreFailed(f"swapping in {copy} failed: {err.message}") from err

    async def run_databases(self, tag: str) -> RunDatabases:
        async with self._lock:
            pg = await self._postgres(SnapshotError)
            if pg is None:
                return RunDatabases()
            copy = sql.copy_database_name(pg.database, tag)
            kept = sql.kept_database_name(pg.database, tag)
            try:
                text = await pg.maintenance(
                    sql.existing_databases([copy, kept]), error=SnapshotError, purpose="exists"
                )
            except EngineError as err:
                raise SnapshotError(f"listing the databases of {tag}: {err.message}") from err
            present = set(text.splitlines())
            return RunDatabases(
                copy=copy if copy in present else None, kept=kept if kept in present else None
            )

    async def drop_copy(self, tag: str) -> None:
        async with self._lock:
            pg = await self._postgres(SnapshotError)
            if pg is None:
                return
            name = sql.copy_database_name(pg.database, tag)
            try:
                await postgres_copy.drop_copy(pg, name)
            except EngineError as err:
                raise SnapshotError(f"dropping {name!r} failed: {err.message}") from err

    async def restore(
        self,
        snapshot_id: str,
        progress: SnapshotProgressCallback | None = None,
        *,
        keep_replaced_as: str | None = None,
        influxdb: bool = True,
        postgres: bool = True,
    ) -> SnapshotManifest:
        async with self._lock:
            try:
                return await self._restore(
                    snapshot_id, progress, keep_replaced_as, influxdb, postgres
                )
            except EngineError as err:
                raise RestoreFailed(f"restore of {snapshot_id} failed: {err.message}") from err

    async def _restore(
        self,
        snapshot_id: str,
        progress: SnapshotProgressCallback | None,
        keep_replaced_as: str | None,
        with_influxdb: bool = True,
        with_postgres: bool = True,
    ) -> SnapshotManifest:
        _report(progress, "verify", f"checking the files of snapshot {snapshot_id}", 0)
        # Only the parts restored must be intact: a rollback that swapped its copy in
        # restores InfluxDB alone, whatever became of the PostgreSQL dump.
        manifest = await self.store.get(snapshot_id)
        self.store.check_project(manifest)
        needed = _restored_files(manifest, with_postgres, with_influxdb)
        # The re-hash runs while the questions below are asked; the first change waits for it.
        async with self.store.verifying(snapshot_id, needed) as verified:
            await self._restore_verifying(
                manifest, verified, progress, keep_replaced_as, with_influxdb, with_postgres
            )
        _report(progress, "done", f"restored snapshot {snapshot_id}", 100)
        return manifest

    async def _restore_verifying(
        self,
        manifest: SnapshotManifest,
        verified: Awaitable[object],
        progress: SnapshotProgressCallback | None,
        keep_replaced_as: str | None,
        with_influxdb: bool,
        with_postgres: bool,
    ) -> None:
        snapshot_id = manifest.id
        pg: PostgresSnapshots | None
        influx: InfluxSnapshots | None
        pg, influx = await together(self._postgres(RestoreFailed), self._influx(RestoreFailed))
        folder = self.store.path_of(snapshot_id)
        if with_postgres and manifest.postgres is None and pg is not None:
            raise RestoreFailed(
                f"snapshot {snapshot_id} holds no PostgreSQL dump (an update's dump of its "
                "rollback copy that never completed, or a rollback's InfluxDB-only backup): "
                "restoring it would bring InfluxDB back alone and leave the database as it "
                "is; refused",
                snapshot_id=snapshot_id,
            )
        if not with_postgres:
            pg = None
        # Everything that can be checked is checked before the first change (the files'
        # re-hash included: restore_replacing awaits it before anything is restored).
        if manifest.postgres is not None and with_postgres:
            pg = self._matching_postgres(pg, manifest)
            if keep_replaced_as is not None and not sql.is_kept_name(pg.database, keep_replaced_as):
                raise RestoreFailed(
                    f"refusing to keep the replaced database as {keep_replaced_as!r}: the name "
                    f"must be kept_database_name({pg.database!r}, tag), i.e. "
                    f"{sql.kept_database_name(pg.database, 'TAG')!r}"
                )
            await pg.ensure_running(RestoreFailed)
        if manifest.influxdb is not None and with_influxdb:
            if influx is None:
                raise RestoreFailed("the snapshot holds InfluxDB data but no influxdb service")
            await influx.detect(RestoreFailed)
        if manifest.postgres is not None and pg is not None:
            _report(progress, "postgres", f"restoring PostgreSQL database {pg.database}", 10)
            entry = manifest.file(manifest.postgres.dump_file)
            await postgres_restore.restore_replacing(
                pg, folder, manifest.postgres, entry, snapshot_id, keep_replaced_as, verified
            )
        if manifest.influxdb is not None and influx is not None and with_influxdb:
            _report(progress, "influxdb", "restoring InfluxDB", 70)
            entry = manifest.file(manifest.influxdb.archive_file)
            await verified
            try:
                await influx.restore(folder, manifest.influxdb, entry)
            except SnapshotError as err:
                done = "PostgreSQL was restored; " if manifest.postgres else ""
                raise RestoreFailed(f"{done}{err.message}") from err

    def _matching_postgres(
        self, pg: PostgresSnapshots | None, manifest: SnapshotManifest
    ) -> PostgresSnapshots:
        assert manifest.postgres is not None
        if pg is None:
            raise RestoreFailed("the snapshot holds a PostgreSQL dump but no postgres service")
        if manifest.postgres.database != pg.database:
            raise RestoreFailed(
                f"snapshot {manifest.id} holds database {manifest.postgres.database!r}, but "
                f"the configured database is {pg.database!r}; refusing to cross them"
            )
        return pg

    async def restore_postgres_into(self, snapshot_id: str, database: str) -> None:
        async with self._lock:
            manifest = await self.store.get(snapshot_id)
            self.store.check_project(manifest)
            async with self.store.verifying(snapshot_id) as verified:
                pg = self._matching_postgres(await self._postgres(RestoreFailed), manifest)
                assert manifest.postgres is not None
                if database in (pg.database, "postgres", "template0", "template1"):
                    raise RestoreFailed(f"refusing to restore a scratch copy over {database!r}")
                try:
                    await pg.ensure_running(RestoreFailed)  # "not running" first: the clear error
                    dump = manifest.postgres
                    survey = await pg.survey([database], dump.roles, RestoreFailed)
                    if survey.exists(database):
                        raise RestoreFailed(f"database {database!r} exists already; drop it first")
                    folder = self.store.path_of(snapshot_id)
                    lacking = survey.lacking(dump.roles)
                    await postgres_restore.ensure_roles(pg, folder, dump, lacking, verified)
                    entry = manifest.file(dump.dump_file)
                    await postgres_restore.load_into(pg, folder, dump, entry, database, verified)
                except EngineError as err:
                    raise RestoreFailed(
                        f"restoring into {database!r} failed: {err.message}"
                    ) from err

    async def restore_postgres_into_sandbox(self, snapshot_id: str, container_id: str) -> None:
        async with self._lock:
            manifest = await self.store.verify(snapshot_id)
            self.store.check_project(manifest)
            live = self._matching_postgres(await self._postgres(RestoreFailed), manifest)
            folder = self.store.path_of(snapshot_id)
            await scratch.restore_into_sandbox(live, container_id, folder, manifest)

    async def drop_database(self, database: str) -> None:
        async with self._lock:
            pg = await self._postgres(SnapshotError)
            if pg is None:
                raise SnapshotError("no postgres service is managed")
            if database in (pg.database, "postgres", "template0", "template1"):
                raise SnapshotError(f"refusing to drop {database!r}: only scratch copies are")
            if sql.is_kept_name(pg.database, database):
                raise SnapshotError(
                    f"refusing to drop {database!r} as a scratch copy: it is a replaced "
                    "database kept by a restore (drop_kept_database, once it is saved)"
                )
            await pg.maintenance(sql.drop_database(database), error=SnapshotError, purpose="drop")

    async def drop_kept_database(self, name: str) -> None:
        """Drop a database a restore kept (``<db>__old_<tag>``); nothing else is accepted.

        For the rollback, once a verified pre-rollback dump holds what it contains.
        Dropping a name that no longer exists is not an error (a resumed rollback).
        """
        async with self._lock:
            pg = await self._postgres(SnapshotError)
            if pg is None:
                raise SnapshotError("no postgres service is managed")
            if not sql.is_kept_name(pg.database, name):
                raise SnapshotError(
                    f"refusing to drop {name!r}: only databases kept by a restore "
                    f"({sql.kept_database_name(pg.database, 'TAG')!r}) are dropped this way"
                )
            try:
                await pg.maintenance(sql.drop_database(name), error=SnapshotError, purpose="drop")
            except EngineError as err:
                raise SnapshotError(f"dropping {name!r} failed: {err.message}") from err
            _LOGGER.info("dropped the kept database %s", name)

    async def get(self, snapshot_id: str) -> SnapshotManifest:
        return await self.store.get(snapshot_id)

    async def verify(self, snapshot_id: str) -> SnapshotManifest:
        return await self.store.verify(snapshot_id)

    async def check(self, snapshot_id: str) -> SnapshotManifest:
        """Checksums, then proof each part can be restored (see :mod:`.check`)."""
        async with self._lock:
            manifest = await self.store.verify(snapshot_id)
            folder = self.store.path_of(snapshot_id)
            if manifest.postgres is not None:
                pg = await self._postgres(SnapshotError)
                if pg is None:
                    raise SnapshotError(
                        f"cannot check the PostgreSQL dump of {snapshot_id}: no postgres service"
                    )
                entry = manifest.file(manifest.postgres.dump_file)
                await check_postgres_dump(
                    pg, folder, manifest.postgres, entry, f"check-{snapshot_id}"
                )
            influx = None
            if manifest.influxdb is not None:
                influx = (manifest.influxdb, manifest.file(manifest.influxdb.archive_file))
            config = next((f for f in manifest.files if f.name == CONFIG_ARCHIVE_FILE), None)
            await check_local_archives(folder, influx, config)
            _LOGGER.info("snapshot %s checked: it can be restored", snapshot_id)
            return manifest

    async def delete(self, snapshot_id: str) -> None:
        async with self._lock:
            await self.store.delete(snapshot_id)

    async def apply_retention(self, protected: set[str]) -> list[str]:
        async with self._lock:
            # Only this project's: a backups folder shared by two stacks must not lose the
            # other stack's snapshots to this one's count.
            mine = [m for m in await self.store.list() if m.project == self.options.project]
            try:
                with_postgres = await self._find(Role.POSTGRES, SnapshotError) is not None
            except SnapshotError:
                with_postgres = True  # unknown: count fewer snapshots whole, delete fewer
            expired = select_expired(
                mine, self.options.retention_keep, protected,
                whole=lambda m: (
                    m.reason is not SnapshotReason.PRE_ROLLBACK
                    and (not with_postgres or m.postgres is not None)
                ),
            )  # fmt: skip
            for snapshot_id in expired:
                await self.store.delete(snapshot_id)
            await self.store.remove_stale(older_than=2 * self.options.timeout)
            return expired

    async def list(self) -> list[SnapshotManifest]:  # last: the name shadows the builtin
        return await self.store.list()


if TYPE_CHECKING:

    def _implements_the_protocol(service: SnapshotService) -> Snapshots:
        return service
