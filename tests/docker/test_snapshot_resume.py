"""A restore that keeps what it replaces, and converges when repeated after any interruption.

The rollback restores the pre-update snapshot over a database the *new* version
wrote to; until a pre-rollback dump of those writes exists and verifies, the
replaced database is kept (``keep_replaced_as``). These tests interrupt the
restore the hard way — ``kill -9`` of a separate process running it, at two
points, a cancelled task, and the leftovers of a crash inside the swap — and
check that running it again ends with the snapshot's data live, the replaced
data kept intact (per-table checksums measured independently of the product),
and nothing of a crashed attempt dropped that might be the only copy of data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.exceptions import RestoreFailed, SnapshotError
from supervisor.snapshots import SnapshotManifest, SnapshotReason, kept_database_name
from supervisor.snapshots.service import SnapshotService
from tests.docker.conftest import SnapshotFactory
from tests.support import pg_state
from tests.support.databases import PostgresHandle
from tests.support.dockercli import container_logs

REPO = Path(__file__).resolve().parents[2]
KEPT = kept_database_name("appdb", "run-1")

# The restore, in a process of its own that the test can SIGKILL (a crashed sidecar).
RESTORE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from supervisor.const import Role
from supervisor.engine.docker_engine import DockerEngine
from supervisor.snapshots import SnapshotOptions, SnapshotService, SnapshotStore
from supervisor.snapshots.postgres import PostgresSnapshots

async def main(url, container, backups, snapshot_id, keep, hold_after_swap):
    if hold_after_swap == "yes":  # to be killed right after the swap committed
        maintenance = PostgresSnapshots.maintenance
        async def held(self, *commands, **kw):
            out = await maintenance(self, *commands, **kw)
            if kw.get("purpose") == "swap":
                await asyncio.Event().wait()
            return out
        PostgresSnapshots.maintenance = held
    async with DockerEngine(url) as engine:
        options = SnapshotOptions(  # reading the dump in place: a crash leaves a sibling
            project="snaptest", backup_dir=Path(backups), timeout=240.0,
            backup_host_dir=backups,
        )
        async def locate(role):
            return container if role is Role.POSTGRES else None
        service = SnapshotService(engine, SnapshotStore(Path(backups), "snaptest"), options, locate)
        await service.restore(snapshot_id, keep_replaced_as=keep)
    print("restored", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def _databases(pg: PostgresHandle) -> list[str]:
    return pg_state.databases(pg)


def _allows_connections(pg: PostgresHandle, name: str) -> bool:
    sql = f"SELECT datallowconn FROM pg_database WHERE datname = '{name}'"  # noqa: S608
    return pg.psql(sql, database="postgres") == "t"


async def _snapshot_then_new_writes(
    postgres: PostgresHandle, service: SnapshotService
) -> tuple[SnapshotManifest, pg_state.PgState, pg_state.PgState]:
    """A checked pre-update snapshot, then the "new version" writes: (manifest, old, new)."""
    pg_state.seed(postgres)
    old = pg_state.state(postgres)
    manifest = await service.create(SnapshotReason.PRE_UPDATE, run_id="run-1")
    await service.check(manifest.id)
    pg_state.change(postgres)
    return manifest, old, pg_state.state(postgres)


async def test_restore_keeps_the_replaced_database_and_a_repeat_is_a_no_op(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    service = snapshot_service(postgres=postgres.container_id)
    manifest, old, new = await _snapshot_then_new_writes(postgres, service)
    with pytest.raises(RestoreFailed, match="refusing to keep the replaced database as 'other'"):
        await service.restore(manifest.id, keep_replaced_as="other")
    assert pg_state.state(postgres) == new

    await service.restore(manifest.id, keep_replaced_as=KEPT)

    assert pg_state.state(postgres) == old
    assert pg_state.state(postgres, KEPT) == new  # the new version's writes, all of them
    assert _databases(postgres) == ["appdb", KEPT, "postgres", "template0", "template1"]
    assert _allows_connections(postgres, "appdb")
    assert _allows_connections(postgres, KEPT)  # so it can be dumped or inspected

    # A resumed rollback calls it again: the swap is done, nothing is restored twice
    # (a row written since survives) and the kept copy is not touched.
    postgres.psql("INSERT INTO audit.events VALUES (now(), 'after the swap')")
    after_swap = pg_state.state(postgres)
    await service.restore(manifest.id, keep_replaced_as=KEPT)
    assert pg_state.state(postgres) == after_swap
    assert pg_state.state(postgres, KEPT) == new
    assert pg_state.container_leftovers(postgres) == ""

    with pytest.raises(SnapshotError, match="it is a replaced database kept by a restore"):
        await service.drop_database(KEPT)
    for refused in ("appdb", "postgres", "appdb__restore_x", "other__old_run-1"):
        with pytest.raises(SnapshotError, match="only databases kept by a restore"):
            await service.drop_kept_database(refused)
    await service.drop_kept_database(KEPT)
    await service.drop_kept_database(KEPT)  # already gone: fine (a resumed rollback)
    assert _databases(postgres) == ["appdb", "postgres", "template0", "template1"]
    assert pg_state.state(postgres) == after_swap


async def test_cancelled_mid_restore_then_again_converges(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    service = snapshot_service(postgres=postgres.container_id)
    manifest, old, new = await _snapshot_then_new_writes(postgres, service)
    generation = pg_state.server_generation(postgres)
    restoring = asyncio.create_task(service.restore(manifest.id, keep_replaced_as=KEPT))
    await _until(lambda: _pg_restore_running(postgres), "pg_restore to run")

    restoring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await restoring

    assert pg_state.state(postgres) == new  # the live database was never touched
    assert _databases(postgres) == ["appdb", "postgres", "template0", "template1"]
    await service.restore(manifest.id, keep_replaced_as=KEPT)
    assert pg_state.state(postgres) == old
    assert pg_state.state(postgres, KEPT) == new
    assert pg_state.container_leftovers(postgres) == ""
    _not_restarted(postgres, generation)


@pytest.mark.parametrize("kill_when", ["mid-pg_restore", "right-after-the-swap"])
async def test_kill_9_of_the_restoring_process_then_again_converges(
    postgres: PostgresHandle,
    snapshot_service: SnapshotFactory,
    docker_proxy_url: str,
    tmp_path: Path,
    kill_when: str,
) -> None:
    service = snapshot_service(postgres=postgres.container_id)
    manifest, old, new = await _snapshot_then_new_writes(postgres, service)
    generation = pg_state.server_generation(postgres)
    process = subprocess.Popen(  # noqa: ASYNC220 (killed below, never waited on blocking)
        [sys.executable, "-c", RESTORE_SCRIPT, docker_proxy_url, postgres.container_id,
         str(tmp_path / "backups"), manifest.id, KEPT,
         "yes" if kill_when == "right-after-the-swap" else "no"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if kill_when == "mid-pg_restore":
            await _until(lambda: _pg_restore_running(postgres), "pg_restore to run")
        else:
            await _until(lambda: KEPT in _databases(postgres), "the swap")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        out = process.communicate(timeout=30)[0].decode()
    assert "restored" not in out, out  # it really died before the end

    await service.restore(manifest.id, keep_replaced_as=KEPT)

    assert pg_state.state(postgres) == old
    assert pg_state.state(postgres, KEPT) == new
    assert _databases(postgres) == ["appdb", KEPT, "postgres", "template0", "template1"]
    assert _allows_connections(postgres, "appdb")
    await _until(lambda: pg_state.container_leftovers(postgres) == "", "leftovers to go")
    _not_restarted(postgres, generation)


def _not_restarted(pg: PostgresHandle, generation: str) -> None:
    """Nothing the crash left (an orphaned pg_restore, the dead process's sibling in the
    server's PID namespace) nor its clean-up made the server restart with crash recovery."""
    assert pg_state.server_generation(pg) == generation
    assert "terminated by signal" not in container_logs(pg.container_id)


async def test_leftovers_of_a_crash_inside_the_swap(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    """What ``kill -9`` between the swap's first and last command leaves (the live database
    refusing connections, a half-restored scratch copy) is repaired; a ``<db>__old_*`` from
    an earlier restore is never dropped, even by a plain restore that drops its own."""
    service = snapshot_service(postgres=postgres.container_id)
    manifest, old, new = await _snapshot_then_new_writes(postgres, service)
    short = manifest.id.rsplit("_", 1)[1]
    scratch, earlier = f"appdb__restore_{short}", f"appdb__old_{short}"
    postgres.psql(f'CREATE DATABASE "{scratch}"')
    postgres.psql("CREATE TABLE half (x int)", database=scratch)
    postgres.psql(f'CREATE DATABASE "{earlier}"')
    postgres.psql("CREATE TABLE only_copy AS SELECT 42 AS answer", database=earlier)
    postgres.psql('ALTER DATABASE "appdb" WITH ALLOW_CONNECTIONS false', database="postgres")
    assert not _allows_connections(postgres, "appdb")

    await service.restore(manifest.id)

    assert _allows_connections(postgres, "appdb")
    assert pg_state.state(postgres) == old
    assert _databases(postgres) == ["appdb", earlier, "postgres", "template0", "template1"]
    assert postgres.psql("SELECT answer FROM only_copy", database=earlier) == "42"
    assert new != old  # (the replaced data was dropped: a plain restore asked for that)


def _pg_restore_running(pg: PostgresHandle) -> bool:
    return "supervisor-restore" in pg.psql(
        "SELECT string_agg(application_name, ',') FROM pg_stat_activity"
    )


async def _until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
