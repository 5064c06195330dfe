"""Start-up recovery: finish whatever a killed sidecar left half done.

The journal says which stage the run was in when the process died, and the
stage table (:data:`supervisor.update.steps.STEPS`) says what that stage's
undo is: the same undo a failure in that stage runs in a live process.

* before ``stop`` (nothing was changed): remove the run's leftovers, ``failed``;
* in ``stop`` or ``backup`` (services down, data unchanged): start what was
  stopped, waiting out a stop the dead process left in flight, ``failed``;
* from ``migrate`` on: roll back images and data;
* in ``rollback``: resume the rollback from its journal, step by step;
* ``completed`` but not yet archived: finish the completion.

Every step checks before it acts, so a crash *during* recovery is recovered
by the next start in the same way. The state of the record is only changed
through :meth:`UpdateRun.enter`, which journals it.
"""

from __future__ import annotations

import asyncio
import logging

from supervisor.const import next_name
from supervisor.update.completion import finish_completion
from supervisor.update.events import EventLog
from supervisor.update.models import RetainedRecord, RunError, RunRecord
from supervisor.update.run import RunDeps, StackLayout, UpdateRun
from supervisor.update.stages import Stage
from supervisor.update.steps import last_forward_stage

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
    run.recovering = True
    if record.result is Stage.COMPLETED or record.state is Stage.COMPLETED:
        await finish_completion(run)
        return record
    if record.state.finished:
        await asyncio.to_thread(deps.state.append_history, record)
        return None
    stage = record.state
    run.log(f"recovering run {record.update_id}: the supervisor stopped during {stage}")
    if record.error is None:
        record.error = RunError(
            error_key="interrupted",
            message=f"the supervisor was stopped during {stage}",
            stage=last_forward_stage([t.stage for t in record.stages], stage),
        )
    if stage is Stage.RECREATE or stage is Stage.HEALTHCHECK or stage is Stage.ROLLBACK:
        await _reconcile_retained(run)
    await run.undo(stage)
    return record


async def _reconcile_retained(run: UpdateRun) -> None:
    """Fill in new container ids the journal did not get to record before the crash: the
    container holding the service's name (stop-first) or started next to it (start-first)."""
    record = run.record
    created = await run.deps.engine.run_containers(run.settings.compose_project, record.update_id)
    by_name = {c.name: c.id for c in created if c.labels.get("com.docker.compose.oneoff") != "True"}
    fixed: list[RetainedRecord] = []
    for retained in record.retained:
        found = by_name.get(retained.name) or by_name.get(
            next_name(retained.name, record.update_id)
        )
        if not retained.new_id and found:
            retained = retained.model_copy(update={"new_id": found})
        fixed.append(retained)
    record.retained = fixed
    await run.save()
    _LOGGER.info("reconciled %d retained containers of %s", len(fixed), record.update_id)
