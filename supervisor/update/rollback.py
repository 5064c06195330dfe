"""Putting the previous version back, images *and* data.

After a failure from ``migrate`` on, the database may hold writes of the new
version and the schema may be half-migrated. Rollback:

1. stops the new containers, so nothing writes while data is handled;
2. takes a ``pre-rollback`` dump of the failed database (so what was written
   during the health window is not lost forever);
3. restores the database from the run's ``pre-update`` snapshot;
4. puts the retained old containers back (rename + start, no pull) and starts
   the services that were only stopped, in dependency order;
5. health-checks them and pins the previous digests again.

Any failure on the way ends in ``needs_intervention`` with a message saying
what is where; nothing is deleted.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from supervisor.exceptions import EngineNotFound, SupervisorError
from supervisor.snapshots.const import SnapshotReason
from supervisor.update.completion import write_pins
from supervisor.update.stages import Stage

if TYPE_CHECKING:
    from supervisor.update.run import UpdateRun


async def restart_stopped(run: UpdateRun) -> None:
    """A failure in ``stop`` or ``backup``: start what was stopped; nothing else changed."""
    try:
        await _start_old(run)
        await _wait_old_healthy(run)
    except Exception as err:
        await needs_intervention(run, f"could not restart the stopped services: {err}")
        return
    await run.finish(Stage.FAILED)


async def roll_back(run: UpdateRun) -> None:
    from supervisor.update.run import from_record

    record, deps = run.record, run.deps
    data_touched = run.reached(Stage.MIGRATE) or run.reached(Stage.RECREATE)
    await run.enter(Stage.ROLLBACK)
    try:
        for retained in reversed(record.retained):
            with contextlib.suppress(EngineNotFound):
                await deps.engine.stop(retained.new_id, run.settings.stop_timeout)
        if data_touched and record.snapshot_id:
            await _pre_rollback_dump(run)
            run.log(f"restoring the database from snapshot {record.snapshot_id}")
            await deps.snapshots.restore(record.snapshot_id, run.snapshot_progress)
        for retained in record.retained:
            await deps.engine.restore_retained(from_record(retained), start=False)
            run.log(f"put back the old {retained.service} container ({retained.old_id[:12]})")
        await _start_old(run)
        await _wait_old_healthy(run)
        await write_pins(deps, record, target=False)
    except Exception as err:
        await needs_intervention(run, f"rollback failed: {err}")
        return
    await run.finish(Stage.ROLLED_BACK)


async def _pre_rollback_dump(run: UpdateRun) -> None:
    record = run.record
    images = {t.service: t.target_digest or "" for t in record.services.values()}
    try:
        snapshot = await run.deps.snapshots.create(
            SnapshotReason.PRE_ROLLBACK, record.update_id, images, run.snapshot_progress
        )
    except SupervisorError as err:
        record.warnings = [*record.warnings, f"pre-rollback dump failed: {err.message}"]
        run.log(f"pre-rollback dump failed ({err.message}); restoring anyway")
        return
    record.pre_rollback_snapshot_id = snapshot.id
    await run.save()
    run.log(f"pre-rollback dump {snapshot.id} keeps what the new version wrote")


async def _start_old(run: UpdateRun) -> None:
    for service in run.layout.app_order:
        for container_id in run.layout.containers.get(service, []):
            current = await run.deps.engine.container(container_id)
            if not current.running:
                await run.deps.engine.start(container_id)
                run.log(f"started {service} ({container_id[:12]})")


async def _wait_old_healthy(run: UpdateRun) -> None:
    ids = [cid for s in run.layout.app_order for cid in run.layout.containers.get(s, [])]
    window = min(run.settings.stability_window, 5.0)
    from supervisor.update.run import gather_first_error

    await gather_first_error(
        run.deps.engine.wait_healthy(container_id, run.settings.health_timeout, window)
        for container_id in ids
    )
    run.log("previous version healthy")


async def needs_intervention(run: UpdateRun, what: str) -> None:
    record = run.record
    artifacts = [f"snapshot {record.snapshot_id}"] if record.snapshot_id else []
    if record.pre_rollback_snapshot_id:
        artifacts.append(f"pre-rollback dump {record.pre_rollback_snapshot_id}")
    artifacts += [f"old container {r.old_name} ({r.old_id[:12]})" for r in record.retained]
    message = f"{what}. Kept for the operator: {', '.join(artifacts) or 'nothing to keep'}."
    if record.error is not None:
        message += f" Original failure in {record.error.stage}: {record.error.message}"
    from supervisor.update.models import RunError

    record.error = RunError(error_key="needs_intervention", message=message, stage=record.state)
    run.log(message)
    await run.finish(Stage.NEEDS_INTERVENTION)
