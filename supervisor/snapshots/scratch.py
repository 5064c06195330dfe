"""Restoring a snapshot's PostgreSQL dump into the rehearsal sandbox's throwaway server.

::

    live postgres container           sandbox server (supervisor.engine.sandbox)
      (never touched here)              1. accepts TCP connections (init finished)
                                        2. DROP the empty <db> its entrypoint created
                                        3. roles the dump needs, CREATE <db>, pg_restore,
                                           table stats == those recorded at dump time

The sandbox server was initialised by its image's entrypoint from the live
server's environment, so it has the same superuser and password and an empty
database under the live name. The dump takes that name, so the migrations
connect to the copy exactly as they would to the live database.

Only a container labelled as a sandbox is accepted: the restore drops a
database in its target, and the live server must never be one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from supervisor.engine.protocol import Engine
from supervisor.engine.sandbox import SANDBOX_LABEL
from supervisor.exceptions import EngineError, RestoreFailed
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots import postgres_restore
from supervisor.snapshots.models import SnapshotManifest
from supervisor.snapshots.postgres import PostgresSnapshots

READY_TIMEOUT = 180.0
POLL_SECONDS = 0.3
# TCP, not the socket: an entrypoint's initialisation server listens on the socket only.
READY_ARGV = ["pg_isready", "-q", "-h", "127.0.0.1"]


async def restore_into_sandbox(
    live: PostgresSnapshots,
    container_id: str,
    folder: Path,
    manifest: SnapshotManifest,
    ready_timeout: float = READY_TIMEOUT,
) -> None:
    """Steps 1-3 into the sandbox server ``container_id``; RestoreFailed on any failure."""
    dump = manifest.postgres
    if dump is None:
        raise RestoreFailed(f"snapshot {manifest.id} holds no PostgreSQL dump")
    await _check_sandbox(live, container_id)
    scratch = PostgresSnapshots(
        live.engine,
        container_id,
        replace(live.credentials, database=dump.database),
        timeout=live.timeout,
        restore_jobs=live.restore_jobs,
        hosts=live.hosts,
    )
    try:
        await wait_accepting(scratch.engine, container_id, ready_timeout)
        await scratch.maintenance(
            sql.drop_database(dump.database), error=RestoreFailed, purpose="drop"
        )
        await postgres_restore.ensure_roles(scratch, folder, dump)
        entry = manifest.file(dump.dump_file)
        await postgres_restore.load_into(scratch, folder, dump, entry, dump.database)
    except EngineError as err:
        raise RestoreFailed(f"restoring into the rehearsal server failed: {err.message}") from err


async def _check_sandbox(live: PostgresSnapshots, container_id: str) -> None:
    if container_id == live.container_id:
        raise RestoreFailed("refusing to restore a rehearsal copy into the live PostgreSQL server")
    container = await live.engine.container(container_id)
    if SANDBOX_LABEL not in container.labels:
        raise RestoreFailed(
            f"refusing to restore a rehearsal copy into {container.name}: "
            f"not a rehearsal sandbox (no {SANDBOX_LABEL} label)"
        )


async def wait_accepting(engine: Engine, container_id: str, timeout: float) -> None:
    """Until the server in ``container_id`` takes TCP connections; RestoreFailed if it
    stops running or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        container = await engine.container(container_id)
        if not container.running:
            raise RestoreFailed(
                f"the rehearsal PostgreSQL server {container.name} is {container.state}; "
                "it could not be started from the live server's image and settings"
            )
        result = await engine.exec(container_id, READY_ARGV, timeout=10, check=False)
        if result.exit_code == 0:
            return
        if time.monotonic() > deadline:
            raise RestoreFailed(
                f"the rehearsal PostgreSQL server {container.name} did not accept "
                f"connections within {timeout:g} s"
            )
        await asyncio.sleep(POLL_SECONDS)
