"""PostgreSQL snapshots: ``pg_dump -Fc`` run inside the database container, streamed out.

::

    sidecar ──exec──▶ postgres container: psql: sequences, then exports snapshot S, plan
        │                                 pg_dump -Fc --snapshot=S ──stdout──┐
        │                                 psql: SET TRANSACTION SNAPSHOT S;  │ (at the
        │                                       checksums (pg_checksums)     │ same time)
        └── backups/.tmp-<id>/postgres.dump ◀── HashingFileSink ◀─────────────┘

Why inside the container: the client tools of the server's own image always
match its version, and the sidecar needs no network path to the database.
Why a held snapshot: the row counts and checksums recorded for the restore to
be verified against must describe exactly the data pg_dump saw, even when the
application keeps writing (a manual or pre-rollback snapshot); a session
exports a snapshot, pg_dump imports it, and so do the checksum connections,
which run while pg_dump runs, so the dump takes as long as pg_dump alone.
Sequences are not transactional: they are read before the export and again
after pg_dump (see :class:`~.models.SequenceStats`). Restore lives in
:mod:`.postgres_restore`.

Credentials come from settings or, when unset, from the container's own
``POSTGRES_USER`` / ``POSTGRES_DB`` / ``POSTGRES_PASSWORD``. The password is
given to the tools as ``PGPASSWORD`` in the exec environment: never in argv,
never logged (the official images trust the local socket anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.engine.protocol import Engine
from supervisor.exceptions import BackupFailed, CommandFailed, EngineError, SnapshotError
from supervisor.snapshots import checksum_sql as cs
from supervisor.snapshots import in_place, pg_checksums
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.const import (
    PG_APP_PREFIX,
    POSTGRES_DUMP_FILE,
    POSTGRES_GLOBALS_FILE,
)
from supervisor.snapshots.in_place import HostFolders
from supervisor.snapshots.models import (
    ChecksumMethod,
    FileEntry,
    PostgresDump,
    SequenceStats,
    TableStats,
)
from supervisor.snapshots.pg_commands import stderr_of
from supervisor.snapshots.store import SnapshotWriter
from supervisor.snapshots.together import together
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
        self.data = bytearray()  # decoded whole: a chunk may end inside a UTF-8 character
        self.snapshot = asyncio.Event()
        self.ready = asyncio.Event()

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    async def __call__(self, chunk: bytes) -> None:
        self.data += chunk
        data = b"\n" + self.data
        if b"\nsnapshot=" in data and b"\n" in data.split(b"\nsnapshot=", 1)[1]:
            self.snapshot.set()
        if b"\nready\n" in data:
            self.ready.set()


@dataclass
class _Held:
    """What the dump-side checksums found (sequences: before pg_dump, then as recorded)."""

    tables: dict[str, TableStats]
    large_objects: TableStats
    before: dict[str, tuple[int, bool]]
    revision: str
    sequences: dict[str, SequenceStats] = field(default_factory=dict)


def _holder_error(holder: asyncio.Task[Any]) -> str:
    if not holder.done() or holder.cancelled() or holder.exception() is not None:
        return "the snapshot session ended"
    result = holder.result()
    return result.stderr.strip() or f"psql exited with {result.exit_code}"


async def _first(event: asyncio.Event, task: asyncio.Task[Any]) -> bool:
    """Wait for ``event`` or for ``task`` to end; True if the event came."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return event.is_set()


@dataclass(frozen=True)
class Survey:
    """The answer to :func:`~supervisor.snapshots.pg_commands.survey`: the databases
    asked about that exist (name → whether they take connections) and the roles that do.

    A restore's questions before it acts were one exec each (about 50 ms apiece, all of
    it downtime during a rollback); asked at once, they cost one.
    """

    databases: dict[str, bool]
    roles: frozenset[str]

    def exists(self, name: str) -> bool:
        return name in self.databases

    def refuses_connections(self, name: str) -> bool:
        return self.databases.get(name) is False

    def lacking(self, roles: list[str]) -> list[str]:
        """Those of ``roles`` (the ones the survey asked about) the cluster lacks."""
        return [role for role in roles if role not in self.roles]


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
        hosts: HostFolders | None = None,
    ) -> None:
        self.engine = engine
        self.hosts = hosts  # where snapshot folders are on the host (read in place)
        self.container_id = container_id
        self.credentials = credentials
        self.timeout = timeout
        self.exec_timeout = exec_timeout
        self.restore_jobs = restore_jobs
        self._cpus: asyncio.Future[int] | None = None
        self._info: dict[str, Any] | None = None  # this operation's answer, see size()

    @property
    def database(self) -> str:
        return self.credentials.database

    def readable(
        self, folder: Path, entry: FileEntry, tag: str
    ) -> contextlib.AbstractAsyncContextManager[tuple[ContainerWorkdir, str]]:
        """A work directory ``tag`` in the container and the path of a snapshot file there
        (read in place, else uploaded): :func:`.in_place.readable`."""
        return in_place.readable(
            self.engine, self.hosts, self.container_id, tag, folder, entry, self.timeout
        )

    def env(self, purpose: str) -> dict[str, str]:
        """Exec environment: the password (if any) and a findable application_name."""
        env = {"PGAPPNAME": f"{PG_APP_PREFIX}{purpose}"[:63]}
        if self.credentials.password:
            env["PGPASSWORD"] = self.credentials.password
        return env

    def cpus(self) -> asyncio.Future[int]:
        """CPUs the database container may use (1 if that cannot be told); asked once,
        so a caller can start the question early and others share the answer."""
        if self._cpus is None:
            self._cpus = asyncio.ensure_future(self._count_cpus())
        return self._cpus

    async def _count_cpus(self) -> int:
        out = bytearray()

        async def collect(chunk: bytes) -> None:
            out.extend(chunk)

        try:
            await self.engine.exec(self.container_id, ["nproc"], stdout=collect, timeout=30)
            return max(1, int(out.decode().strip() or 1))
        except (CommandFailed, EngineError, ValueError):
            return 1

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
        timeout: float | None = None,
    ) -> str:
        """Run SQL through psql in the container; failures become ``error`` with psql's words.

        ``timeout`` defaults to the short-command one; a long scan passes the operation's.
        """
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
                timeout=timeout or self.exec_timeout,
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
        self._info = info
        return info

    async def _info_once(self) -> dict[str, Any]:
        """The info this operation asked for already (its size estimate), else now."""
        return self._info if self._info is not None else await self.database_info()

    async def size(self) -> int:
        """The database's size, from :meth:`database_info`: the dump that follows the
        size estimate of the same operation uses that answer instead of asking again."""
        return int((await self.database_info())["size"])

    async def server_version(self) -> str:
        text = await self.query(self.database, "SHOW server_version", purpose="version")
        return text.strip()

    async def survey(
        self, databases: list[str], roles: list[str], error: type[SnapshotError]
    ) -> Survey:
        text = await self.maintenance(sql.survey(databases, roles), error=error, purpose="survey")
        try:
            raw = json.loads(text)
            return Survey(
                databases={str(k): bool(v) for k, v in raw["databases"].items()},
                roles=frozenset(str(role) for role in raw["roles"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise error(f"unexpected answer from PostgreSQL: {text[:200]!r}") from err

    async def database_exists(self, name: str, error: type[SnapshotError]) -> bool:
        text = await self.maintenance(sql.database_exists(name), error=error, purpose="exists")
        return text.strip() == "1"

    # --- dump -----------------------------------------------------------------------

    async def dump(self, writer: SnapshotWriter) -> PostgresDump:
        """Globals and a consistent custom-format dump into ``writer``'s folder."""
        await self.ensure_running(BackupFailed)
        async with contextlib.AsyncExitStack() as stack:
            # Both at once: the directory, once made, is removed by the stack; a mkdir
            # cancelled because the info failed removes its own.
            info, workdir = await together(
                self._info_once(),
                stack.enter_async_context(
                    ContainerWorkdir(self.engine, self.container_id, writer.snapshot_id)
                ),
            )
            method = cs.method_for(int(info.get("version_num", 0)))
            globals_entry, (dump_entry, held) = await together(
                self._dump_globals(workdir, writer), self._dump_database(workdir, writer, method)
            )
        _LOGGER.info(
            "dumped PostgreSQL database %s: %d bytes, %d tables, %d sequences, "
            "%d large objects",
            self.database, dump_entry.size, len(held.tables), len(held.sequences),
            held.large_objects.rows,
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
            tables=held.tables,
            migration_revision=held.revision or None,
            checksum_method=method,
            sequences=held.sequences,
            large_objects=held.large_objects,
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
        self, work: ContainerWorkdir, writer: SnapshotWriter, method: ChecksumMethod
    ) -> tuple[FileEntry, _Held]:
        """pg_dump and the checksums at the same time, in one exported snapshot."""
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
                raise BackupFailed(
                    f"cannot open a snapshot of database {database!r} as {user!r}: "
                    f"{_holder_error(holder)}"
                )
            snapshot = sql.tagged_lines(lines.text)["snapshot"]
            entry, held = await together(
                self._pg_dump(work, writer, snapshot),
                self._checksums(work, lines, holder, snapshot, method),
            )
            # pg_dump has read every sequence by now: this is the upper end of what it saw.
            after, _ = await together(
                self.query(database, cs.SEQUENCES_SQL, purpose="sequences"),
                asyncio.shield(self._end_holder(holder, holder_app)),
            )
            moved = cs.parse_sequences(sql.tagged_lines(after)["sequences"])
            held.sequences = pg_checksums.sequence_stats(held.before, moved)
            return entry, held
        finally:
            await asyncio.shield(self._end_holder(holder, holder_app))

    async def _pg_dump(self, work: ContainerWorkdir, writer: SnapshotWriter, snapshot: str) -> Any:
        user, database = self.credentials.user, self.database
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
        return writer.add(sink.entry)

    async def _checksums(
        self,
        work: ContainerWorkdir,
        lines: _Lines,
        holder: asyncio.Task[Any],
        snapshot: str,
        method: ChecksumMethod,
    ) -> _Held:
        """The checksums in ``snapshot`` while pg_dump runs, on connections of their own.

        One connection fewer than the container's CPUs (at least one): pg_dump's
        compression keeps one CPU busy and must not wait for the checksums.
        """
        ready, cpus = await asyncio.gather(_first(lines.ready, holder), self.cpus())
        if not ready:
            raise BackupFailed(
                f"taking the checksums of {self.database!r} failed: {_holder_error(holder)}"
            )
        tagged = sql.tagged_lines(lines.text)
        workers = max(1, min(self.restore_jobs, cpus) - 1)
        tables, large_objects = await pg_checksums.run_jobs(
            self, self.database, cs.parse_plan(tagged["plan"]), method, workers,
            snapshot=snapshot, work=work, error=BackupFailed,
        )  # fmt: skip
        return _Held(
            tables=tables,
            large_objects=large_objects,
            before=cs.parse_sequences(tagged["sequences"]),
            revision=tagged.get("revision", ""),
        )

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
