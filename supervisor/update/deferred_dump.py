"""The pre-update PostgreSQL dump taken from the rollback copy while the new version runs.

::

    app stopped:  copy (~1 s/GB) → snapshot of InfluxDB + config, checked → migrate → recreate
    app running:                    └── background: pg_dump of the copy → added to the snapshot
                                                    → checked ──┐
    end of healthcheck: wait for it ─────────────────────────────┘ → completed

Why: the dump is the longest part of the outage (18 s of 25 s at 1 GB), and with a
rollback copy it no longer has to happen while the app is down. The copy holds
exactly the data of the moment the app stopped, nothing writes to it, so dumping
it later gives the same snapshot. A run completes only once the snapshot holds
the dump and verifies: a run never completes without its verified pre-update
snapshot. If the dump fails (a full backups disk, a refusal), the health stage
fails with that error and the run rolls back, by the copy, which is quick.

A rollback first ends the dump (it holds a session on the copy, which must be
renamed); the snapshot then lacks PostgreSQL, which the swap makes unnecessary. A
rollback that would have to *restore* such a snapshot (the copy gone) refuses
and ends ``needs_intervention`` rather than restore InfluxDB alone.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from supervisor.exceptions import BackupFailed, SnapshotError

if TYPE_CHECKING:
    from supervisor.update.run import UpdateRun


def deferred(run: UpdateRun) -> bool:
    """Whether this run's pre-update snapshot leaves PostgreSQL to the copy's dump."""
    return run.record.rollback_copy == "ready" and run.record.snapshot_postgres == "included"


def start(run: UpdateRun) -> None:
    """The dump, as a task that ends with the run's own task (a shutdown leaves the run
    to recovery: its dump must not go on writing beside the next process)."""
    task = asyncio.ensure_future(_dump_copy(run))
    run.pre_update_dump = task
    task.add_done_callback(_retrieve)
    owner = asyncio.current_task()
    if owner is not None:
        owner.add_done_callback(lambda _: task.cancel())


def _retrieve(task: asyncio.Future[None]) -> None:
    """Its error is read by :func:`finish`; when no one awaits it (the run ended another
    way first), reading it here keeps asyncio from logging it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def _dump_copy(run: UpdateRun) -> None:
    record, snapshots = run.record, run.deps.snapshots
    assert record.snapshot_id is not None
    assert record.rollback_copy_name is not None
    await asyncio.wait_for(
        snapshots.add_postgres(record.snapshot_id, record.rollback_copy_name),
        run.settings.backup_timeout,
    )
    await snapshots.check(record.snapshot_id)


async def finish(run: UpdateRun) -> None:
    """Wait for the dump of the copy (the new version is healthy by now); journal how it
    ended. A failure is raised: the run then rolls back (by the copy), as it would have
    failed in ``backup`` had the dump been taken there."""
    record = run.record
    if record.snapshot_postgres != "pending":
        return
    task = run.pre_update_dump
    assert task is not None, "backup starts it in the same process (recovery rolls back)"
    if not task.done():
        run.log("waiting for the pre-update dump of the database (from the rollback copy)")
    try:
        await task
    except (SnapshotError, TimeoutError) as err:
        record.snapshot_postgres = "failed"
        await run.save()
        if isinstance(err, TimeoutError):
            raise BackupFailed(
                f"the pre-update dump of the database (from the rollback copy) was not done "
                f"in {run.settings.backup_timeout:g} s; rolling back"
            ) from err
        raise type(err)(
            f"the pre-update dump of the database (from the rollback copy) failed: "
            f"{err.message}; rolling back",
            **err.details,
        ) from err
    record.snapshot_postgres = "added"
    await run.save()
    run.log(f"snapshot {record.snapshot_id} complete: the database dumped from the copy, verified")


async def cancel(run: UpdateRun) -> None:
    """Before a rollback touches the copy: end its dump (in this process; after a crash
    the swap ends the orphaned sessions on the copy itself)."""
    task = run.pre_update_dump
    if task is not None and not task.done():
        task.cancel()
        run.log("stopped the pre-update dump of the rollback copy: the rollback uses the copy")
    if task is not None:
        # Waits without raising the task's own end, and stays cancellable itself.
        await asyncio.wait({task})
    if run.record.snapshot_postgres == "pending":
        run.record.snapshot_postgres = "cancelled"
        await run.save()
