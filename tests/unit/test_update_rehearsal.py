"""The rehearsal stage over fake adapters: always in the run's sandbox, always cleaned up.

The real isolation (an internal network, a throwaway server, a migrations image that
ignores every override) is proven on the engine in tests/docker/test_rehearsal_isolation.py;
here the run's side of it: what is asked of the engine and the snapshots, in which order,
and that the sandbox is removed on success, failure, cancel, shutdown and after a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from supervisor.exceptions import EngineError, RestoreFailed
from supervisor.snapshots.const import SnapshotReason
from supervisor.update.manager import UpdateManager
from supervisor.update.models import StartRequest
from supervisor.update.stages import Stage
from tests.support.fakes import FakeRegistry, image_of
from tests.unit.test_update_run import VERSIONS, World, make_world


def rehearsing(tmp_path: Path) -> World:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return make_world(tmp_path, rehearse=True)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run never got there")


async def test_the_rehearsal_runs_in_the_sandbox_and_removes_it(tmp_path: Path) -> None:
    world = rehearsing(tmp_path)
    record = await world.update("1.1.0")
    assert record.result is Stage.COMPLETED, record.error
    assert world.snapshots.created[0] == (SnapshotReason.REHEARSAL, record.update_id)
    (rehearsal_dump,) = [
        m.id for m in world.snapshots.manifests.values() if m.reason == SnapshotReason.REHEARSAL
    ]
    ((restored, server),) = world.snapshots.sandbox_restores
    assert restored == rehearsal_dump
    assert server.startswith("s")  # the sandbox server, never a stack container
    assert server not in world.engine.containers
    assert world.snapshots.scratch == []  # nothing restored into the live server
    assert ("sandbox_one_shot", f"{image_of('1.1.0')} demo_rehearsal_{record.update_id}") in (
        world.engine.calls
    )
    assert world.engine.sandboxes == {}
    assert any(f"removed rehearsal sandbox demo_rehearsal_{record.update_id}" in line
               for line in record.log_tail)  # fmt: skip
    # the rehearsal came before anything stopped
    ops = [op for op, _ in world.engine.calls]
    assert ops.index("sandbox_one_shot") < ops.index("stopped")


async def test_a_failing_migration_fails_the_run_and_removes_the_sandbox(tmp_path: Path) -> None:
    world = rehearsing(tmp_path)
    world.engine.failing_migrations.add("1.2.0")
    record = await world.update("1.2.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.REHEARSE
    assert record.error.error_key == "migration_failed"
    assert "rehearsal: ERROR: division by zero" in record.log_tail
    assert world.engine.sandboxes == {}
    assert not [op for op, _ in world.engine.calls if op in ("stopped", "one_shot")]


async def test_a_sandbox_that_cannot_be_created_or_filled_fails_before_stop(
    tmp_path: Path,
) -> None:
    world = rehearsing(tmp_path)
    world.engine.fail["create_sandbox"] = EngineError("creating network: refused")
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.REHEARSE
    assert "creating network: refused" in record.error.message

    world = rehearsing(tmp_path / "b")
    world.snapshots.fail["restore_postgres_into_sandbox"] = RestoreFailed("pg_restore failed")
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.REHEARSE
    assert world.engine.sandboxes == {}
    assert not [op for op, _ in world.engine.calls if op == "stopped"]


async def test_cancel_stops_a_running_rehearsal_at_once(tmp_path: Path) -> None:
    world = rehearsing(tmp_path)
    world.engine.gates["run_one_shot_in_sandbox"] = asyncio.Event()  # never set
    started = await world.manager.start(StartRequest(target_version="1.1.0"))
    await until(lambda: started.update_id in world.engine.sandboxes)
    await world.manager.cancel(started.update_id)
    async with asyncio.timeout(3):  # not after the migrations: they never finish here
        record = await world.manager.wait(started.update_id)
    assert record.result is Stage.CANCELLED, record.error
    assert world.engine.sandboxes == {}
    assert not [op for op, _ in world.engine.calls if op == "stopped"]


async def test_shutdown_mid_rehearsal_removes_the_sandbox(tmp_path: Path) -> None:
    world = rehearsing(tmp_path)
    world.snapshots.gates["restore_postgres_into_sandbox"] = asyncio.Event()
    started = await world.manager.start(StartRequest(target_version="1.1.0"))
    await until(lambda: started.update_id in world.engine.sandboxes)
    await world.manager.shutdown()
    assert world.engine.sandboxes == {}


async def test_recovery_removes_a_sandbox_left_by_a_crash(tmp_path: Path) -> None:
    world = rehearsing(tmp_path)
    world.engine.gates["run_one_shot_in_sandbox"] = asyncio.Event()
    world.engine.fail["remove_sandboxes"] = EngineError("the engine is gone")  # a "kill -9"
    started = await world.manager.start(StartRequest(target_version="1.1.0"))
    await until(lambda: started.update_id in world.engine.sandboxes)
    await world.manager.shutdown()
    assert started.update_id in world.engine.sandboxes  # left behind

    del world.engine.fail["remove_sandboxes"]
    restarted = UpdateManager(world.manager.deps, FakeRegistry(VERSIONS))
    recovered = await restarted.startup()
    assert recovered is not None
    assert recovered.result is Stage.FAILED
    assert world.engine.sandboxes == {}
    assert not [op for op, _ in world.engine.calls if op == "stopped"]
