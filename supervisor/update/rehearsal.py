"""Migration rehearsal: the target's migrations on a copy of the data, out of reach of the live one.

::

    fresh dump ──▶ sandbox server (the live server's image, env, command; empty data)
                   on <project>_rehearsal_<run>, an internal network nothing else joins,
                   answering to the live server's host names (``postgres`` …)
                     ▲
                     └── migrations one-shot (target image), on that network only

Before the old version is stopped, start the sandbox
(:mod:`supervisor.engine.sandbox`; its server initialises while the fresh
dump is taken), restore the dump into it and run the target's migrations
container there. Whatever the migrations read to find
their database (``POSTGRES_DB``, ``DATABASE_URL``, a config file), the only
PostgreSQL they can resolve and route to is the copy: the live database is out
of reach by construction, not by a convention the image has to follow. A
migration that fails here fails the run with the old version never
interrupted (the t3 lesson: test the migration against real data first).

The sandbox is always removed, also on failure and cancellation; it is found
by its run-id labels, so :func:`remove_rehearsal_leftovers` also cleans up
after a crash. A cancel request stops the rehearsal at once (it does not wait
for the migrations to finish).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from supervisor.engine.models import OneShotResult
from supervisor.exceptions import MigrationFailed, SupervisorError
from supervisor.snapshots.const import SnapshotReason

if TYPE_CHECKING:
    from supervisor.update.run import UpdateRun

T = TypeVar("T")
CANCEL_POLL_SECONDS = 0.5
LOG_LINES = 20  # of the migrations' output, into the run's log: enough for a traceback


async def rehearse_migrations(run: UpdateRun) -> None:
    template, postgres = run.layout.migrations_container, run.layout.postgres_container
    if template is None or postgres is None:
        run.log("no migrations service or no postgres: nothing to rehearse")
        return
    if run.settings.rehearsal_database_env:
        run.log(
            "SUPERVISOR_REHEARSAL_DATABASE_ENV is ignored: the migrations run unchanged on an "
            "isolated copy of the database server"
        )
    try:
        result = await _unless_cancelled(run, _in_sandbox(run, template, postgres))
    finally:
        await asyncio.shield(_remove_quietly(run))
    for line in result.logs.strip().splitlines()[-LOG_LINES:]:
        run.log(f"rehearsal: {line}")
    if result.exit_code != 0:
        raise MigrationFailed(
            f"the target's migrations failed on a copy of the data (exit code "
            f"{result.exit_code}); the running version was not touched",
            exit_code=result.exit_code,
        )
    run.log("migrations succeeded on the copy")


async def remove_rehearsal_leftovers(run: UpdateRun) -> None:
    """Remove the run's sandbox (containers, their volumes, the network); idempotent.

    Found by labels, not by anything journaled: safe to call from the failure handler
    and from start-up recovery after a crash at any point of the rehearsal.
    """
    removed = await run.deps.engine.remove_sandboxes(
        run.settings.compose_project, run.record.update_id
    )
    for name in removed:
        run.log(f"removed rehearsal sandbox {name}")


async def _in_sandbox(run: UpdateRun, template: str, postgres: str) -> OneShotResult:
    engine, record = run.deps.engine, run.record
    update_id = record.update_id
    # Started before the dump is taken: the new server initialises meanwhile.
    sandbox = await engine.create_sandbox(postgres, run.settings.compose_project, update_id)
    run.log(
        f"rehearsal server {sandbox.server_name} started on the isolated network "
        f"{sandbox.network_name} as {', '.join(sandbox.aliases)}"
    )
    images = {t.service: t.current_digest or "" for t in record.services.values()}
    snapshot = await run.deps.snapshots.create(
        SnapshotReason.REHEARSAL, update_id, images, run.snapshot_progress
    )
    run.log(f"fresh dump {snapshot.id} taken for the rehearsal")
    await run.deps.snapshots.restore_postgres_into_sandbox(snapshot.id, sandbox.server_id)
    run.log("dump restored into the rehearsal server; running the target's migrations on it")
    return await engine.run_one_shot_in_sandbox(
        sandbox,
        template,
        run.migrations_image(),
        f"{update_id}-rehearsal",
        run.settings.migration_timeout,
    )


async def _unless_cancelled(run: UpdateRun, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, abandoning it as soon as cancel is requested (RunCancelled)."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=CANCEL_POLL_SECONDS)
            if not task.done() and run.record.cancel_requested:
                run.log("cancel requested: stopping the rehearsal")
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                run.checkpoint()
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _remove_quietly(run: UpdateRun) -> None:
    try:
        await remove_rehearsal_leftovers(run)
    except SupervisorError as err:
        warning = f"rehearsal sandbox not removed (recovery retries): {err.message}"
        run.log(warning)
        run.record.warnings = [*run.record.warnings, warning]
