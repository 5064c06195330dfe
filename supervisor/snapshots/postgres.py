"""PostgreSQL snapshots: ``pg_dump -Fc`` run inside the database container, streamed out.

::

    sidecar ──exec──▶ postgres container: psql (holds snapshot S, takes table stats in S)
        │                                 pg_dump -Fc --snapshot=S ──stdout──┐
        └── backups/.tmp-<id>/postgres.dump ◀── HashingFileSink ◀─────────────┘

Why inside the container: the client tools of the server's own image always
match its version, and the sidecar needs no network path to the database.
Why a held snapshot: the row counts and checksums recorded for the restore to
be verified against must describe exactly the data pg_dump saw, even when the
application keeps writing (a manual or pre-rollback snapshot); a session
exports a snapshot, pg_dump imports it, and the same session takes the stats
in it while the dump runs. Restore lives in :mod:`.postgres_restore`.

Credentials come from settings or, when unset, from the container's own
``POSTGRES_USER`` / ``POSTGRES_DB`` / ``POSTGRES_PASSWORD``. The password is
given to the tools as ``PGPASSWORD`` in the exec environment: never in argv,
never logged (the official images trust the local socket anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from supervisor.engine.protocol import Engine
from supervisor.exceptions import BackupFailed, CommandFailed, EngineError, SnapshotError
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.const import (
    PG_APP_PREFIX,
    POSTGRES_DUMP_FILE,
    POSTGRES_GLOBALS_FILE,
)
from supervisor.snapshots.models import PostgresDump, TableStats
from supervisor.snapshots.store import SnapshotWriter
from supervisor.snapshots.workdir import ContainerWorkdir

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostgresCredentials:
    user: str
    database: str
    password: str | None = field(default=None, repr=False)


async def resolve_credentials(
    engine: Engine,
    container_id: str,
    user: str | None = None,
    database: str | None = None,
    password: str | None = None,
) -> PostgresCredentials:
    """Settings first, then the container's env, then the image defaults."""
    env = await engine.container_env(container_id)
    user = user or env.get("POSTGRES_USER") or "postgres"
    return PostgresCredentials(
        user=user,
        database=database or env.get("POSTGRES_DB") or user,
        password=password or env.get("POSTGRES_PASSWORD") or None,
    )


class _Lines:
    """An output sink for the snapshot-holding session: collects its tagged lines."""

    def __init__(self) -> None:
        self.text = ""
        self.snapshot = asyncio.Event()
        self.ready = asyncio.Event()

    async def __call__(self, chunk: bytes) -> None:
        self.text += chunk.decode("utf-8", "replace")
        if "snapshot=" in self.text and "\n" in self.text.split("snapshot=", 1)[1]:
            self.snapshot.set()
        if "\nready\n" in f"\n{self.text}":
            self.ready.set()


async def _first(event: asyncio.Event, task: asyncio.Task[Any]) -> bool:
    """Wait for ``event`` or for ``task`` to end; True if the event came."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return event.is_set()


def stderr_of(err: SnapshotError | EngineError) -> str:
    """The useful part of a failed command's message (its stderr), for an operator."""
    text = err.message.split(": exited with code", 1)[-1]
    return text.strip().removeprefix(str(err.details.get("exit_code", ""))).strip(": ")


class PostgresSnapshots:
    """Dump, size and query one database of one PostgreSQL container."""

    def __init__(
        self,
        engine: Engine,
        container_id: str,
        credentials: PostgresCredentials,
        *,
        timeout: float = 1800.0,
        exec_timeout: float = 300.0,
        restore_jobs: int = 2,
    ) -> None:
        self.engine = engine
        self.container_id = container_id
        self.credentials = credentials
        self.timeout = timeout
        self.exec_timeout = exec_timeout
        self.restore_jobs = restore_jobs

    @property
    def database(self) -> str:
        return self.credentials.database

    def env(self, purpose: str) -> dict[str, str]:
        """Exec environment: the password (if any) and a findable application_name."""
        env = {"PGAPPNAME": f"{PG_APP_PREFIX}{purpose}"[:63]}
        if self.credentials.password:
            env["PGPASSWORD"] = self.credentials.password
        return env

    async def ensure_running(self, error: type[SnapshotError]) -> None:
        container = await self.engine.container(self.container_id)
        if not container.running:
            raise error(
                f"the PostgreSQL container {container.name} is {container.state}, not running; "
                "start it (docker compose up -d) and try again",
                container=container.name,
            )

    async def query(
        self,
        database: str,
        *commands: str,
        error: type[SnapshotError] = BackupFailed,
        purpose: str = "query",
    ) -> str:
        """Run SQL through psql in the container; failures become ``error`` with psql's words."""
        argv = sql.psql(self.credentials.user, database, *commands)
        try:
            result_text = bytearray()

            async def collect(chunk: bytes) -> None:
                result_text.extend(chunk)

            await self.engine.exec(
                self.container_id,
                argv,
                stdout=collect,
                env=self.env(purpose),
                timeout=self.exec_timeout,
            )
        except (CommandFailed, EngineError) as err:
            raise error(
                f"PostgreSQL refused {purpose} on database {database!r} as user "
                f"{self.credentials.user!r}: {stderr_of(err)}",
                database=database,
            ) from err
        return result_text.decode("utf-8", "replace")

    async def maintenance(
        self, *commands: str, error: type[SnapshotError] = BackupFailed, purpose: str = "maint"
    ) -> str:
        """SQL on the maintenance database (CREATE / ALTER / DROP DATABASE)."""
        database = sql.maintenance_database(self.database)
        return await self.query(database, *commands, error=error, purpose=purpose)

    async def database_info(self, error: type[SnapshotError] = BackupFailed) -> dict[str, Any]:
        text = await self.query(self.database, sql.DATABASE_INFO_SQL, error=error, purpose="info")
        if not text.strip():
            raise error(f"database {self.database!r} does not exist in the PostgreSQL container")
        info: dict[str, Any] = json.loads(text)
        return info

    async def size(self) -> int:
        text = await self.query(self.database, sql.SIZE_SQL, purpose="size")
        return int(text.strip() or 0)

    async def server_version(self) -> str:
        text = await self.query(self.database, "SHOW server_version", purpose="version")
        return text.strip()

    async def database_exists(self, name: str, error: type[SnapshotError]) -> bool:
        text = await self.maintenance(sql.database_exists(name), error=error, purpose="exists")
        return text.strip() == "1"

    async def table_stats(self, database: str, error: type[SnapshotError]) -> dict[str, TableStats]:
        text = await self.query(
            database, sql.STABLE_OUTPUT, sql.TABLE_STATS_SQL, error=error, purpose="stats"
        )
        return sql.parse_table_stats(sql.tagged_lines(text)["stats"])

    # --- dump -----------------------------------------------------------------------

    async def dump(self, writer: SnapshotWriter) -> PostgresDump:
        """Globals and a consistent custom-format dump into ``writer``'s folder."""
        await self.ensure_running(BackupFailed)
        info = await self.database_info()
        async with ContainerWorkdir(self.engine, self.container_id, writer.snapshot_id) as work:
            globals_entry = await self._dump_globals(work, writer)
            dump_entry, held = await self._dump_database(work, writer)
        _LOGGER.info(
            "dumped PostgreSQL database %s: %d bytes, %d tables",
            self.database, dump_entry.size, len(held["tables"]),
        )  # fmt: skip
        return PostgresDump(
            database=self.database,
            owner=info["owner"],
            encoding=info["encoding"],
            collate=info["collate"],
            ctype=info["ctype"],
            server_version=str(info["version"]).split()[0],
            size_bytes=int(info["size"]),
            dump_file=dump_entry.name,
            globals_file=globals_entry.name,
            roles=list(info["roles"]),
            database_settings=list(info["settings"]),
            tables=held["tables"],
            migration_revision=held["revision"] or None,
        )

    async def _dump_globals(self, work: ContainerWorkdir, writer: SnapshotWriter) -> Any:
        """Roles and tablespaces; without passwords if the user may not read them."""
        for extra in ([], ["--no-role-passwords"]):
            argv = sql.pg_dumpall_globals(self.credentials.user, self.database) + extra
            try:
                async with writer.sink(POSTGRES_GLOBALS_FILE) as sink:
                    await work.run(
                        "globals",
                        argv,
                        stdout=sink,
                        env=self.env("globals"),
                        timeout=self.exec_timeout,
                    )
            except CommandFailed as err:
                (writer.path / POSTGRES_GLOBALS_FILE).unlink(missing_ok=True)
                if not extra:
                    _LOGGER.info("pg_dumpall cannot read role passwords (%s); retrying", err)
                    continue
                raise BackupFailed(
                    f"pg_dumpall --globals-only as {self.credentials.user!r} failed: "
                    f"{stderr_of(err)}"
                ) from err
            return writer.add(sink.entry)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _dump_database(
        self, work: ContainerWorkdir, writer: SnapshotWriter
    ) -> tuple[Any, dict[str, Any]]:
        user, database = self.credentials.user, self.database
        lines = _Lines()
        holder_app = f"hold-{writer.snapshot_id}"
        holder = asyncio.create_task(
            work.run(
                "hold",
                sql.psql(user, database, *sql.hold_snapshot(int(self.timeout) + 60)),
                stdout=lines,
                env=self.env(holder_app),
                timeout=self.timeout + 120,
                check=False,
            )
        )
        try:
            if not await _first(lines.snapshot, holder):
                result = holder.result()
                raise BackupFailed(
                    f"cannot open a snapshot of database {database!r} as {user!r}: "
                    f"{result.stderr.strip() or 'psql exited with ' + str(result.exit_code)}"
                )
            snapshot = sql.tagged_lines(lines.text)["snapshot"]
            try:
                async with writer.sink(POSTGRES_DUMP_FILE) as sink:
                    await work.run(
                        "pg_dump",
                        sql.pg_dump(user, database, snapshot),
                        stdout=sink,
                        env=self.env(f"dump-{writer.snapshot_id}"),
                        timeout=self.timeout,
                    )
            except CommandFailed as err:
                raise BackupFailed(f"pg_dump of {database!r} failed: {stderr_of(err)}") from err
            entry = writer.add(sink.entry)
            if not await _first(lines.ready, holder):
                raise BackupFailed(f"taking the table checksums of {database!r} failed")
            tagged = sql.tagged_lines(lines.text)
            held = {
                "tables": sql.parse_table_stats(tagged["stats"]),
                "revision": tagged.get("revision", ""),
            }
            return entry, held
        finally:
            await asyncio.shield(self._end_holder(holder, holder_app))

    async def _end_holder(self, holder: asyncio.Task[Any], application: str) -> None:
        if not holder.done():
            try:
                await self.maintenance(
                    sql.terminate_application(f"{PG_APP_PREFIX}{application}"[:63]),
                    purpose="end-hold",
                )
            except SnapshotError as err:
                _LOGGER.warning("could not end the snapshot session: %s", err.message)
                holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
