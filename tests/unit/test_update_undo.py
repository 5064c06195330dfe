"""The undo side of the run, with fakes of our adapter protocols only: a crash at every
journaled point inside the rollback resumes it (one pre-rollback dump, one restore), the
replaced database is kept until the pre-rollback dump verifies, an unusable snapshot is
never restored, ``needs_intervention`` blocks starts until acknowledged, a finished run is
never rewritten, and the stage table refuses transitions it does not allow.
(The same scenarios against the real engine: tests/docker/test_second_order.py.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.api.badge import badge_of
from supervisor.exceptions import (
    BackupFailed,
    DiskFull,
    EngineError,
    InsufficientDiskSpace,
    InterventionRequired,
    NotAcknowledgeable,
    SnapshotCorrupt,
    SnapshotError,
    StateError,
    SupervisorError,
    UpdateRunning,
)
from supervisor.update.events import EventLog
from supervisor.update.manager import UpdateManager
from supervisor.update.models import RunRecord, StartRequest
from supervisor.update.rollback import replaced_database_name
from supervisor.update.run import StackLayout, UpdateRun
from supervisor.update.stages import Stage
from supervisor.update.steps import FORWARD, STEPS, allowed
from supervisor.update.summary import run_summary
from tests.support.fakes import FAKE_DATABASE, FakeRegistry
from tests.unit.test_update_run import VERSIONS, World, make_world

pytestmark = pytest.mark.unit


@pytest.fixture
def stack(tmp_path: Path) -> World:
    """The real manager over fakes of the adapters (named apart from the API ``world``)."""
    return make_world(tmp_path)


POINTS = [
    "rollback.new-stopped",
    "rollback.pre-rollback-taken",
    "rollback.restore-started",
    "rollback.swapped",
    "rollback.put-back",
]


async def _until(condition: object, what: str) -> None:
    for _ in range(500):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {what}")


async def _update_acting_during_migrate(
    world: World, version: str, act: Callable[[], object]
) -> RunRecord:
    """Run an update to ``version``, call ``act`` while its migration is held (what an
    operator or the database does behind the run's back), and return the finished run."""
    gate = asyncio.Event()
    world.engine.gates["run_one_shot"] = gate
    started = await world.manager.start(StartRequest(target_version=version))
    await _until(lambda: world.manager.status(started.update_id).state is Stage.MIGRATE, "migrate")
    act()
    gate.set()
    return await world.manager.wait(started.update_id)


async def _restart(world: World) -> RunRecord:
    """A new process over the same state, engine and snapshots: recovery first."""
    restarted = UpdateManager(world.manager.deps, FakeRegistry(VERSIONS))
    recovered = await restarted.startup()
    assert recovered is not None
    world.manager = restarted
    return recovered


def _assert_old_version_back(world: World) -> None:
    assert world.engine.version_running("app") == "1.0.0"
    assert world.engine.version_running("python_backend") == "1.0.0"
    apps = world.engine.by_service("app") + world.engine.by_service("python_backend")
    assert all(c.running for c in apps)
    assert not [c for c in world.engine.containers.values() if ".old-" in c.name]


@pytest.mark.parametrize("point", POINTS)
async def test_a_crash_inside_the_rollback_resumes_it_without_a_second_dump(
    tmp_path: Path, point: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The restore path (no rollback copy)."""
    world = make_world(tmp_path, rollback_copy="false")
    started, recovered = await _crash_at(world, point, monkeypatch, caplog)
    pre = [c for c in world.snapshots.created if c[0] == "pre-rollback"]
    assert len(pre) == 1, "the pre-rollback dump was taken twice"
    kept_id = recovered.pre_rollback_snapshot_id
    assert kept_id is not None
    assert world.snapshots.manifests[kept_id].reason == "pre-rollback"
    assert world.snapshots.restored == [recovered.snapshot_id]  # restored once
    assert world.snapshots.influx_restored[-1] is True  # verified dump: everything back
    replaced = replaced_database_name(FAKE_DATABASE, started.update_id)
    assert world.snapshots.dropped_kept == [replaced]  # dropped once, after it was dumped
    assert world.snapshots.kept == []
    _assert_the_end(world, started)


@pytest.mark.parametrize("point", [*POINTS, "rollback.replaced-dumped"])
async def test_a_crash_inside_a_rollback_by_copy_resumes_it(
    tmp_path: Path, point: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The rollback copy path: the copy swapped in once, the InfluxDB backup and the dump of
    the replaced database taken once each, the replaced database dropped once."""
    world = make_world(tmp_path)
    started, recovered = await _crash_at(world, point, monkeypatch, caplog)
    assert recovered.rollback is not None
    assert recovered.rollback.via_copy
    parts = [p for (reason, _), p in zip(world.snapshots.created, world.snapshots.create_parts, strict=True)
             if reason == "pre-rollback"]  # fmt: skip
    replaced = replaced_database_name(FAKE_DATABASE, started.update_id)
    assert parts == [(False, True, None), (True, False, replaced)], parts
    assert world.snapshots.postgres_restored == [False]  # PostgreSQL came back by the swap
    assert world.snapshots.influx_restored == [True]
    assert world.snapshots.dropped_kept == [replaced]
    assert world.snapshots.kept == []
    assert world.snapshots.copies == set()
    assert recovered.rollback.replaced_snapshot_id in world.snapshots.manifests
    _assert_the_end(world, started)


async def _crash_at(
    world: World, point: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> tuple[RunRecord, RunRecord]:
    caplog.set_level(logging.WARNING)
    world.engine.unhealthy_versions.add("1.3.0")
    monkeypatch.setenv("STACKSUP_FAULT_HOLD", f"{point}:60")
    started = await world.manager.start(StartRequest(target_version="1.3.0"))
    await _until(lambda: f"holding {point}" in caplog.text, point)
    await world.manager.shutdown()  # kill -9: the journal stays as it was
    monkeypatch.delenv("STACKSUP_FAULT_HOLD")
    assert world.state.read_current().state is Stage.ROLLBACK  # type: ignore[union-attr]
    recovered = await _restart(world)
    assert recovered.update_id == started.update_id
    assert recovered.result is Stage.ROLLED_BACK, recovered.error
    return started, recovered


def _assert_the_end(world: World, started: RunRecord) -> None:
    _assert_old_version_back(world)
    assert world.state.read_pins()["APP_IMAGE"].endswith(
        world.engine.by_service("app")[0].image[-71:]
    )
    assert [r.update_id for r in world.state.history()] == [started.update_id]


async def test_a_failed_pre_rollback_dump_keeps_the_replaced_database(tmp_path: Path) -> None:
    world = make_world(tmp_path, rollback_copy="false")  # the restore path
    world.engine.unhealthy_versions.add("1.3.0")
    world.snapshots.fail["create:pre-rollback"] = DiskFull("no space left on the backups disk")
    record = await world.update("1.3.0")
    assert record.result is Stage.ROLLED_BACK
    replaced = replaced_database_name(FAKE_DATABASE, record.update_id)
    assert world.snapshots.kept == [replaced]  # the only copy of the new version's data
    assert world.snapshots.dropped_kept == []
    assert record.rollback is not None
    assert record.rollback.pre_rollback == "failed"
    assert any(replaced in w for w in record.warnings)
    # InfluxDB cannot be renamed aside: without the dump it keeps the new points.
    assert world.snapshots.influx_restored == [False]
    assert any("InfluxDB was not restored" in w for w in record.warnings)
    _assert_old_version_back(world)


async def test_an_unverifiable_pre_rollback_dump_also_keeps_it(tmp_path: Path) -> None:
    world = make_world(tmp_path, rollback_copy="false")  # the restore path
    world.engine.unhealthy_versions.add("1.3.0")
    checks = 0
    real_check = world.snapshots.check

    async def check(snapshot_id: str):  # type: ignore[no-untyped-def]
        nonlocal checks
        checks += 1
        manifest = await real_check(snapshot_id)
        if manifest.reason == "pre-rollback":
            raise SnapshotCorrupt("pg_restore --list: not a valid archive")
        return manifest

    world.snapshots.check = check  # type: ignore[method-assign]
    record = await world.update("1.3.0")
    assert record.result is Stage.ROLLED_BACK
    assert world.snapshots.kept == [replaced_database_name(FAKE_DATABASE, record.update_id)]
    assert checks >= 3  # pre-update after backup, pre-rollback, pre-update before restore


async def test_a_bad_snapshot_after_backup_fails_the_run_and_restarts_the_old(stack: World) -> None:
    world = stack
    before = {c.id for c in world.engine.by_service("app")}
    world.snapshots.fail["check"] = SnapshotCorrupt("postgres.dump: sha256 differs")
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert record.error is not None
    assert record.error.stage is Stage.BACKUP
    assert record.error.error_key == "snapshot_corrupt"
    assert {c.id for c in world.engine.by_service("app")} == before
    assert all(c.running for c in world.engine.by_service("app"))
    assert world.snapshots.restored == []
    assert not [c for c in world.engine.calls if c[0] == "one_shot"]  # no migration ran


async def test_an_unusable_snapshot_is_never_restored_and_blocks_until_acknowledged(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, rollback_copy="false")  # the restore path
    world.engine.failing_migrations.add("1.2.0")
    record = await _update_acting_during_migrate(
        world,
        "1.2.0",
        lambda: world.snapshots.fail.update(check=SnapshotCorrupt("postgres.dump: sha256 differs")),
    )

    assert record.result is Stage.NEEDS_INTERVENTION
    assert world.snapshots.restored == []  # garbage is never restored
    assert record.error is not None
    assert "unusable" in record.error.message
    assert f"pre-update snapshot {record.snapshot_id}" in record.kept
    # Nothing was recreated; the old version is not started on a half-migrated database.
    assert not any(c.running for c in world.engine.by_service("app"))
    assert record.blocking

    with pytest.raises(InterventionRequired) as refused:
        await world.manager.start(StartRequest(target_version="1.1.0"))
    assert record.update_id in refused.value.message
    restarted = UpdateManager(world.manager.deps, FakeRegistry(VERSIONS))
    with pytest.raises(InterventionRequired):  # also after a restart
        await restarted.start(StartRequest(target_version="1.1.0"))

    blocked = run_summary(world.manager).blocked  # /admin/version and the badge
    assert blocked is not None
    assert blocked.update_id == record.update_id
    assert badge_of(run_summary(world.manager)).message.endswith("until acknowledged")

    acked = await world.manager.acknowledge(record.update_id, "alice", "restored by hand")
    assert run_summary(world.manager).blocked is None
    assert badge_of(run_summary(world.manager)).message.endswith("(acknowledged)")
    assert acked.acknowledged is not None
    assert acked.acknowledged.by == "alice"
    history = world.state.history()
    assert history[0].acknowledged is not None
    assert history[0].acknowledged.note == "restored by hand"
    assert len(history) == 1  # one run, its last version
    with pytest.raises(NotAcknowledgeable):
        await world.manager.acknowledge(record.update_id, "bob")
    assert world.manager.blocking_run() is None


async def test_only_needs_intervention_can_be_acknowledged(stack: World) -> None:
    world = stack
    record = await world.update("1.1.0")
    with pytest.raises(NotAcknowledgeable):
        await world.manager.acknowledge(record.update_id, "alice")


async def test_a_clean_up_failure_after_completed_is_a_warning_not_a_new_end(stack: World) -> None:
    world = stack
    world.engine.fail["discard_retained"] = EngineError("engine hiccup while removing")
    world.snapshots.fail["apply_retention"] = DiskFull("retention exploded")
    record = await world.update("1.1.0")
    assert record.result is Stage.COMPLETED
    assert record.state is Stage.COMPLETED
    assert any("engine hiccup" in w for w in record.warnings)
    journal = world.state.read_current()
    assert journal is not None
    assert journal.state is Stage.COMPLETED
    events = [e async for e in world.manager.events(record.update_id)]
    assert [e.event for e in events].count("result") == 1
    assert world.state.history()[0].state is Stage.COMPLETED


async def test_the_stage_table_refuses_what_it_does_not_allow(stack: World) -> None:
    world = stack
    record = RunRecord(update_id="0123456789ab")
    layout = StackLayout(["app"], {"app": []}, None, None)
    run = UpdateRun(world.manager.deps, record, layout, EventLog())
    with pytest.raises(StateError):
        await run.enter(Stage.ROLLBACK)  # not before the run started
    await run.enter(Stage.PREFLIGHT)
    with pytest.raises(StateError):
        await run.enter(Stage.ROLLBACK)  # nothing to roll back before stop
    with pytest.raises(StateError):
        await run.enter(Stage.COMPLETED)
    await run.finish(Stage.FAILED)
    for stage in Stage:
        assert not allowed(Stage.FAILED, stage)
    assert allowed(Stage.HEALTHCHECK, Stage.COMPLETED)
    assert allowed(Stage.VERIFY, Stage.STOP)  # rehearse is optional
    assert not allowed(Stage.STOP, Stage.PULL)  # never backwards


def test_every_forward_stage_has_an_action_and_an_undo() -> None:
    for stage in FORWARD:
        assert STEPS[stage].action is not None
        assert STEPS[stage].undo is not None
    assert STEPS[Stage.ROLLBACK].undo is not None
    assert {s for s in Stage if s.finished} == {
        s for s, spec in STEPS.items() if spec.zone == "ended"
    }


async def test_recovery_waits_out_a_stop_left_in_flight(tmp_path: Path) -> None:
    """The observed failure: killed while ``stop`` was stopping the app; the engine's
    stop lands after recovery started the app again. Recovery must converge."""
    world = make_world(tmp_path)
    world.engine.hang.add("stop")
    started = await world.manager.start(StartRequest(target_version="1.1.0"))
    await _until(
        lambda: (
            world.state.read_current().state is Stage.STOP  # type: ignore[union-attr]
            and bool(world.state.read_current().stopped)
        ),  # type: ignore[union-attr]
        "a stop in flight",
    )
    await world.manager.shutdown()
    world.engine.hang.clear()
    # The dead process's stop is still in flight in the engine: it lands later.
    for container in world.engine.containers.values():
        if container.id in (world.state.read_current().stopped):  # type: ignore[union-attr]
            container.stop_pending = container.stop_lands = True
    recovered = await _restart(world)
    assert recovered.update_id == started.update_id
    assert recovered.result is Stage.FAILED, recovered.error
    _assert_old_version_back(world)
    # Recovery settled the stop before starting: it never landed on a started container
    # (without that, the fake lets it land after the start, and a retry hides it).
    landed = [c for c in world.engine.calls if c[0] == "stale_stop_landed"]
    assert landed == []
    assert not any("attempt 2" in line for line in recovered.log_tail)


@pytest.mark.parametrize("operation", ["create", "restore"])
async def test_a_crash_after_the_effect_but_before_its_journal_entry(
    tmp_path: Path, operation: str
) -> None:
    """The two riskiest windows: the pre-rollback dump committed but not yet journaled
    (it must be adopted, not taken again over restored data), and the restore swapped
    but ``restored`` not yet journaled (it must not restore again)."""
    world = make_world(tmp_path, rollback_copy="false")  # the restore path
    world.engine.unhealthy_versions.add("1.3.0")
    original = getattr(world.snapshots, operation)
    effect_done = asyncio.Event()

    async def effect_then_die(*args: object, **kwargs: object) -> object:
        result = await original(*args, **kwargs)
        if operation == "restore" or args[0] == "pre-rollback":
            effect_done.set()
            await asyncio.Event().wait()  # killed here, after the effect
        return result

    setattr(world.snapshots, operation, effect_then_die)
    started = await world.manager.start(StartRequest(target_version="1.3.0"))
    await asyncio.wait_for(effect_done.wait(), 5)
    await world.manager.shutdown()
    setattr(world.snapshots, operation, original)

    recovered = await _restart(world)
    assert recovered.update_id == started.update_id
    assert recovered.result is Stage.ROLLED_BACK, recovered.error
    pre = [c for c in world.snapshots.created if c[0] == "pre-rollback"]
    assert len(pre) == 1, "the pre-rollback dump was taken again"
    assert recovered.pre_rollback_snapshot_id in world.snapshots.manifests
    assert world.snapshots.restored == [recovered.snapshot_id]  # one real restore
    assert world.snapshots.dropped_kept == [
        replaced_database_name(FAKE_DATABASE, started.update_id)
    ]
    _assert_old_version_back(world)


async def _failing_rollback(
    world: World,
    engine: dict[str, SupervisorError] | None = None,
    snapshots: dict[str, SupervisorError] | None = None,
) -> RunRecord:
    """An update to the unhealthy 1.3.0 whose rollback meets these failures: it must end
    ``needs_intervention``."""
    world.engine.unhealthy_versions.add("1.3.0")
    world.engine.fail.update(engine or {})
    world.snapshots.fail.update(snapshots or {})
    record = await world.update("1.3.0")
    assert record.result is Stage.NEEDS_INTERVENTION
    return record


async def test_an_undo_that_fails_ends_needs_intervention(stack: World) -> None:
    world = stack
    gone = EngineError("engine gone mid-rollback")
    await _failing_rollback(world, engine={"ensure_stopped": gone, "restore_retained": gone})
    assert world.state.read_current().state is Stage.NEEDS_INTERVENTION  # type: ignore[union-attr]
    with pytest.raises(InterventionRequired):
        await world.manager.start(StartRequest(target_version="1.1.0"))


async def test_a_run_whose_end_cannot_be_journaled_keeps_refusing_starts(stack: World) -> None:
    """The state disk fails under the undo: nothing on disk says the run ended, so this
    process must not start another over it (a restart's recovery takes it from there)."""
    world = stack
    world.engine.unhealthy_versions.add("1.3.0")
    real_write = world.state.write_current

    def write_current(record: RunRecord) -> None:
        if record.state is not Stage.PREFLIGHT and record.state not in FORWARD:
            raise OSError(28, "No space left on device")
        real_write(record)

    world.state.write_current = write_current  # type: ignore[method-assign]
    started = await world.manager.start(StartRequest(target_version="1.3.0"))
    await world.manager.wait(started.update_id)
    on_disk = world.state.read_current()
    assert on_disk is not None
    assert not on_disk.state.finished
    with pytest.raises(UpdateRunning):
        await world.manager.start(StartRequest(target_version="1.1.0"))
    world.state.write_current = real_write  # type: ignore[method-assign]
    recovered = await _restart(world)
    assert recovered.result is Stage.ROLLED_BACK
    _assert_old_version_back(world)


async def test_a_crash_between_start_and_the_first_stage_ends_failed(stack: World) -> None:
    """Found by a random kill: the journal written by ``start`` has no stage yet."""
    world = stack
    world.manager.deps.state.write_current(RunRecord(update_id="0123456789ab"))
    recovered = await _restart(world)
    assert recovered.result is Stage.FAILED, recovered.error
    assert world.state.read_current().state is Stage.FAILED  # type: ignore[union-attr]
    _assert_old_version_back(world)


# --- the rollback copy ----------------------------------------------------------------------


async def test_a_completed_run_drops_its_rollback_copy(stack: World) -> None:
    record = await stack.update("1.1.0")
    assert record.result is Stage.COMPLETED, record.error
    assert stack.snapshots.dropped_copies == [f"{FAKE_DATABASE}__copy_{record.update_id}"]
    assert stack.snapshots.copies == set()
    assert record.rollback_copy == "none"


async def test_without_a_rollback_copy_the_rollback_restores_the_snapshot(stack: World) -> None:
    world = stack
    world.engine.unhealthy_versions.add("1.3.0")
    world.snapshots.fail["copy_database"] = InsufficientDiskSpace("no room on the volume")
    record = await world.update("1.3.0")
    assert record.result is Stage.ROLLED_BACK, record.error
    assert any("no rollback copy (no room on the volume)" in w for w in record.warnings)
    assert record.rollback is not None
    assert not record.rollback.via_copy
    assert world.snapshots.restored == [record.snapshot_id]
    assert world.snapshots.postgres_restored == [True]
    _assert_old_version_back(world)


async def test_the_setting_off_makes_no_copy(tmp_path: Path) -> None:
    world = make_world(tmp_path, rollback_copy="false")
    record = await world.update("1.1.0")
    assert record.result is Stage.COMPLETED
    assert record.rollback_copy == "none"
    assert world.snapshots.dropped_copies == []
    assert world.snapshots.copies == set()


async def test_a_failed_backup_drops_the_copy_it_made(stack: World) -> None:
    world = stack
    world.snapshots.fail["create:pre-update"] = DiskFull("no space left on the backups disk")
    record = await world.update("1.1.0")
    assert record.result is Stage.FAILED
    assert world.snapshots.copies == set()
    assert world.snapshots.dropped_copies == [f"{FAKE_DATABASE}__copy_{record.update_id}"]


async def test_needs_intervention_keeps_and_lists_the_copy(stack: World) -> None:
    world = stack
    record = await _failing_rollback(
        world, snapshots={"swap_in_copy": SnapshotCorrupt("the server refused the rename")}
    )
    copy = f"{FAKE_DATABASE}__copy_{record.update_id}"
    assert world.snapshots.copies == {copy}
    assert any(copy in line for line in record.kept), record.kept


async def test_needs_intervention_lists_a_copy_its_journal_never_called_ready(
    stack: World,
) -> None:
    """The copy's call failed after the server made it (journal: ``making``); the rollback
    then restores the dump, which fails: the copy exists and is listed (checked, not
    assumed from the journal), and nothing is listed that does not exist."""
    world = stack
    record = await _failing_rollback(
        world,
        snapshots={
            "copy_database:after": BackupFailed("statement timeout"),
            "restore": SnapshotCorrupt("postgres.dump: checksum mismatch"),
        },
    )
    assert record.rollback_copy == "making"
    copy = f"{FAKE_DATABASE}__copy_{record.update_id}"
    assert world.snapshots.copies == {copy}
    assert any(copy in line for line in record.kept), record.kept
    kept_name = replaced_database_name(FAKE_DATABASE, record.update_id)
    assert not any(kept_name in line for line in record.kept), record.kept  # never made


async def test_kept_databases_fall_back_to_the_journal_when_they_cannot_be_listed(
    stack: World,
) -> None:
    world = stack
    record = await _failing_rollback(
        world,
        snapshots={
            "swap_in_copy": SnapshotCorrupt("the server refused the rename"),
            "run_databases": SnapshotError("the database server is gone"),
        },
    )
    copy = f"{FAKE_DATABASE}__copy_{record.update_id}"
    assert [line for line in record.kept if copy in line] == [
        f"database {copy} (a copy of the database before the update) "
        "(not checked: the databases could not be listed)"
    ]


async def test_a_restore_whose_kept_database_cannot_be_checked_goes_on(tmp_path: Path) -> None:
    """The restore happened; asking which database it kept fails: the rollback assumes
    the name it asked for (dropping a missing name later is a no-op) and completes."""
    world = make_world(tmp_path, rollback_copy="false")
    world.engine.unhealthy_versions.add("1.3.0")
    world.snapshots.fail["run_databases"] = SnapshotError("a transient exec error")
    record = await world.update("1.3.0")
    assert record.result is Stage.ROLLED_BACK, record.error
    replaced = replaced_database_name(FAKE_DATABASE, record.update_id)
    assert record.rollback is not None
    assert record.rollback.replaced_database == replaced
    assert world.snapshots.dropped_kept == [replaced]
    _assert_old_version_back(world)


async def test_a_copy_swapped_in_for_a_dropped_database_keeps_nothing(stack: World) -> None:
    """Someone dropped the live database while the failed version ran: the copy takes its
    place, no replaced database is recorded, dumped or reported as kept."""
    world = stack
    world.engine.unhealthy_versions.add("1.3.0")
    record = await _update_acting_during_migrate(
        world, "1.3.0", lambda: setattr(world.snapshots, "live_missing", True)
    )
    assert record.result is Stage.ROLLED_BACK, record.error
    assert record.rollback is not None
    assert record.rollback.via_copy
    assert record.rollback.replaced_database is None
    assert record.rollback.replaced_snapshot_id is None
    assert world.snapshots.kept == []
    assert not [parts for parts in world.snapshots.create_parts if parts[2] is not None]
    assert not [w for w in record.warnings if "__old_" in w], record.warnings
    _assert_old_version_back(world)


# --- the pre-update dump taken from the copy, with the app running ---------------------------


async def test_the_database_is_dumped_from_the_copy_after_the_outage(stack: World) -> None:
    world = stack
    record = await world.update("1.1.0")
    assert record.result is Stage.COMPLETED, record.error
    copy = f"{FAKE_DATABASE}__copy_{record.update_id}"
    pre_update = [p for (reason, _), p in zip(world.snapshots.created, world.snapshots.create_parts, strict=True)
                  if reason == "pre-update"]  # fmt: skip
    assert pre_update == [(False, True, None)]  # InfluxDB and config while stopped
    assert world.snapshots.added_postgres == [(record.snapshot_id, copy)]
    assert record.snapshot_postgres == "added"
    assert record.snapshot_id is not None
    manifest = world.snapshots.manifests[record.snapshot_id]
    assert manifest.postgres is not None
    assert manifest.influxdb is not None
    assert world.snapshots.checked.count(record.snapshot_id) == 2  # before and after
    assert world.snapshots.copies == set()  # dropped after completion


async def test_a_rollback_ends_the_dump_of_the_copy_and_swaps_it_in(stack: World) -> None:
    world = stack
    world.engine.unhealthy_versions.add("1.3.0")
    world.snapshots.gates["add_postgres"] = asyncio.Event()  # the dump is still running
    record = await world.update("1.3.0")
    assert record.result is Stage.ROLLED_BACK, record.error
    assert record.snapshot_postgres == "cancelled"
    assert record.rollback is not None
    assert record.rollback.via_copy
    assert world.snapshots.postgres_restored == [False]
    assert world.snapshots.added_postgres == []
    _assert_old_version_back(world)


async def test_a_failed_dump_of_the_copy_rolls_back_by_the_copy(stack: World) -> None:
    """No run completes without its verified pre-update snapshot: a dump of the copy that
    fails (here a full backups disk) fails the health stage, and the copy is swapped in."""
    world = stack
    world.snapshots.fail["add_postgres"] = DiskFull("no space left on the backups disk")
    record = await world.update("1.1.0")
    assert record.result is Stage.ROLLED_BACK
    assert record.error is not None
    assert record.error.error_key == "disk_full"
    assert record.error.stage is Stage.HEALTHCHECK
    assert "pre-update dump of the database" in record.error.message
    assert record.snapshot_postgres == "failed"
    assert record.rollback is not None
    assert record.rollback.via_copy
    assert world.snapshots.postgres_restored == [False]
    assert world.snapshots.copies == set()
    _assert_old_version_back(world)


async def test_without_copy_or_dump_the_rollback_does_not_restore_half(stack: World) -> None:
    world = stack
    world.engine.unhealthy_versions.add("1.3.0")
    world.snapshots.gates["add_postgres"] = asyncio.Event()
    # Someone drops the copy by hand.
    record = await _update_acting_during_migrate(world, "1.3.0", world.snapshots.copies.clear)
    assert record.result is Stage.NEEDS_INTERVENTION
    assert record.error is not None
    assert "has no PostgreSQL dump" in record.error.message
    assert world.snapshots.restored == []  # neither InfluxDB alone nor anything else
