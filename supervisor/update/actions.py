"""The forward action of each stage, one function each, driven by :data:`steps.STEPS`.

Each action receives the run and does one stage's work. What a failure in the
stage must undo is not decided here but by the stage's zone in the table;
an action only has to journal its intent *before* the engine acts, so that
the undo (in this process or after a crash) knows what was touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from supervisor.const import next_name
from supervisor.engine.models import PullProgress, RetainedContainer
from supervisor.exceptions import EngineError, MigrationFailed, SignatureRefused, SnapshotError
from supervisor.signatures.models import Policy
from supervisor.snapshots.const import SnapshotReason
from supervisor.update import deferred_dump
from supervisor.update.faults import fault_point
from supervisor.update.models import RetainedRecord
from supervisor.update.stages import Stage

if TYPE_CHECKING:
    from supervisor.update.run import UpdateRun


async def preflight(run: UpdateRun) -> None:
    """Engine reachable, room for the backup: checked before anything is stopped."""
    version = await run.deps.engine.ping()
    run.log(f"engine {version} reachable")
    size = await run.deps.snapshots.preflight()
    run.log(f"a snapshot needs about {size / 1e6:.1f} MB; the backup disk has room for it")
    for target in run.record.services.values():
        run.log(
            f"{target.service}: {target.current_digest or target.current_image} "
            f"-> {target.target_digest}"
        )


async def pull(run: UpdateRun) -> None:
    digests = sorted({t.target_digest for t in run.record.services.values() if t.target_digest})
    start, end = run.progress_span(Stage.PULL)
    span = (end - start) / max(1, len(digests))
    for index, digest in enumerate(digests):
        run.checkpoint()
        base = start + index * span
        if await run.deps.engine.image_present(digest):
            run.log(f"{digest} already present")
            continue
        run.log(f"pulling {digest}")

        def report(update: PullProgress, base: float = base) -> None:
            run.pull_progress(base + span * update.percent / 100, update)

        await asyncio.wait_for(
            run.deps.engine.pull(digest, on_progress=report), run.settings.pull_timeout
        )
        run.log(f"pulled {digest}")


async def verify(run: UpdateRun) -> None:
    record = run.record
    refused = []
    for target in record.services.values():
        if target.target_digest is None:
            continue
        verdict = await run.deps.signatures.verify(target.service, target.target_digest)
        record.verdicts = [*record.verdicts, verdict]
        run.log(f"{target.service}: signature {verdict.reason} ({verdict.policy})")
        if verdict.refused:
            refused.append(f"{target.service}: {verdict.reason}")
        elif not verdict.verified and verdict.policy is Policy.WARN:
            record.warnings = [
                *record.warnings,
                f"{target.service}: unverified signature allowed by policy warn ({verdict.reason})",
            ]
    await run.save()
    if refused:
        raise SignatureRefused("signature policy refused: " + "; ".join(refused))


async def rehearse(run: UpdateRun) -> None:
    from supervisor.update.rehearsal import rehearse_migrations

    await rehearse_migrations(run)


async def stop_apps(run: UpdateRun) -> None:
    for service in reversed(run.layout.app_order):
        for container_id in run.layout.containers.get(service, []):
            run.record.stopped = [*run.record.stopped, container_id]
            await run.save()  # journaled before the engine acts
            await run.deps.engine.stop(container_id, run.settings.stop_timeout)
            run.log(f"stopped {service} ({container_id[:12]})")


async def backup(run: UpdateRun) -> None:
    """A rollback copy, a snapshot, then the snapshot proven readable before anything
    depends on it."""
    record = run.record
    await rollback_copy(run)
    images = {
        t.service: t.current_digest or t.current_image or "" for t in record.services.values()
    }
    later = deferred_dump.deferred(run)  # PostgreSQL from the copy, with the app running
    snapshot = await asyncio.wait_for(
        run.deps.snapshots.create(
            SnapshotReason.PRE_UPDATE, record.update_id, images, run.snapshot_progress,
            postgres=not later,
        ),
        run.settings.backup_timeout,
    )  # fmt: skip
    record.snapshot_id = snapshot.id
    if later:
        record.snapshot_postgres = "pending"
    await run.save()
    run.log(f"snapshot {snapshot.id} written")
    await run.deps.snapshots.check(snapshot.id)
    run.log(f"snapshot {snapshot.id} verified: checksums match and the dump is readable")
    if later:
        deferred_dump.start(run)
        run.log("the database is dumped from the rollback copy while the new version starts")


async def rollback_copy(run: UpdateRun) -> None:
    """Copy the database inside its server while nothing writes to it, so that a rollback
    renames it back (milliseconds) instead of restoring the dump (seconds per GB).

    Optional by nature: without room on the database's volume, or when the server
    refuses, the run goes on without one (a warning) and a rollback restores the dump.
    Not for start-first runs: their rollback keeps the database as it is.
    """
    record = run.record
    if (
        not run.settings.rollback_copy
        or record.update_order == "start-first"
        or record.rollback_copy == "ready"
    ):
        return
    record.rollback_copy = "making"
    await run.save()  # journaled before acting: whatever end the run reaches drops it
    try:
        name = await asyncio.wait_for(
            run.deps.snapshots.copy_database(record.update_id), run.settings.backup_timeout
        )
    except (SnapshotError, TimeoutError) as err:
        message = getattr(err, "message", None) or "not done in time"
        record.warnings = [
            *record.warnings,
            f"no rollback copy ({message}); a rollback restores the snapshot instead",
        ]
        await run.save()
        run.log(record.warnings[-1])
        return
    if name is None:
        record.rollback_copy = "none"
    else:
        record.rollback_copy, record.rollback_copy_name = "ready", name
        run.log(f"rollback copy {name} made: a rollback renames it back instead of restoring")
    await run.save()
    await fault_point("backup.copy-ready")


async def migrate(run: UpdateRun) -> None:
    template = run.layout.migrations_container
    if template is None:
        return
    image = run.migrations_image()
    run.log(f"running migrations from {image}")
    result = await run.deps.engine.run_one_shot(
        template, image, run.record.update_id, run.settings.migration_timeout
    )
    for line in result.logs.strip().splitlines()[-10:]:
        run.log(f"migrations: {line}")
    if result.exit_code != 0:
        raise MigrationFailed(
            f"migrations exited with code {result.exit_code}", exit_code=result.exit_code
        )


async def recreate(run: UpdateRun) -> None:
    record = run.record
    run_id = record.update_id
    start_first = record.update_order == "start-first"
    for service in run.layout.app_order:
        target = record.services[service]
        assert target.target_digest is not None
        for container_id in run.layout.containers.get(service, []):
            # Journal the intent first (names, restart policy, the old image and
            # create spec): a crash inside recreate, or an old container removed
            # by hand, must still be undoable.
            intent = to_record(await run.deps.engine.prepare_recreate(container_id, run_id))
            record.retained = [*record.retained, intent]
            await run.save()
            if start_first:  # the old one keeps serving until the new one is healthy
                retained = await run.deps.engine.start_alongside(
                    container_id, target.target_digest, run_id
                )
            else:
                retained = await run.deps.engine.recreate(
                    container_id, target.target_digest, run_id, run.settings.stop_timeout
                )
            record.retained = [*record.retained[:-1], to_record(retained)]
            await run.save()
            done = "started next to the old one" if start_first else "recreated"
            run.log(f"{done}: {service} as {retained.new_id[:12]}")


async def healthcheck(run: UpdateRun) -> None:
    settings = run.settings

    async def gate(record: RetainedRecord) -> None:
        await run.deps.engine.wait_healthy(
            record.new_id, settings.health_timeout, settings.stability_window
        )
        run.log(f"{record.service} healthy and stable for {settings.stability_window:g} s")

    await gather_first_error(gate(record) for record in run.record.retained)
    beside = _beside(run)  # start-first: probe the new containers, not the service names
    for probe in settings.health_probes:
        url = beside(probe.service, probe.url)
        await run.deps.prober.check(url, probe.expect_status, probe.timeout)
        run.log(f"probe {url} answered {probe.expect_status}")
    version_probe = settings.version_probe
    if version_probe is not None and run.record.target_version:
        url = beside(version_probe.service, version_probe.url)
        reported = await run.deps.prober.version(url, version_probe.json_field, 10)
        if reported != run.record.target_version:
            raise EngineError(
                f"{version_probe.service} reports version {reported}, "
                f"expected {run.record.target_version}"
            )
    if run.record.update_order == "start-first":
        await take_over(run)
    await deferred_dump.finish(run)


async def take_over(run: UpdateRun) -> None:
    """start-first: the healthy new containers join the service's aliases; after the
    drain (a proxy's DNS cache must see them before the old ones go) the old ones stop."""
    engine, settings = run.deps.engine, run.settings
    for record in run.record.retained:
        await engine.share_aliases(from_record(record))
    run.log(
        f"new containers answer to the service names; draining {settings.start_first_drain:g} s"
    )
    await asyncio.sleep(settings.start_first_drain)
    for record in run.record.retained:
        await engine.promote(from_record(record), settings.stop_timeout)
        run.log(f"{record.service}: the new version serves; the old one stopped and kept")


def _beside(run: UpdateRun) -> Callable[[str, str], str]:
    """A probe URL aimed at the service, re-aimed at its new container started alongside
    (by container name, which Docker's DNS resolves), in a start-first run."""
    names = {r.service: next_name(r.name, run.record.update_id) for r in run.record.retained}

    def aim(service: str, url: str) -> str:
        if run.record.update_order != "start-first" or service not in names:
            return url
        parts = urlsplit(url)
        if parts.hostname != service:
            return url
        netloc = names[service] + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    return aim


def migrations_image(run: UpdateRun) -> str:
    digest = run.record.services[run.settings.migrations_source()].target_digest
    assert digest is not None
    return digest


async def gather_first_error(coroutines: Iterable[Coroutine[Any, Any, Any]]) -> None:
    """Run concurrently; on failure cancel the rest and raise the first real error.

    A TaskGroup would raise an ExceptionGroup, whose message ("unhandled errors
    in a TaskGroup") hides the health failure an operator needs to read.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def to_record(retained: RetainedContainer) -> RetainedRecord:
    return RetainedRecord(**retained.__dict__)


def from_record(record: RetainedRecord) -> RetainedContainer:
    return RetainedContainer(**record.model_dump())
