"""Restoring a PostgreSQL dump so that a failure leaves the live database untouched.

::

    1. (caller) every snapshot file re-hashed against its manifest  ─ corrupt? stop here
    2. CREATE DATABASE <db>__restore_<id>   (owner, encoding, locale, settings as dumped)
    3. upload postgres.dump into the container (hash checked again) ─┐ any failure:
    4. pg_restore --jobs=N --exit-on-error                           ├ drop the new
    5. row counts and checksums == those recorded at dump time      ─┘ database, stop
    6. one transaction: <db> → <db>__old_<id>, <db>__restore_<id> → <db>
       (connections refused and terminated first)
    7. DROP DATABASE <db>__old_<id>

Until step 6 the live database is never touched; step 6 is atomic. The price
is disk space for a second copy while the restore runs. Database-level GRANTs
are not carried over to the new database (owner, encoding, locale and
``ALTER DATABASE … SET`` values are); see docs/snapshots.md.

Roles are cluster-wide and not replaced: only roles the dump needs and the
cluster lacks are created, from the saved ``pg_dumpall --globals-only``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

from supervisor.exceptions import (
    CommandFailed,
    EngineError,
    RestoreFailed,
    SnapshotError,
)
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.models import FileEntry, PostgresDump, TableStats
from supervisor.snapshots.postgres import PostgresSnapshots, stderr_of
from supervisor.snapshots.workdir import ContainerWorkdir

_LOGGER = logging.getLogger(__name__)


def compare_stats(expected: dict[str, TableStats], actual: dict[str, TableStats]) -> list[str]:
    """Human-readable differences between the dumped and the restored tables."""
    problems = [f"table {t} is missing" for t in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected table {t}" for t in sorted(actual.keys() - expected.keys())]
    for table in sorted(expected.keys() & actual.keys()):
        want, got = expected[table], actual[table]
        if want.rows != got.rows:
            problems.append(f"{table}: {got.rows} rows, {want.rows} when dumped")
        elif want.checksum != got.checksum:
            problems.append(f"{table}: same row count, different content")
    return problems


async def ensure_roles(pg: PostgresSnapshots, folder: Path, dump: PostgresDump) -> None:
    """Create the roles the dump refers to that the cluster lacks (nothing else)."""
    text = await pg.maintenance(
        "SELECT rolname FROM pg_roles", error=RestoreFailed, purpose="roles"
    )
    present = set(text.split())
    missing = [role for role in dump.roles if role not in present]
    if not missing:
        return
    globals_sql = await asyncio.to_thread((folder / dump.globals_file).read_text, "utf-8")
    statements = sql.missing_roles_sql(globals_sql, missing)
    _LOGGER.info("creating roles missing from the cluster: %s", ", ".join(missing))
    if statements:
        await pg.maintenance(statements, error=RestoreFailed, purpose="roles")


async def load_into(
    pg: PostgresSnapshots, folder: Path, dump: PostgresDump, entry: FileEntry, target: str
) -> None:
    """Steps 2-5 into a new database ``target``, which is dropped again if any step fails."""
    await pg.maintenance(
        sql.create_database(target, dump.owner, dump.encoding, dump.collate, dump.ctype),
        *(sql.database_setting(target, setting) for setting in dump.database_settings),
        error=RestoreFailed,
        purpose="create",
    )
    try:
        async with ContainerWorkdir(
            pg.engine, pg.container_id, f"restore-{secrets.token_hex(4)}"
        ) as work:
            uploaded = await work.upload(folder / entry.name, entry, pg.timeout)
            try:
                await work.run(
                    "pg_restore",
                    sql.pg_restore(pg.credentials.user, target, uploaded, pg.restore_jobs),
                    env=pg.env("restore"),
                    timeout=pg.timeout,
                )
            except CommandFailed as err:
                raise RestoreFailed(f"pg_restore into {target!r} failed: {stderr_of(err)}") from err
        restored = await pg.table_stats(target, RestoreFailed)
        if problems := compare_stats(dump.tables, restored):
            raise RestoreFailed(
                f"the restored copy differs from the dump: {'; '.join(problems[:10])}",
                problems=problems,
            )
    except BaseException:
        await asyncio.shield(drop_quietly(pg, target))
        raise
    _LOGGER.info("restored %s into %s and verified %d tables", entry.name, target, len(restored))


async def drop_quietly(pg: PostgresSnapshots, name: str) -> None:
    try:
        await pg.maintenance(sql.drop_database(name), error=RestoreFailed, purpose="drop")
    except (SnapshotError, EngineError) as err:
        _LOGGER.warning("could not drop database %s: %s", name, err.message)


async def restore_replacing(
    pg: PostgresSnapshots, folder: Path, dump: PostgresDump, entry: FileEntry, snapshot_id: str
) -> None:
    """Replace the live database by the dump (steps 2-7); see the module docstring."""
    live = pg.database
    short = snapshot_id.rsplit("_", 1)[-1]
    restored = sql.derived_name(live, f"__restore_{short}")
    old = sql.derived_name(live, f"__old_{short}")
    await pg.ensure_running(RestoreFailed)
    for leftover in (restored, old):  # from an earlier, interrupted restore of this snapshot
        if await pg.database_exists(leftover, RestoreFailed):
            await pg.maintenance(sql.drop_database(leftover), error=RestoreFailed, purpose="drop")
    await ensure_roles(pg, folder, dump)
    try:
        await load_into(pg, folder, dump, entry, restored)
    except RestoreFailed as err:
        raise RestoreFailed(
            f"{err.message}; the database {live!r} was left as it was", **err.details
        ) from err
    live_exists = await pg.database_exists(live, RestoreFailed)
    try:
        await pg.maintenance(
            *sql.swap_databases(live, restored, old, live_exists),
            error=RestoreFailed,
            purpose="swap",
        )
    except BaseException as err:
        await asyncio.shield(_undo_swap(pg, live, restored))
        if isinstance(err, RestoreFailed):
            raise RestoreFailed(
                f"{err.message}; the database {live!r} was left as it was", database=live
            ) from err
        raise
    _LOGGER.info("database %s replaced by the restored copy", live)
    if live_exists:
        await drop_quietly(pg, old)


async def _undo_swap(pg: PostgresSnapshots, live: str, restored: str) -> None:
    """The renames are one transaction; only the refused connections need undoing."""
    try:
        await pg.maintenance(
            f"ALTER DATABASE {sql.quote_ident(live)} WITH ALLOW_CONNECTIONS true",
            error=RestoreFailed,
            purpose="undo",
        )
    except SnapshotError as err:
        _LOGGER.error("could not re-allow connections to %s: %s", live, err.message)
    await drop_quietly(pg, restored)
