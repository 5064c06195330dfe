"""The undo of each zone: abandon, restart what was stopped, or put the previous version back.

Rollback (from ``migrate`` on) returns the previous images *and* data, and is
resumable: every step is journaled in ``record.rollback`` before it acts,
so a crash inside it resumes where it stopped instead of starting over:

1. stop the new containers (nothing writes while data is handled);
2. take a ``pre-rollback`` dump of the failed database, once: after a crash
   a committed dump of this run is adopted, never taken again (after the
   restore it would hold the *old* data);
3. prove the run's ``pre-update`` snapshot usable; an unusable one is never
   restored: the run ends ``needs_intervention`` with everything kept;
4. restore it; the replaced database (the new version's data) is renamed
   aside, and dropped only once the pre-rollback dump exists and verifies,
   otherwise kept and listed for the operator;
5. put the retained old containers back (rename + start, no pull; recreated
   from their recorded spec if someone removed them);
6. start the previous version and wait until healthy, retrying with backoff
   (a stop still in flight from a killed run is waited out first);
7. pin the previous digests again.

With a rollback copy (made in ``backup`` while the app was stopped, see
:mod:`supervisor.snapshots.postgres_copy`), steps 2-4 are instead: a
pre-rollback backup of InfluxDB only; the copy renamed into the database's
place in one transaction, the replaced database kept aside (no restore:
milliseconds instead of seconds per GB); InfluxDB restored from the snapshot.
Once the previous version is healthy, the replaced database is dumped (reason
``pre-rollback``, ``rollback.replaced_snapshot_id``) and dropped when that dump
verifies. A copy that has gone missing falls back to the restore.

Any failure on the way ends in ``needs_intervention`` with a message saying
what is where; nothing is deleted, and starts are blocked until an admin
acknowledges it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from supervisor.exceptions import (
    EngineError,
    EngineNotFound,
    RollbackUnsafe,
    SnapshotCorrupt,
    SnapshotError,
    SupervisorError,
)
from supervisor.snapshots.const import SnapshotReason
from supervisor.snapshots.pg_commands import kept_database_name
from supervisor.snapshots.protocol import RunDatabases
from supervisor.update import completion, deferred_dump
from supervisor.update.completion import write_pins
from supervisor.update.faults import fault_point
from supervisor.update.models import RollbackJournal, RunError, RunRecord
from supervisor.update.stages import Stage

if TYPE_CHECKING:
    from supervisor.update.run import UpdateRun


_LOGGER = logging.getLogger(__name__)

# How often the previous version is started and health-checked before the
# rollback gives up: a kill -9 can leave a stop request in flight in the
# engine that stops the container again right after it was started.
START_ATTEMPTS = 4


def replaced_database_name(database: str, update_id: str) -> str:
    """Where the restore renames the database it replaces (the new version's data):
    ``<db>__old_<run id>``, the only form the snapshot adapter will later drop."""
    return kept_database_name(database, update_id)


# --- untouched: nothing changed --------------------------------------------------------


async def abandon(run: UpdateRun) -> None:
    """Before ``stop``: remove what the run left (one-shots, scratch copies), end ``failed``."""
    await remove_one_shots(run)
    if run.reached(Stage.REHEARSE):
        await drop_scratch(run)
    await run.finish(Stage.FAILED)


async def remove_one_shots(run: UpdateRun) -> None:
    """A migrations container of the run must not keep writing during an undo."""
    project = run.settings.compose_project
    run_id = run.record.update_id
    for label in (run_id, f"{run_id}-rehearsal"):
        try:
            containers = await run.deps.engine.run_containers(project, label)
        except EngineError as err:
            run.log(f"could not list one-shot containers: {err.message}")
            continue
        for container in containers:
            if container.labels.get("com.docker.compose.oneoff") == "True":
                try:
                    await run.deps.engine.remove_container(container.id)
                except EngineError as err:
                    run.log(f"could not remove one-shot container {container.name}: {err}")
                    continue
                run.log(f"removed one-shot container {container.name}")


async def drop_scratch(run: UpdateRun) -> None:
    """The rehearsal's sandbox; leftovers are reported, never a reason to stop the undo."""
    from supervisor.update.rehearsal import remove_rehearsal_leftovers

    try:
        await remove_rehearsal_leftovers(run)
    except Exception as err:
        run.log(f"rehearsal sandbox not removed: {err}")


# --- stopped: services down, data unchanged ---------------------------------------------


async def restart_stopped(run: UpdateRun) -> None:
    """A failure in ``stop`` or ``backup``: start what was stopped; nothing else changed."""
    await deferred_dump.cancel(run)  # begun at the end of backup, if a later step failed
    await remove_one_shots(run)
    try:
        await start_previous(run)
    except Exception as err:
        await needs_intervention(run, f"could not restart the stopped services: {err}")
        return
    await drop_rollback_copy(run)
    await run.finish(Stage.FAILED)


async def drop_rollback_copy(run: UpdateRun) -> None:
    """The run's rollback copy, once no end of the run can need it (idempotent: after a
    swap it no longer exists under its name). A failure is a warning: it is a copy."""
    if run.record.rollback_copy == "none":
        return
    if warning := await completion.drop_rollback_copy(run.deps, run.record):
        await _warn_once(run, warning)
    else:
        await run.save()


# --- changed: roll back images and data --------------------------------------------------


async def roll_back(run: UpdateRun) -> None:
    record = run.record
    if record.state is not Stage.ROLLBACK:
        record.rollback = record.rollback or RollbackJournal()
        await run.enter(Stage.ROLLBACK)
    else:
        record.rollback = record.rollback or RollbackJournal()
        run.log("resuming the rollback from its journal")
    try:
        await deferred_dump.cancel(run)  # it holds a session on the copy
        await _stop_new(run)
        await remove_one_shots(run)
        if _data_touched(run) and record.snapshot_id:
            if record.update_order == "start-first":
                await _warn_once(
                    run,
                    "the database was kept as the new version left it: this release declared "
                    "backward-compatible migrations, and a restore would lose what users "
                    f"wrote meanwhile; snapshot {record.snapshot_id} is kept for a manual "
                    "restore",
                )
            elif _via_copy(run):
                await _swap_copy_in(run, record.snapshot_id)
            else:
                await _restore_data(run, record.snapshot_id)
        await _put_back_old(run)
        await start_previous(run)
        await write_pins(run.deps, record, target=False)
        if _journal(run).via_copy:
            await _dump_replaced(run)  # the previous version is back: no longer downtime
        await drop_rollback_copy(run)
    except Exception as err:
        if not isinstance(err, SupervisorError):
            _LOGGER.exception("rollback of %s failed", record.update_id)
        await needs_intervention(run, f"rollback failed: {getattr(err, 'message', err)}")
        return
    await run.finish(Stage.ROLLED_BACK)


def _refuse_without_postgres(run: UpdateRun, has_postgres: bool) -> None:
    """A snapshot whose PostgreSQL part was still to come from the rollback copy must not
    be restored as if it were whole (InfluxDB back, the database left as it is)."""
    if not has_postgres and run.record.snapshot_postgres != "included":
        raise RollbackUnsafe(
            f"the pre-update snapshot {run.record.snapshot_id} has no PostgreSQL dump (it "
            "was to be taken from the rollback copy) and the copy is not there to swap in; "
            "the database was not touched"
        )


def _via_copy(run: UpdateRun) -> bool:
    """Decided once per rollback, before its first data step: swap the rollback copy in
    (it is ready) unless a restore of the dump was already begun."""
    journal = _journal(run)
    if not journal.via_copy and not journal.restore_started and journal.pre_rollback == "pending":
        journal.via_copy = run.record.rollback_copy == "ready"
    return journal.via_copy


async def _swap_copy_in(run: UpdateRun, snapshot_id: str) -> None:
    """PostgreSQL by renames (the copy in, the new version's data kept aside, dumped once
    the previous version is back); InfluxDB, which cannot be renamed, as before: its
    pre-rollback backup first, then the restore of the snapshot's InfluxDB part."""
    record, journal, snapshots = run.record, _journal(run), run.deps.snapshots
    await run.save()  # via_copy journaled
    manifest = await snapshots.get(snapshot_id)
    if manifest.influxdb is not None:
        if journal.pre_rollback == "pending":
            await _pre_rollback_dump(run, postgres=False)
        await _check_pre_rollback(run)
    if not journal.restored:
        journal.restore_started = True
        await run.save()  # journaled before the swap acts
        await fault_point("rollback.restore-started")
        run.log(f"swapping the rollback copy {record.rollback_copy_name} in for the database")
        swap = await snapshots.swap_in_copy(record.update_id)
        replaced = swap.kept
        if not swap.swapped:
            _refuse_without_postgres(run, manifest.postgres is not None)
            if manifest.postgres is not None:
                run.log(f"the rollback copy is gone: restoring the database from {snapshot_id}")
                kept_as = replaced_database_name(manifest.postgres.database, record.update_id)
                await snapshots.restore(
                    snapshot_id, run.snapshot_progress, influxdb=False, keep_replaced_as=kept_as
                )
                replaced = await _kept_after_restore(run, kept_as)
        journal.restored, journal.replaced_database = True, replaced
        await run.save()
        if replaced:
            run.log(f"database back as it was; the replaced one is kept as {replaced} for now")
        await fault_point("rollback.swapped")
    if manifest.influxdb is not None and not journal.influx_restored:
        if journal.pre_rollback == "verified":
            try:
                await snapshots.restore(
                    snapshot_id, run.snapshot_progress, influxdb=True, postgres=False
                )
            except SnapshotCorrupt as err:  # checked before it changed anything
                await _warn_once(
                    run,
                    f"InfluxDB was not restored: its archive in snapshot {snapshot_id} is "
                    f"damaged ({err.message}); it keeps the failed version's points, and the "
                    f"pre-rollback backup {record.pre_rollback_snapshot_id} holds them too",
                )
        else:
            await _warn_once(
                run,
                "InfluxDB was not restored: without a verified pre-rollback backup it holds "
                "the only copy of what the failed version wrote; it keeps those points",
            )
        journal.influx_restored = True
        await run.save()


async def _dump_replaced(run: UpdateRun) -> None:
    """After the previous version is back: dump the database the swap kept aside (what
    the failed version wrote), once; drop it only when that dump verifies."""
    record, journal, snapshots = run.record, _journal(run), run.deps.snapshots
    replaced = journal.replaced_database
    if not journal.restored or replaced is None or journal.replaced_database_dropped:
        return
    if journal.replaced_snapshot_id is None:
        adopted = await _adopt_pre_rollback(run, postgres=True)
        if adopted is None:
            try:
                created = await snapshots.create(
                    SnapshotReason.PRE_ROLLBACK, record.update_id, _failed_images(run),
                    run.snapshot_progress, influxdb=False, postgres_source=replaced,
                )  # fmt: skip
            except SupervisorError as err:
                await _warn_once(
                    run,
                    f"database {replaced} holds what the failed version wrote and was kept: "
                    f"its dump failed ({err.message})",
                )
                return
            adopted = created.id
        journal.replaced_snapshot_id = adopted
        await run.save()
        run.log(f"dump {adopted} keeps what the new version wrote to the database")
        await fault_point("rollback.replaced-dumped")
    try:
        await snapshots.check(journal.replaced_snapshot_id)
    except SnapshotError as err:
        await _warn_once(
            run,
            f"database {replaced} holds what the failed version wrote and was kept: its dump "
            f"{journal.replaced_snapshot_id} does not verify ({err.message})",
        )
        return
    await snapshots.drop_kept_database(replaced)
    journal.replaced_database_dropped = True
    await run.save()
    run.log(f"dropped {replaced}: dump {journal.replaced_snapshot_id} holds its data")


async def _kept_after_restore(run: UpdateRun, kept_as: str) -> str | None:
    """The database a restore kept aside: none if there was no live database to replace
    (checked, not assumed). The restore has happened: if the check fails, the name is
    assumed kept (a later drop of a missing name is a no-op) rather than failing now."""
    try:
        return (await run.deps.snapshots.run_databases(run.record.update_id)).kept
    except SupervisorError as err:
        run.log(f"could not check whether {kept_as} was kept ({err.message}); assuming so")
        return kept_as


def _failed_images(run: UpdateRun) -> dict[str, str]:
    """The images a pre-rollback dump records: the failed version's."""
    return {t.service: t.target_digest or "" for t in run.record.services.values()}


async def _adopt_pre_rollback(run: UpdateRun, *, postgres: bool | None) -> str | None:
    """A pre-rollback snapshot of this run committed before a crash (with or without the
    PostgreSQL part; None: either): it is adopted, never taken again."""
    for snapshot in await run.deps.snapshots.list():
        if (
            snapshot.reason is SnapshotReason.PRE_ROLLBACK
            and snapshot.run_id == run.record.update_id
            and (postgres is None or (snapshot.postgres is not None) == postgres)
        ):
            return snapshot.id
    return None


def _data_touched(run: UpdateRun) -> bool:
    return run.reached(Stage.MIGRATE) or run.reached(Stage.RECREATE)


def _journal(run: UpdateRun) -> RollbackJournal:
    assert run.record.rollback is not None
    return run.record.rollback


async def _stop_new(run: UpdateRun) -> None:
    journal = _journal(run)
    if journal.new_stopped:
        return
    for retained in reversed(run.record.retained):
        if retained.new_id:
            with contextlib.suppress(EngineNotFound):
                await run.deps.engine.ensure_stopped(retained.new_id, run.settings.stop_timeout)
    journal.new_stopped = True
    await run.save()
    await fault_point("rollback.new-stopped")


async def _restore_data(run: UpdateRun, snapshot_id: str) -> None:
    journal, snapshots = _journal(run), run.deps.snapshots
    if journal.pre_rollback == "pending" and not journal.restore_started:
        await _pre_rollback_dump(run)
    await _check_pre_rollback(run)
    if not journal.snapshot_checked:
        try:
            await snapshots.check(snapshot_id)
        except SnapshotError as err:
            raise RollbackUnsafe(
                f"the pre-update snapshot {snapshot_id} is unusable ({err.message}); "
                "the database was not restored from it"
            ) from err
        journal.snapshot_checked = True
        await run.save()
    if not journal.restored:
        manifest = await snapshots.get(snapshot_id)
        _refuse_without_postgres(run, manifest.postgres is not None)
        replaced = (
            replaced_database_name(manifest.postgres.database, run.record.update_id)
            if manifest.postgres is not None
            else None
        )
        journal.restore_started, journal.replaced_database = True, replaced
        await run.save()  # journaled before the restore acts
        await fault_point("rollback.restore-started")
        run.log(f"restoring the database from snapshot {snapshot_id}")
        # Without a verified pre-rollback dump, InfluxDB holds the only copy of what the
        # failed version wrote there (it cannot be renamed aside like the PostgreSQL one).
        with_influx = journal.pre_rollback == "verified"
        if manifest.influxdb is not None and not with_influx:
            await _warn_once(
                run,
                "InfluxDB was not restored: without a verified pre-rollback dump it holds the "
                "only copy of what the failed version wrote; it keeps those points",
            )
        await snapshots.restore(
            snapshot_id, run.snapshot_progress, keep_replaced_as=replaced, influxdb=with_influx
        )
        if replaced is not None:
            replaced = await _kept_after_restore(run, replaced)
        journal.restored, journal.replaced_database = True, replaced
        await run.save()
        if replaced:
            run.log(f"database restored; the replaced one is kept as {replaced} for now")
        await fault_point("rollback.swapped")
    if journal.replaced_database and not journal.replaced_database_dropped:
        if journal.pre_rollback == "verified":
            await snapshots.drop_kept_database(journal.replaced_database)
            journal.replaced_database_dropped = True
            await run.save()
            run.log(
                f"dropped {journal.replaced_database}: the pre-rollback dump "
                f"{run.record.pre_rollback_snapshot_id} holds its data"
            )
        else:
            warning = (
                f"database {journal.replaced_database} holds what the failed version wrote "
                f"and was kept, because no verified pre-rollback dump exists "
                f"({journal.pre_rollback_error or 'not taken'})"
            )
            await _warn_once(run, warning)


async def _check_pre_rollback(run: UpdateRun) -> None:
    journal = _journal(run)
    if journal.pre_rollback == "taken" and run.record.pre_rollback_snapshot_id:
        try:
            await run.deps.snapshots.check(run.record.pre_rollback_snapshot_id)
            journal.pre_rollback = "verified"
        except SnapshotError as err:
            journal.pre_rollback, journal.pre_rollback_error = "failed", err.message
        await run.save()


async def _warn_once(run: UpdateRun, warning: str) -> None:
    """A warning on the record (journaled), not repeated when a rollback is resumed."""
    if warning not in run.record.warnings:
        run.record.warnings = [*run.record.warnings, warning]
        await run.save()
    run.log(warning)


async def _pre_rollback_dump(run: UpdateRun, *, postgres: bool = True) -> None:
    """Dump the failed data once (without PostgreSQL when the rollback copy is swapped in:
    the database is then kept aside and dumped later); after a crash, adopt the dump
    already committed."""
    record, journal, snapshots = run.record, _journal(run), run.deps.snapshots
    adopted = await _adopt_pre_rollback(run, postgres=None if postgres else False)
    if adopted is not None:
        run.log(f"pre-rollback dump {adopted} was already taken before the restart")
        snapshot_id = adopted
    else:
        try:
            snapshot = await snapshots.create(
                SnapshotReason.PRE_ROLLBACK, record.update_id, _failed_images(run),
                run.snapshot_progress, postgres=postgres,
            )  # fmt: skip
        except SupervisorError as err:
            journal.pre_rollback, journal.pre_rollback_error = "failed", err.message
            record.warnings = [*record.warnings, f"pre-rollback dump failed: {err.message}"]
            await run.save()
            run.log(
                f"pre-rollback dump failed ({err.message}); the replaced database "
                "will be kept instead of dropped"
            )
            return
        snapshot_id = snapshot.id
    record.pre_rollback_snapshot_id = snapshot_id
    journal.pre_rollback = "taken"
    await run.save()
    run.log(f"pre-rollback dump {snapshot_id} keeps what the new version wrote")
    await fault_point("rollback.pre-rollback-taken")


async def _put_back_old(run: UpdateRun) -> None:
    from supervisor.update.actions import from_record

    journal = _journal(run)
    for retained in run.record.retained:
        if retained.old_id in journal.put_back:
            continue
        container = await run.deps.engine.restore_retained(
            from_record(retained), start=False, stop_timeout=run.settings.stop_timeout
        )
        in_place = container.id
        if in_place != retained.old_id:  # recreated from its recorded spec
            run.log(f"the old {retained.service} container was gone: recreated as {in_place[:12]}")
            _replace_id(run, retained.old_id, in_place)
        journal.put_back = [*journal.put_back, retained.old_id]
        await run.save()
        run.log(f"put back the old {retained.service} container ({in_place[:12]})")
        await fault_point("rollback.put-back")


def _replace_id(run: UpdateRun, old_id: str, new_id: str) -> None:
    for service, ids in run.layout.containers.items():
        run.layout.containers[service] = [new_id if i == old_id else i for i in ids]
    for target in run.record.services.values():
        if old_id in target.container_ids:
            target.container_ids = [new_id if i == old_id else i for i in target.container_ids]


# --- shared: the previous version running and healthy ------------------------------------


async def start_previous(run: UpdateRun) -> None:
    """Start the previous version in dependency order and wait until healthy, converging.

    Each attempt first lets any stop still in flight settle (a killed run may have
    left one in the engine), starts what is not running, then waits for health
    with the stability window; an attempt that sees a container exit starts over.
    """
    from supervisor.update.actions import gather_first_error

    engine, settings = run.deps.engine, run.settings
    ids = [cid for s in run.layout.app_order for cid in run.layout.containers.get(s, [])]
    # A stop this run asked for may still be in flight in the engine after a crash
    # (the container stays "running" until it exits): settle it before starting.
    unsure = set(run.record.stopped) if run.recovering else set()
    window = min(settings.stability_window, 5.0)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(START_ATTEMPTS),
        wait=wait_exponential(multiplier=1, max=8),
        retry=retry_if_exception_type(EngineError),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            number = attempt.retry_state.attempt_number
            if number > 1:
                run.log(f"starting the previous version again (attempt {number})")
            for container_id in ids:
                settling = container_id in unsure
                await engine.ensure_running(
                    container_id,
                    settings.health_timeout,
                    stop_timeout=settings.stop_timeout if settling else None,
                    settle=2.0 if settling else 0.0,
                )
            unsure.clear()  # settled by the first attempt
            await gather_first_error(
                engine.wait_healthy(container_id, settings.health_timeout, window)
                for container_id in ids
            )
    run.log("previous version healthy")


async def needs_intervention(run: UpdateRun, what: str) -> None:
    record = run.record
    record.kept = await kept_artifacts(run)
    message = f"{what}. Kept for the operator: {', '.join(record.kept) or 'nothing'}."
    if record.error is not None and record.error.error_key != "needs_intervention":
        message += f" Original failure in {record.error.stage}: {record.error.message}"
    record.error = RunError(error_key="needs_intervention", message=message, stage=record.state)
    run.log(message)
    await run.finish(Stage.NEEDS_INTERVENTION)


def _journal_databases(record: RunRecord) -> RunDatabases:
    """What the journal says of the run's databases, when the server cannot be asked."""
    journal = record.rollback
    swapped_in = journal is not None and journal.via_copy and journal.restored
    copy = record.rollback_copy_name if record.rollback_copy != "none" and not swapped_in else None
    kept = None
    if journal is not None and journal.replaced_database and not journal.replaced_database_dropped:
        kept = journal.replaced_database if journal.restored else None
    return RunDatabases(copy=copy, kept=kept)


async def kept_artifacts(run: UpdateRun) -> list[str]:
    """Everything an operator may need, as it exists now (checked, not assumed)."""
    record, journal = run.record, run.record.rollback
    kept: list[str] = []
    listed = set()
    with contextlib.suppress(SupervisorError):
        listed = {s.id for s in await run.deps.snapshots.list()}
    if record.snapshot_id:
        state = "" if record.snapshot_id in listed else " (not found in backups/)"
        kept.append(f"pre-update snapshot {record.snapshot_id}{state}")
    if record.pre_rollback_snapshot_id:
        state = "" if record.pre_rollback_snapshot_id in listed else " (not found in backups/)"
        kept.append(f"pre-rollback dump {record.pre_rollback_snapshot_id}{state}")
    if journal is not None and journal.replaced_snapshot_id:
        state = "" if journal.replaced_snapshot_id in listed else " (not found in backups/)"
        kept.append(f"dump {journal.replaced_snapshot_id} of what the failed version wrote{state}")
    checked = ""
    try:  # whatever the journal says: a copy at "making" may exist, a kept one may not
        databases = await run.deps.snapshots.run_databases(record.update_id)
    except SupervisorError as err:
        # The database server may be why the run needs an operator: the journal's names.
        checked = " (not checked: the databases could not be listed)"
        databases = _journal_databases(record)
        run.log(f"could not list the run's databases: {err.message}")
    if databases.copy:
        kept.append(
            f"database {databases.copy} (a copy of the database before the update){checked}"
        )
    if databases.kept:
        kept.append(f"database {databases.kept} (what the failed version wrote){checked}")
    elif journal is not None and journal.restore_started and not journal.restored:
        kept.append("the live database, as the failed version left it (it was not replaced)")
    put_back = set(journal.put_back) if journal is not None else set()
    for retained in record.retained:
        if retained.old_id in put_back:
            continue
        with contextlib.suppress(SupervisorError):
            await run.deps.engine.container(retained.old_id)
            kept.append(f"old container {retained.old_name} ({retained.old_id[:12]})")
            continue
        kept.append(f"old container {retained.old_name}: gone; its spec is in the journal")
    return kept
