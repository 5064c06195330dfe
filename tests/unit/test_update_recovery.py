"""Start-up recovery after the sidecar died at each stage (fakes; the real
kill -9 matrix runs against the real engine in tests/docker)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisor.update.manager import UpdateManager
from supervisor.update.models import StartRequest
from supervisor.update.stages import Stage
from tests.support.fakes import FakeRegistry
from tests.unit.test_update_run import VERSIONS, make_world

# (where the process dies, stage journaled at that moment, end state after restart)
CRASHES = [
    ("engine:pull", Stage.PULL, Stage.FAILED),
    ("engine:stop", Stage.STOP, Stage.FAILED),
    ("snapshots:create:pre-update", Stage.BACKUP, Stage.FAILED),
    ("engine:run_one_shot", Stage.MIGRATE, Stage.ROLLED_BACK),
    ("engine:recreate", Stage.RECREATE, Stage.ROLLED_BACK),
    ("engine:wait_healthy", Stage.HEALTHCHECK, Stage.ROLLED_BACK),
]


@pytest.mark.parametrize(("hang", "stage", "end"), CRASHES)
async def test_restart_after_a_crash_ends_on_a_known_good_version(
    tmp_path: Path, hang: str, stage: Stage, end: Stage
) -> None:
    world = make_world(tmp_path)
    target, _, operation = hang.partition(":")
    (world.engine if target == "engine" else world.snapshots).hang.add(operation)
    record = await world.manager.start(StartRequest(target_version="1.1.0"))
    for _ in range(200):
        if world.state.read_current().state is stage:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await world.manager.shutdown()  # the process dies: the journal stays as it was
    assert world.state.read_current().state is stage  # type: ignore[union-attr]

    world.engine.hang.clear()
    world.snapshots.hang.clear()
    restarted = UpdateManager(world.manager.deps, FakeRegistry(VERSIONS))
    recovered = await restarted.startup()
    assert recovered is not None
    assert recovered.update_id == record.update_id
    assert recovered.result is end, recovered.error
    assert recovered.error is not None
    assert recovered.error.error_key == "interrupted"
    assert world.engine.version_running("app") == "1.0.0"
    assert world.engine.version_running("python_backend") == "1.0.0"
    assert all(
        c.running
        for c in world.engine.by_service("app") + world.engine.by_service("python_backend")
    )
    assert not [c for c in world.engine.containers.values() if ".old-" in c.name]
    assert (world.snapshots.restored == [recovered.snapshot_id]) == (end is Stage.ROLLED_BACK)
    assert [r.update_id for r in world.state.history()] == [record.update_id]

    again = await UpdateManager(world.manager.deps, FakeRegistry(VERSIONS)).startup()
    assert again is None  # recovery is idempotent: nothing left to do
    world.manager = restarted  # the dead process's manager refuses: its run never ended there
    assert (await world.update("1.1.0")).result is Stage.COMPLETED


async def test_crash_after_completion_finishes_the_bookkeeping(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    record = await world.update("1.1.0")
    current = world.state.read_current()
    assert current is not None
    # Simulate a kill right after the journal said "completed": no pins, no history.
    (world.settings.state_dir / "versions.env").unlink()
    (world.settings.state_dir / "last-good.json").unlink()
    (world.settings.state_dir / "history.jsonl").unlink()
    restarted = UpdateManager(world.manager.deps, FakeRegistry(VERSIONS))
    await restarted.startup()
    assert world.state.read_pins()["APP_IMAGE"].endswith(
        current.services["app"].target_digest.split("@")[1]
    )  # type: ignore[union-attr]
    assert [r.update_id for r in world.state.history()] == [record.update_id]
