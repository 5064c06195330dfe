"""The end of a successful run, written so that a crash at any point finishes it.

Order matters: the pin file and the last-good record first; then the journal
says ``completed``, history and the single ``result`` event follow; then the
clean-up (old containers, snapshot retention), whose failures are warnings on
the finished record, never a second result. Recovery calls
:func:`finish_completion` for a completed run again, and every step of it is
idempotent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from supervisor.update.models import LastGood, RunRecord
from supervisor.update.stages import Stage

if TYPE_CHECKING:
    from supervisor.update.run import RunDeps, UpdateRun


async def complete_run(run: UpdateRun) -> None:
    record = run.record
    await write_pins(run.deps, record, target=True)
    await run.finish(Stage.COMPLETED)
    await clean_up(run.deps, record)
    await run.save()


async def finish_completion(run: UpdateRun) -> None:
    """Recovery of a run whose journal says ``completed``: every step again, idempotently."""
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


async def write_pins(deps: RunDeps, record: RunRecord, target: bool) -> None:
    """Pin file and last-good: the target release on success, the previous on rollback."""
    images = {
        t.service: (t.target_digest if target else t.current_digest)
        for t in record.services.values()
    }
    pinned = {service: image for service, image in images.items() if image}
    version = record.target_version if target else record.from_version
    if len(pinned) == len(images):
        await asyncio.to_thread(deps.state.write_pins, pinned)
    else:
        missing = sorted(set(images) - set(pinned))
        record.warnings = [
            *record.warnings,
            f"pin file not written: no digest known for {', '.join(missing)}",
        ]
    last_good = LastGood(
        version=version,
        images=pinned,
        snapshot_id=record.snapshot_id,
        update_id=record.update_id,
    )
    await asyncio.to_thread(deps.state.write_last_good, last_good)


async def drop_rollback_copy(deps: RunDeps, record: RunRecord) -> str | None:
    """Drop the run's rollback copy, if it made one (idempotent: after a swap it no longer
    exists under its name); the warning to record if that failed: it is only a copy."""
    if record.rollback_copy == "none":
        return None
    try:
        await deps.snapshots.drop_copy(record.update_id)
    except Exception as err:
        name = record.rollback_copy_name or record.update_id
        return f"the rollback copy {name} was not dropped ({err}); drop it by hand"
    record.rollback_copy = "none"
    return None


async def clean_up(deps: RunDeps, record: RunRecord) -> None:
    """After ``completed``: any problem here is a warning on the record, never a new end."""
    from supervisor.update.actions import from_record

    for retained in record.retained:
        try:
            await deps.engine.discard_retained(from_record(retained))
        except Exception as err:
            record.warnings = [*record.warnings, f"old container {retained.old_name}: {err}"]
    if warning := await drop_rollback_copy(deps, record):
        record.warnings = [*record.warnings, warning]
    protected = {record.snapshot_id} if record.snapshot_id else set()
    last_good = await asyncio.to_thread(deps.state.read_last_good)
    if last_good is not None and last_good.snapshot_id:
        protected.add(last_good.snapshot_id)
    try:
        await deps.snapshots.apply_retention(protected)
    except Exception as err:
        record.warnings = [*record.warnings, f"snapshot retention: {err}"]
