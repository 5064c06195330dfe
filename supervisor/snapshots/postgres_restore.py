"""Restoring a PostgreSQL dump so that a failure leaves the live database untouched.

::

    1. (caller) every snapshot file re-hashed against its manifest, while the
       read-only questions and 2-3 run; awaited before 4  ─ corrupt? stop here
    2. CREATE DATABASE <db>__restore_<id>   (owner, encoding, locale, settings as dumped)
    3. postgres.dump readable in the container, while 2 runs:      ─┐ any failure:
       read in place through a sibling, else uploaded (in_place)     │ drop the new
    4. pg_restore --jobs=N --exit-on-error: pre-data + data, then    ├ database, stop
       post-data while                                               │
    5. rows, sequences, large objects == what was recorded at dump  ─┘
       time (pg_checksums: parallel connections)
    6. one transaction: <db> → <db>__old_<id>, <db>__restore_<id> → <db>
       (connections refused and terminated first)
    7. DROP DATABASE <db>__old_<id>, unless the caller asked to keep it under its
       own name (``keep_as``: a rollback keeps the new version's data this way)

Until step 6 the live database is never touched; step 6 is atomic. The price
is disk space for a second copy while the restore runs.

Kill -9 at any point, then the same call again, converges: the live database
is first made to take connections again (a crash inside step 6 leaves it
refusing them); a ``<db>__restore_<id>`` left over is only a copy of the dump
and is dropped; a ``<db>__old_*`` left over is never dropped here, it may be
the only copy of what was written before the restore; and with ``keep_as``,
an existing ``keep_as`` proves step 6 committed, so nothing is restored again.
Database-level GRANTs
are not carried over to the new database (owner, encoding, locale and
``ALTER DATABASE … SET`` values are); see docs/snapshots.md.

Roles are cluster-wide and not replaced: only roles the dump needs and the
cluster lacks are created, from the saved ``pg_dumpall --globals-only``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from supervisor.exceptions import (
    CommandFailed,
    EngineError,
    RestoreFailed,
    SnapshotError,
)
from supervisor.snapshots import pg_checksums
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.models import FileEntry, PostgresDump
from supervisor.snapshots.pg_commands import stderr_of
from supervisor.snapshots.postgres import PostgresSnapshots, Survey
from supervisor.snapshots.workdir import ContainerWorkdir

_LOGGER = logging.getLogger(__name__)
# Every row, sequence value and large object is in these; post-data only adds indexes,
# constraints and triggers (pg_restore's documented split of an archive).
DATA_SECTIONS = ("pre-data", "data")


async def missing_roles(pg: PostgresSnapshots, dump: PostgresDump) -> list[str]:
    """The roles the dump refers to that the cluster lacks (a question, no change)."""
    text = await pg.maintenance(
        "SELECT rolname FROM pg_roles", error=RestoreFailed, purpose="roles"
    )
    present = set(text.split())
    return [role for role in dump.roles if role not in present]


async def ensure_roles(
    pg: PostgresSnapshots,
    folder: Path,
    dump: PostgresDump,
    missing: list[str] | None = None,
    verified: Awaitable[object] | None = None,
) -> None:
    """Create the roles the dump refers to that the cluster lacks (nothing else);
    ``missing`` if the caller asked already; ``verified`` (the snapshot's files
    re-hashed) is awaited before the saved globals are read."""
    if missing is None:
        missing = await missing_roles(pg, dump)
    if not missing:
        return
    if verified is not None:
        await verified
    globals_sql = await asyncio.to_thread((folder / dump.globals_file).read_text, "utf-8")
    statements = sql.missing_roles_sql(globals_sql, missing)
    _LOGGER.info("creating roles missing from the cluster: %s", ", ".join(missing))
    if statements:
        await pg.maintenance(statements, error=RestoreFailed, purpose="roles")


async def load_into(
    pg: PostgresSnapshots,
    folder: Path,
    dump: PostgresDump,
    entry: FileEntry,
    target: str,
    verified: Awaitable[object] | None = None,
) -> None:
    """Steps 2-5 into a new database ``target``, which is dropped again if any step fails.

    The dump is made readable (in place, else uploaded) while the database is created,
    and both while ``verified`` (the caller's re-hash of the snapshot's files) runs; it
    is awaited before ``pg_restore`` reads a byte.
    The restore runs in two parts, and the checksums of the restored copy run while the
    second part (``post-data``: indexes, constraints, triggers, which change no row,
    sequence or large object) builds the indexes: neither waits for the other.
    """
    pg.cpus()  # asked now, answered by the time the checksums start
    create = asyncio.ensure_future(
        pg.maintenance(
            sql.create_database(target, dump.owner, dump.encoding, dump.collate, dump.ctype),
            *(sql.database_setting(target, setting) for setting in dump.database_settings),
            error=RestoreFailed,
            purpose="create",
        )
    )
    measuring: asyncio.Future[pg_checksums.Measured] | None = None
    try:
        async with pg.readable(folder, entry, work_tag(target)) as (work, path):
            await create
            if verified is not None:
                await verified
            await _pg_restore(pg, work, target, path, "pg_restore", DATA_SECTIONS)
            measuring = asyncio.ensure_future(
                pg_checksums.measure(pg, target, dump.checksum_method, RestoreFailed)
            )
            await _pg_restore(pg, work, target, path, "pg_restore_post", ("post-data",))
        measured = await measuring
        if problems := pg_checksums.differences(dump, measured):
            raise RestoreFailed(
                f"the restored copy differs from the dump: {'; '.join(problems[:10])}",
                problems=problems,
            )
    except BaseException:
        if measuring is not None:
            measuring.cancel()
        # The CREATE DATABASE is let finish (it is short), so that what it created is
        # dropped here rather than left behind.
        waits: list[asyncio.Future[Any]] = [asyncio.shield(create)]
        if measuring is not None:
            waits.append(measuring)
        await asyncio.gather(*waits, return_exceptions=True)
        if create.done() and not create.cancelled() and create.exception() is None:
            await asyncio.shield(drop_quietly(pg, target))
        raise
    _LOGGER.info(
        "restored %s into %s and verified %d tables, %d sequences, %d large objects",
        entry.name, target, len(measured.tables), len(measured.sequences),
        measured.large_objects.rows,
    )  # fmt: skip


def work_tag(target: str) -> str:
    """The work directory's (and sibling's) tag: named after the target, so a retry after a
    crash starts by removing what the last attempt left (its upload, or its sibling)."""
    return f"restore-{hashlib.sha256(target.encode()).hexdigest()[:12]}"


async def _pg_restore(
    pg: PostgresSnapshots,
    work: ContainerWorkdir,
    target: str,
    uploaded: str,
    name: str,
    sections: tuple[str, ...],
) -> None:
    argv = sql.pg_restore(pg.credentials.user, target, uploaded, pg.restore_jobs, sections)
    try:
        await work.run(name, argv, env=pg.env("restore"), timeout=pg.timeout)
    except CommandFailed as err:
        raise RestoreFailed(f"pg_restore into {target!r} failed: {stderr_of(err)}") from err


async def drop_quietly(pg: PostgresSnapshots, name: str) -> None:
    try:
        await pg.maintenance(sql.drop_database(name), error=RestoreFailed, purpose="drop")
    except (SnapshotError, EngineError) as err:
        _LOGGER.warning("could not drop database %s: %s", name, err.message)


async def ensure_connectable(pg: PostgresSnapshots, name: str) -> None:
    """Let ``name`` take connections again if a swap interrupted by a crash (kill -9 of the
    sidecar between its first and last command) left it refusing them."""
    state = await pg.maintenance(
        sql.allow_connections_state(name), error=RestoreFailed, purpose="allowconn"
    )
    if state.strip() == "f":
        await _allow(pg, name)


async def allow_refused(pg: PostgresSnapshots, survey: Survey, *names: str) -> None:
    """:func:`ensure_connectable` for each of ``names``, from a survey's answer."""
    for name in names:
        if survey.refuses_connections(name):
            await _allow(pg, name)


async def _allow(pg: PostgresSnapshots, name: str) -> None:
    _LOGGER.warning("database %s refused connections (an interrupted swap); allowing", name)
    await pg.maintenance(sql.allow_connections(name), error=RestoreFailed, purpose="allowconn")


async def _free_old_name(pg: PostgresSnapshots, live: str, short: str, survey: Survey) -> str:
    """``<db>__old_<id>``, or a variant if an earlier restore left one: that one may hold
    the only copy of data written since, so it is never dropped here (see the runbook)."""
    name = sql.kept_database_name(live, short)
    taken = survey.exists(name)  # the survey asked about the first name
    while taken:
        _LOGGER.warning(
            "database %s is left from an earlier, interrupted restore; keeping it "
            "(drop it by hand once it is not needed)", name,
        )  # fmt: skip
        name = sql.kept_database_name(live, f"{short}_{secrets.token_hex(2)}")
        taken = await pg.database_exists(name, RestoreFailed)
    return name


async def restore_replacing(
    pg: PostgresSnapshots,
    folder: Path,
    dump: PostgresDump,
    entry: FileEntry,
    snapshot_id: str,
    keep_as: str | None = None,
    verified: Awaitable[object] | None = None,
) -> str | None:
    """Replace the live database by the dump (steps 2-7); see the module docstring.

    With ``keep_as`` the replaced database is renamed to it and kept (step 7 skipped),
    and the call is idempotent: if ``keep_as`` exists, an earlier call's swap committed
    (the renames are one transaction), so the live database *is* the restored copy and
    nothing is restored again. Returns the name the replaced database is kept under,
    or None (dropped, or there was no live database).
    """
    live = pg.database
    short = snapshot_id.rsplit("_", 1)[-1]
    restored = sql.derived_name(live, f"__restore_{short}")
    await pg.ensure_running(RestoreFailed)
    try:
        return await _replace(pg, folder, dump, entry, (live, restored, short), keep_as, verified)
    finally:
        await asyncio.shield(quietly_connectable(pg, live))


async def _replace(
    pg: PostgresSnapshots,
    folder: Path,
    dump: PostgresDump,
    entry: FileEntry,
    names: tuple[str, str, str],
    keep_as: str | None,
    verified: Awaitable[object] | None,
) -> str | None:
    live, restored, short = names
    first_old = sql.kept_database_name(live, short)
    asked = [live, restored, first_old, *([keep_as] if keep_as else [])]
    survey = await pg.survey(asked, dump.roles, RestoreFailed)
    await allow_refused(pg, survey, live)
    # Only a scratch copy of the dump: an interrupted restore of this snapshot left it.
    if survey.exists(restored):
        await pg.maintenance(sql.drop_database(restored), error=RestoreFailed, purpose="drop")
    kept_before = keep_as is not None and survey.exists(keep_as)
    if kept_before and survey.exists(live):
        _LOGGER.info(
            "database %s exists: an earlier restore swapped %s already; not restoring again",
            keep_as, live,
        )  # fmt: skip
        assert keep_as is not None
        await allow_refused(pg, survey, keep_as)
        return keep_as
    old = keep_as or await _free_old_name(pg, live, short, survey)
    await ensure_roles(pg, folder, dump, survey.lacking(dump.roles), verified)
    try:
        await load_into(pg, folder, dump, entry, restored, verified)
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
        if not await committed_anyway(pg, err, live_exists, old):
            await asyncio.shield(_undo_swap(pg, live, restored))
            if isinstance(err, RestoreFailed):
                raise RestoreFailed(
                    f"{err.message}; the database {live!r} was left as it was", database=live
                ) from err
            raise
    _LOGGER.info("database %s replaced by the restored copy", live)
    if not live_exists:
        return keep_as if kept_before else None
    if keep_as is not None:
        _LOGGER.info("the replaced database is kept as %s", keep_as)
        return keep_as
    await drop_quietly(pg, old)
    return None


async def committed_anyway(
    pg: PostgresSnapshots, err: BaseException, live_exists: bool, old: str
) -> bool:
    """Whether a swap whose exec failed committed all the same: the exec may fail after
    the transaction committed (a lost connection), and then ``old`` exists. A cancelled
    caller is never told so (it must not carry on as if nothing happened)."""
    if not live_exists or isinstance(err, asyncio.CancelledError):
        return False
    return await _exists_quietly(pg, old)


async def _exists_quietly(pg: PostgresSnapshots, name: str) -> bool:
    try:
        return await pg.database_exists(name, RestoreFailed)
    except (SnapshotError, EngineError):
        return False


async def quietly_connectable(pg: PostgresSnapshots, name: str) -> None:
    try:
        await ensure_connectable(pg, name)
    except (SnapshotError, EngineError) as err:
        _LOGGER.error("could not make sure %s takes connections: %s", name, err.message)


async def _undo_swap(pg: PostgresSnapshots, live: str, restored: str) -> None:
    """The renames are one transaction; only the refused connections need undoing."""
    await quietly_connectable(pg, live)
    await drop_quietly(pg, restored)
