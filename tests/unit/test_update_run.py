"""The update run's state machine, with fakes of our own adapter protocols."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor.config import Settings, load_settings
from supervisor.exceptions import (
    AlreadyCurrent,
    DowngradeRefused,
    EngineError,
    InvalidVersion,
    NotCancellable,
    RegistryUnreachable,
    SupervisorError,
    UpdateNotFound,
    UpdateRunning,
    UpdatesBlocked,
)
from supervisor.signatures.models import Policy
from supervisor.statedir import StateStore
from supervisor.update.manager import UpdateManager
from supervisor.update.models import RunRecord, StartRequest
from supervisor.update.run import RunDeps
from supervisor.update.stages import Stage
from tests.support.fakes import (
    FakeEngine,
    FakeProber,
    FakeRegistry,
    FakeSignatures,
    FakeSnapshots,
    image_of,
)


class BackupFailedForTest(SupervisorError):
    error_key = "backup_failed"


VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "2.0.0rc1"]


@dataclass
class World:
    settings: Settings
    engine: FakeEngine
    snapshots: FakeSnapshots
    signatures: FakeSignatures
    state: StateStore
    manager: UpdateManager

    async def update(self, version: str | None = "1.1.0", **kwargs: object) -> RunRecord:
        record = await self.manager.start(StartRequest(target_version=version, **kwargs))  # type: ignore[arg-type]
        return await self.manager.wait(record.update_id)

    def phases(self, update_id: str) -> list[str]:
        events = self.manager._runs[update_id].events.snapshot()
        return [e.data["state"] for e in events if e.event == "phase"]


def make_world(tmp_path: Path, rehearse: bool = False, **env: str) -> World:
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "backups").mkdir(exist_ok=True)
    settings = load_settings(
        {
            "SUPERVISOR_COMPOSE_PROJECT": "demo",
            "SUPERVISOR_SERVICES": "app=app,python_backend=app,migrations=migrations,postgres=postgres",
            "SUPERVISOR_START_ORDER": "python_backend,app",
            "SUPERVISOR_STATE_DIR": str(tmp_path / "state"),
            "SUPERVISOR_BACKUP_DIR": str(tmp_path / "backups"),
            "SUPERVISOR_SIGNATURE_POLICY": "off",
            "SUPERVISOR_REHEARSE": "true" if rehearse else "false",
            **{f"SUPERVISOR_{k.upper()}": v for k, v in env.items()},
        }
    )
    engine, snapshots, signatures = FakeEngine(), FakeSnapshots(), FakeSignatures()
    state = StateStore(settings.state_dir)
    deps = RunDeps(settings, engine, snapshots, signatures, FakeProber(), state)
    manager = UpdateManager(deps, FakeRegistry(VERSIONS))
    return World(settings, engine, snapshots, signatures, state, manager)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


async def test_successful_update_goes_through_every_stage_and_pins(world: World) -> None:
    record = await world.update("1.1.0")
    assert record.result is Stage.COMPLETED, record.error
    assert world.phases(record.update_id) == [
        "preflight", "pull", "verify", "stop", "backup", "migrate", "recreate", "healthcheck", "completed",
    ]  # fmt: skip
    assert world.engine.version_running("app") == "1.1.0"
    assert world.engine.version_running("python_backend") == "1.1.0"
    assert world.state.read_pins() == {
        "APP_IMAGE": image_of("1.1.0"),
        "PYTHON_BACKEND_IMAGE": image_of("1.1.0"),
        "MIGRATIONS_IMAGE": image_of("1.1.0"),
    }
    last_good = world.state.read_last_good()
    assert last_good is not None
    assert (last_good.version, last_good.snapshot_id) == ("1.1.0", record.snapshot_id)
    assert [r.update_id for r in world.state.history()] == [record.update_id]
    assert not [c for c in world.engine.containers.values() if ".old-" in c.name]
    assert world.snapshots.created == [("pre-update", record.update_id)]
    # stop in reverse dependency order
    stops = [arg for op, arg in world.engine.calls if op == "stopped"]
    assert stops == ["app", "python_backend"]
    events = world.manager._runs[record.update_id].events.snapshot()
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "result"
    assert events[-1].data["state"] == "completed"


async def test_latest_stable_release_when_no_version_given(world: World) -> None:
    record = await world.update(None)
    assert record.target_version == "1.3.0"  # 2.0.0rc1 is not stable


@pytest.mark.parametrize(
    ("version", "force", "error", "key"),
    [
        ("1.0.0", False, AlreadyCurrent, "already_current"),
        ("0.9.0", False, InvalidVersion, "invalid_version"),  # not in the registry
        ("banana", False, InvalidVersion, "invalid_version"),
    ],
)
async def test_start_refuses_bad_targets(
    world: World, version: str, force: bool, error: type[Exception], key: str
) -> None:
    with pytest.raises(error) as refused:
        await world.manager.start(StartRequest(target_version=version, force=force))
    assert refused.value.error_key == key  # type: ignore[attr-defined]
    assert world.state.read_current() is None
    assert world.engine.version_running() == "1.0.0"


async def test_downgrade_needs_force(world: World) -> None:
    await world.update("1.1.0")
    with pytest.raises(DowngradeRefused, match="older than the running 1.1.0"):
        await world.manager.start(StartRequest(target_version="1.0.0"))
    record = await world.update("1.0.0", force=True)
    assert record.result is Stage.COMPLETED
    assert world.engine.version_running() == "1.0.0"


async def test_freeze_and_hard_pin_block_updates(tmp_path: Path) -> None:
    world = make_world(tmp_path, hard_pin="1.2.0")
    with pytest.raises(UpdatesBlocked, match="hard-pinned to 1.2.0"):
        await world.manager.start(StartRequest(target_version="1.1.0"))
    world.settings.freeze_file.write_text("maintenance")
    with pytest.raises(UpdatesBlocked, match="frozen"):
        await world.manager.start(StartRequest(target_version="1.2.0"))


async def test_single_flight_and_cancel_before_stop(world: World) -> None:
    world.engine.pull_gate = asyncio.Event()
    first = await world.manager.start(StartRequest(target_version="1.1.0"))
    with pytest.raises(UpdateRunning) as running:
        await world.manager.start(StartRequest(target_version="1.2.0"))
    assert running.value.details["update_id"] == first.update_id
    await world.manager.cancel(first.update_id)
    world.engine.pull_gate.set()
    record = await world.manager.wait(first.update_id)
    assert record.result is Stage.CANCELLED
    assert not [op for op, _ in world.engine.calls if op == "stopped"]
    assert world.engine.version_running() == "1.0.0"
    with pytest.raises(NotCancellable):
        await world.manager.cancel(first.update_id)
    with pytest.raises(UpdateNotFound):
        await world.manager.cancel("nope")
    assert (await world.update("1.1.0")).result is Stage.COMPLETED  # the lock was released


async def test_pull_failure_changes_nothing(world: World) -> None:
    world.engine.fail["pull"] = RegistryUnreachable("registry down")
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert (record.error.stage, record.error.error_key) == (Stage.PULL, "registry_unreachable")
    assert not [op for op, _ in world.engine.calls if op == "stopped"]
    assert world.state.read_pins() == {}


async def test_enforced_signature_refusal_fails_in_verify(world: World) -> None:
    world.signatures.unsigned.add(image_of("1.1.0"))
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.VERIFY
    assert "no signature found" in record.error.message
    assert world.engine.version_running() == "1.0.0"


async def test_warn_policy_records_the_warning_and_proceeds(world: World) -> None:
    world.signatures.policy = Policy.WARN
    world.signatures.unsigned.add(image_of("1.1.0"))
    record = await world.update("1.1.0")
    assert record.result is Stage.COMPLETED
    assert any("unverified signature allowed by policy warn" in w for w in record.warnings)


async def test_rehearsal_catches_a_bad_migration_without_stopping_anything(tmp_path: Path) -> None:
    world = make_world(tmp_path, rehearse=True)
    world.engine.failing_migrations.add("1.2.0")
    record = await world.update("1.2.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.REHEARSE
    assert not [op for op, _ in world.engine.calls if op == "stopped"]
    # On the run's isolated sandbox (tests/unit/test_update_rehearsal.py), never the live server.
    assert world.snapshots.scratch == []
    assert [op for op, _ in world.engine.calls if op == "one_shot"] == []
    assert (
        "sandbox_one_shot",
        f"{image_of('1.2.0')} demo_rehearsal_{record.update_id}",
    ) in world.engine.calls
    assert world.engine.sandboxes == {}


async def test_backup_failure_restarts_the_old_version(world: World) -> None:
    world.snapshots.fail["create:pre-update"] = BackupFailedForTest("disk full")
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.BACKUP
    assert all(
        c.running
        for c in world.engine.by_service("app") + world.engine.by_service("python_backend")
    )
    assert world.engine.version_running() == "1.0.0"


async def test_failed_migration_without_rehearsal_rolls_back_data(world: World) -> None:
    world.engine.failing_migrations.add("1.2.0")
    record = await world.update("1.2.0")
    assert record.result is Stage.ROLLED_BACK
    assert record.error is not None
    assert record.error.stage is Stage.MIGRATE
    assert world.snapshots.restored == [record.snapshot_id]
    assert ("pre-rollback", record.update_id) in world.snapshots.created
    assert record.pre_rollback_snapshot_id is not None
    assert world.engine.version_running() == "1.0.0"
    assert all(c.running for c in world.engine.by_service("app"))


async def test_unhealthy_release_rolls_back_to_retained_containers(world: World) -> None:
    before = {c.id for c in world.engine.by_service("app")}
    world.engine.unhealthy_versions.add("1.3.0")
    record = await world.update("1.3.0")
    assert record.result is Stage.ROLLED_BACK
    assert world.phases(record.update_id)[-3:] == ["healthcheck", "rollback", "rolled_back"]
    assert {c.id for c in world.engine.by_service("app")} == before  # the very same container
    assert world.engine.by_service("app")[0].restart_policy == {"Name": "unless-stopped"}
    assert world.state.read_pins()["APP_IMAGE"] == image_of("1.0.0")
    last_good = world.state.read_last_good()
    assert last_good is not None
    assert last_good.version == "1.0.0"


async def test_failing_rollback_ends_in_needs_intervention_keeping_everything(world: World) -> None:
    world.engine.unhealthy_versions.add("1.3.0")
    world.snapshots.fail["restore"] = BackupFailedForTest("restore exploded")
    record = await world.update("1.3.0")
    assert record.result is Stage.NEEDS_INTERVENTION
    assert record.error is not None
    message = record.error.message
    assert "restore exploded" in message
    assert f"snapshot {record.snapshot_id}" in message
    assert ".old-" in message  # the retained containers are named
    assert [c for c in world.engine.containers.values() if ".old-" in c.name]


async def test_status_without_any_run_and_unknown_ids(world: World) -> None:
    from supervisor.exceptions import NoUpdate

    with pytest.raises(NoUpdate):
        world.manager.status()
    with pytest.raises(UpdateNotFound):
        world.manager.status("deadbeef")
    record = await world.update("1.1.0")
    assert world.manager.status().update_id == record.update_id


async def test_events_resume_after_an_id_and_end_with_result(world: World) -> None:
    record = await world.update("1.1.0")
    everything = [e async for e in world.manager.events(record.update_id)]
    resumed = [e async for e in world.manager.events(record.update_id, after=3)]
    assert resumed == [e for e in everything if e.id > 3]
    assert everything[-1].event == "result"
    assert all(e.data["event"] == e.event for e in everything)


async def test_engine_failure_during_stop_restarts_what_was_stopped(world: World) -> None:
    world.engine.fail["stop"] = EngineError("engine hiccup")
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.STOP
    assert world.engine.version_running() == "1.0.0"
