"""Start-up recovery: finish whatever a killed sidecar left half done.

The journal says which stage the run was in when the process died:

* before ``stop`` (nothing was changed): drop a rehearsal's scratch database
  and leftover one-shot containers, mark the run ``failed``;
* in ``stop`` or ``backup`` (services down, data unchanged): start what was
  stopped, mark ``failed``;
* from ``migrate`` on (images or data may have changed): roll back to the
  previous version and the pre-update snapshot, exactly like a failed run;
* ``completed`` but not yet archived: finish the completion (pins, history,
  clean-up).

Every step checks before it acts, so a crash *during* recovery is recovered
by the next start in the same way.
"""

from __future__ import annotations

import asyncio
import logging

from supervisor.const import RETAINED_SUFFIX
from supervisor.exceptions import SupervisorError
from supervisor.update.completion import clean_up, write_pins
from supervisor.update.events import EventLog
from supervisor.update.models import RetainedRecord, RunError, RunRecord
from supervisor.update.rollback import restart_stopped, roll_back
from supervisor.update.run import RunDeps, StackLayout, UpdateRun
from supervisor.update.stages import Stage

_LOGGER = logging.getLogger(__name__)


def layout_from_record(record: RunRecord, app_order: list[str]) -> StackLayout:
    return StackLayout(
        app_order=[s for s in app_order if s in record.services],
        containers={s: list(t.container_ids) for s, t in record.services.items() if s in app_order},
        migrations_container=None,
        postgres_container=None,
    )


async def recover(deps: RunDeps, app_order: list[str], events: EventLog) -> RunRecord | None:
    """Bring an interrupted run to an end state; None when there was nothing to do."""
    record = await asyncio.to_thread(deps.state.read_current)
    if record is None:
        return None
    run = UpdateRun(deps, record, layout_from_record(record, app_order), events)
    if record.result is Stage.COMPLETED or record.state is Stage.COMPLETED:
        await _finish_completion(run)
        return record
    if record.state.finished:
        await asyncio.to_thread(deps.state.append_history, record)
        return None
    stage = record.state
    run.log(f"recovering run {record.update_id}: the supervisor stopped during {stage}")
    record.error = RunError(
        error_key="interrupted",
        message=f"the supervisor was stopped during {stage}",
        stage=stage,
    )
    await _remove_one_shots(run)
    if not stage.touches_stack:
        if stage is Stage.REHEARSE:
            await _drop_scratch(run)
        await run.finish(Stage.FAILED)
    elif stage in (Stage.STOP, Stage.BACKUP):
        await restart_stopped(run)
    else:
        await _reconcile_retained(run)
        record.state = _last_forward_stage(record)
        await roll_back(run)
    return record


def _last_forward_stage(record: RunRecord) -> Stage:
    """The stage a rollback should account for (not ``rollback`` itself)."""
    for timing in reversed(record.stages):
        if timing.stage is not Stage.ROLLBACK:
            return timing.stage
    return record.state


async def _finish_completion(run: UpdateRun) -> None:
    record, deps = run.record, run.deps
    last_good = await asyncio.to_thread(deps.state.read_last_good)
    if last_good is None or last_good.update_id != record.update_id:
        await write_pins(deps, record, target=True)
    if record.state is not Stage.COMPLETED:
        await run.finish(Stage.COMPLETED)
    else:
        await asyncio.to_thread(deps.state.append_history, record)
    await clean_up(deps, record)
    await run.save()


async def _remove_one_shots(run: UpdateRun) -> None:
    """A migrations container of the dead run must not keep writing during rollback."""
    project = run.settings.compose_project
    run_id = run.record.update_id
    for label in (run_id, f"{run_id}-rehearsal"):
        for container in await run.deps.engine.run_containers(project, label):
            if container.labels.get("com.docker.compose.oneoff") == "True":
                await run.deps.engine.remove_container(container.id)
                run.log(f"removed one-shot container {container.name} of the interrupted run")


async def _drop_scratch(run: UpdateRun) -> None:
    try:
        await run.deps.snapshots.drop_database(f"rehearsal_{run.record.update_id}")
    except SupervisorError as err:
        run.log(f"scratch database not dropped: {err.message}")


async def _reconcile_retained(run: UpdateRun) -> None:
    """Fill in new container ids the journal did not get to record before the crash."""
    record = run.record
    created = await run.deps.engine.run_containers(run.settings.compose_project, record.update_id)
    by_name = {c.name: c.id for c in created if c.labels.get("com.docker.compose.oneoff") != "True"}
    fixed: list[RetainedRecord] = []
    for retained in record.retained:
        if not retained.new_id and retained.name in by_name:
            retained = retained.model_copy(update={"new_id": by_name[retained.name]})
        fixed.append(retained)
    record.retained = fixed
    await run.save()
    _LOGGER.info(
        "reconciled %d retained containers (suffix %s%s)",
        len(fixed),
        RETAINED_SUFFIX,
        record.update_id,
    )
