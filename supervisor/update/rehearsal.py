"""Migration rehearsal: run the target's migrations on a copy of today's data.

Before the old version is stopped, take a fresh dump, restore it into a scratch
database and point the target's migrations container at it. A migration that
fails here fails the run with the old version never interrupted (the t3
lesson: test the migration against real data before trusting it). The scratch
database is always dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.exceptions import SupervisorError
from supervisor.snapshots.const import SnapshotReason

if TYPE_CHECKING:
    from supervisor.update.run import UpdateRun


async def rehearse_migrations(run: UpdateRun) -> None:
    from supervisor.update.run import MigrationFailed

    template = run.layout.migrations_container
    if template is None or run.layout.postgres_container is None:
        run.log("no migrations service or no postgres: nothing to rehearse")
        return
    deps, record = run.deps, run.record
    scratch = f"rehearsal_{record.update_id}"
    images = {t.service: t.current_digest or "" for t in record.services.values()}
    snapshot = await deps.snapshots.create(
        SnapshotReason.REHEARSAL, record.update_id, images, run.snapshot_progress
    )
    run.log(f"fresh dump {snapshot.id} taken; restoring it into scratch database {scratch}")
    try:
        await deps.snapshots.restore_postgres_into(snapshot.id, scratch)
        result = await deps.engine.run_one_shot(
            template,
            run.migrations_image(),
            f"{record.update_id}-rehearsal",
            run.settings.migration_timeout,
            env={run.settings.rehearsal_database_env: scratch},
        )
        for line in result.logs.strip().splitlines()[-10:]:
            run.log(f"rehearsal: {line}")
        if result.exit_code != 0:
            raise MigrationFailed(
                f"the target's migrations failed on a copy of the data (exit code "
                f"{result.exit_code}); the running version was not touched",
                exit_code=result.exit_code,
            )
        run.log("migrations succeeded on the copy")
    finally:
        try:
            await deps.snapshots.drop_database(scratch)
        except SupervisorError as err:
            run.log(f"could not drop scratch database {scratch}: {err.message}")
