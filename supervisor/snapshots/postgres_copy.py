"""A rollback copy: the live database copied by the server while the app is down,
put back by a rollback with a rename instead of a restore.

::

    update, app stopped:   CREATE DATABASE <db>__copy_<run> TEMPLATE <db>     ~1 s per GB
    rollback:              <db> → <db>__old_<run>, <db>__copy_<run> → <db>    one transaction
    run ends otherwise:    DROP DATABASE <db>__copy_<run>

Why: a restore from the dump takes what ``pg_restore`` takes (about 11 s per GB
on the reference machine, plus the verification), and all of it is downtime of
a rollback. The server copies a database's files in about a second per GB, and
the copy is exact by construction: the template has no other session while it
is copied (``CREATE DATABASE`` refuses otherwise), so nothing writes to it. The
price is disk space for a second copy on the database's volume for the length
of the run; without room, or when anything about the copy fails, the run goes
on without one and a rollback restores the dump as before.

The snapshot in ``backups/`` is still taken: the copy lives on the same volume
as the database and is gone once the run ends, the snapshot is what an operator
keeps.
"""

from __future__ import annotations

import asyncio
import logging

from supervisor.exceptions import (
    BackupFailed,
    CommandFailed,
    EngineError,
    RestoreFailed,
    SnapshotError,
)
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.postgres import PostgresSnapshots
from supervisor.snapshots.postgres_restore import (
    allow_refused,
    committed_anyway,
    drop_quietly,
    quietly_connectable,
)
from supervisor.snapshots.protocol import CopySwap

_LOGGER = logging.getLogger(__name__)
COPY_ATTEMPTS = 3  # a client reconnecting between terminate and CREATE makes it refuse


async def free_bytes(pg: PostgresSnapshots) -> int | None:
    """Free bytes on the volume of the server's data directory; None if it cannot be told."""
    try:
        directory = (await pg.query(pg.database, "SHOW data_directory", purpose="datadir")).strip()
        out = bytearray()

        async def collect(chunk: bytes) -> None:
            out.extend(chunk)

        await pg.engine.exec(pg.container_id, ["df", "-Pk", directory], stdout=collect, timeout=30)
        return int(out.decode().splitlines()[-1].split()[3]) * 1024
    except (SnapshotError, CommandFailed, EngineError, ValueError, IndexError):
        return None


async def make_copy(pg: PostgresSnapshots, name: str, margin: int) -> int:
    """Copy the live database to ``name`` (dropped first if an interrupted attempt left
    it: a copy is only used once a run has journaled it complete). Returns its size.
    Raises BackupFailed (nothing left behind) when there is no room or the server
    refuses."""
    live = pg.database
    if not sql.is_copy_name(live, name):
        raise BackupFailed(f"refusing to copy {live!r} to {name!r}: not a copy name")
    info = await pg.database_info(BackupFailed)
    size = int(info["size"])
    free = await free_bytes(pg)
    if free is not None and free < size + margin:
        raise BackupFailed(
            f"no room for a rollback copy of {live!r} on the database's volume "
            f"({size / 1e6:.0f} MB needed plus a margin of {margin / 1e6:.0f} MB, "
            f"{free / 1e6:.0f} MB free)"
        )
    settings = [sql.database_setting(name, s) for s in info["settings"]]
    create = sql.copy_database(name, live, info["owner"], int(info["version_num"]))
    for attempt in range(1, COPY_ATTEMPTS + 1):
        await pg.maintenance(sql.drop_database(name), purpose="copy-drop")
        try:
            await pg.maintenance(sql.terminate_sessions(live), create, *settings, purpose="copy")
            return size
        except BackupFailed as err:
            await drop_quietly(pg, name)
            if "being accessed by other users" in err.message and attempt < COPY_ATTEMPTS:
                _LOGGER.info("a session reconnected to %s while copying it; again", live)
                continue
            raise BackupFailed(f"the rollback copy of {live!r} failed: {err.message}") from err
    raise AssertionError("unreachable")  # pragma: no cover


async def swap_in(pg: PostgresSnapshots, copy: str, keep_as: str) -> CopySwap:
    """Put ``copy`` in the place of the live database, which is kept as ``keep_as``.

    Idempotent: an earlier call's committed swap (the copy gone, ``keep_as`` and the live
    database there) is reported again; a copy that is gone otherwise changes nothing
    (``swapped`` False: the caller restores the dump instead). Without a live database
    the copy is renamed in and nothing is kept.
    """
    live = pg.database
    if not (sql.is_copy_name(live, copy) and sql.is_kept_name(live, keep_as)):
        raise RestoreFailed(f"refusing to swap {copy!r} in for {live!r} keeping {keep_as!r}")
    # Every question at once: this runs while the stack is down.
    survey = await pg.survey([live, copy, keep_as], [], RestoreFailed)
    # A swap interrupted by a crash leaves them refusing sessions.
    await allow_refused(pg, survey, live, copy)
    if not survey.exists(copy):
        done = survey.exists(keep_as) and survey.exists(live)
        return CopySwap(swapped=True, kept=keep_as) if done else CopySwap(swapped=False)
    if survey.exists(keep_as):
        raise RestoreFailed(
            f"database {keep_as} exists already; the rollback copy {copy} was not swapped "
            "in (both are kept)"
        )
    live_exists = survey.exists(live)
    commands = sql.swap_databases(live, copy, keep_as, live_exists, end_sessions_of_restored=True)
    try:
        await pg.maintenance(*commands, error=RestoreFailed, purpose="swap")
    except BaseException as err:
        swapped = await committed_anyway(pg, err, live_exists, keep_as)
        for name in (live, copy, keep_as):
            await asyncio.shield(quietly_connectable(pg, name))
        if not swapped:
            raise
    if not live_exists:
        _LOGGER.warning("rollback copy %s renamed to %s, which did not exist", copy, live)
        return CopySwap(swapped=True)
    _LOGGER.info("rollback copy %s swapped in for %s (kept as %s)", copy, live, keep_as)
    return CopySwap(swapped=True, kept=keep_as)


async def drop_copy(pg: PostgresSnapshots, name: str) -> None:
    """Drop a rollback copy (only ``<db>__copy_<tag>`` names); nothing if it is gone."""
    if not sql.is_copy_name(pg.database, name):
        raise SnapshotError(f"refusing to drop {name!r}: not a rollback copy")
    await pg.maintenance(sql.drop_database(name), error=SnapshotError, purpose="copy-drop")
