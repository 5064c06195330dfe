"""One update run: the stage machine that lands a release or puts the old one back.

::

    preflight → pull → verify → [rehearse] → stop → backup → migrate → recreate → healthcheck
        │          │       │          │         │       │         │          │            │
        └──────────┴───────┴──────────┘         └───────┘         └──────────┴────────────┘
           failed: nothing was changed       failed: old restarted     rollback (rollback.py)

Every transition is journaled (``state/current-run.json``) before it is
announced as an event. The run uses only the digests resolved before it
started. Cancellation is honoured up to the start of ``stop``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from supervisor.config import Settings
from supervisor.const import RETAINED_SUFFIX, Role
from supervisor.engine.models import PullProgress, RetainedContainer
from supervisor.engine.protocol import Engine
from supervisor.exceptions import CommandFailed, EngineError, SignatureRefused, SupervisorError
from supervisor.signatures.models import Policy
from supervisor.snapshots.const import SnapshotReason
from supervisor.snapshots.protocol import SnapshotProgress
from supervisor.statedir import StateStore
from supervisor.update.events import EventLog
from supervisor.update.models import RetainedRecord, RunError, RunRecord, StageTiming, utcnow
from supervisor.update.ports import Prober, SignatureVerifier, Snapshots
from supervisor.update.stages import PHASE_TEXT, PROGRESS_AT, Stage

_LOGGER = logging.getLogger(__name__)


class RunCancelled(Exception):
    """Raised at a checkpoint after cancel was requested (before ``stop``)."""


class MigrationFailed(CommandFailed):
    error_key = "migration_failed"


@dataclass
class RunDeps:
    """Everything a run talks to, handed in (no global lookups)."""

    settings: Settings
    engine: Engine
    snapshots: Snapshots
    signatures: SignatureVerifier
    prober: Prober
    state: StateStore
    on_finished: list[Callable[[RunRecord], None]] = field(default_factory=list)


@dataclass
class StackLayout:
    """Where things are in the stack, found by discovery at start."""

    app_order: list[str]  # app services, dependencies first
    containers: dict[str, list[str]]  # service → container ids
    migrations_container: str | None
    postgres_container: str | None


class UpdateRun:
    def __init__(
        self, deps: RunDeps, record: RunRecord, layout: StackLayout, events: EventLog
    ) -> None:
        self.deps = deps
        self.record = record
        self.layout = layout
        self.events = events
        self.settings = deps.settings

    # --- journal + events ---------------------------------------------------------

    async def save(self) -> None:
        await asyncio.to_thread(self.deps.state.write_current, self.record)

    def snapshot_progress(self, progress: SnapshotProgress) -> None:
        self.log(f"{progress.step}: {progress.message}")

    def log(self, line: str) -> None:
        _LOGGER.info("[%s] %s", self.record.update_id, line)
        self.record.log(line)
        self.events.emit("log", {"state": self.record.state.value, "message": line})

    async def enter(self, stage: Stage) -> None:
        """Journal the transition, then announce it."""
        now = utcnow()
        if self.record.stages and self.record.stages[-1].finished_at is None:
            self.record.stages[-1] = self.record.stages[-1].model_copy(
                update={"finished_at": now, "ok": True}
            )
        self.record.state = stage
        self.record.phase = PHASE_TEXT[stage]
        self.record.progress = PROGRESS_AT.get(stage, self.record.progress)
        if not stage.finished:
            self.record.stages = [*self.record.stages, StageTiming(stage=stage, started_at=now)]
        await self.save()
        self.events.emit("phase", {"state": stage.value, "message": self.record.phase})
        self.events.emit("progress", {"state": stage.value, "progress": self.record.progress})
        await _fault_hold(stage)

    def progress(self, percent: float) -> None:
        self.record.progress = int(percent)
        self.events.emit(
            "progress", {"state": self.record.state.value, "progress": self.record.progress}
        )

    def checkpoint(self) -> None:
        if self.record.cancel_requested:
            raise RunCancelled

    def reached(self, stage: Stage) -> bool:
        return any(timing.stage is stage for timing in self.record.stages)

    # --- the run ------------------------------------------------------------------

    async def execute(self) -> RunRecord:
        try:
            await self._forward()
        except RunCancelled:
            self.log("cancelled before any service was stopped")
            await self.finish(Stage.CANCELLED)
        except Exception as err:
            await self._handle_failure(err)
        return self.record

    async def _forward(self) -> None:
        await self.enter(Stage.PREFLIGHT)
        await self._preflight()
        self.checkpoint()
        await self.enter(Stage.PULL)
        await self._pull()
        self.checkpoint()
        await self.enter(Stage.VERIFY)
        await self._verify()
        self.checkpoint()
        if self.record.rehearse:
            await self.enter(Stage.REHEARSE)
            await self._rehearse()
            self.checkpoint()
        await self.enter(Stage.STOP)
        await self._stop_apps()
        await self.enter(Stage.BACKUP)
        await self._backup()
        if self.layout.migrations_container is not None:
            await self.enter(Stage.MIGRATE)
            await self._migrate(self.layout.migrations_container)
        await self.enter(Stage.RECREATE)
        await self._recreate()
        await self.enter(Stage.HEALTHCHECK)
        await self._healthcheck()
        await self._complete()

    async def _preflight(self) -> None:
        version = await self.deps.engine.ping()
        self.log(f"engine {version} reachable")
        size = await self.deps.snapshots.estimate_size()
        self.log(f"a snapshot needs about {size / 1e6:.1f} MB; the backup disk has room")
        for target in self.record.services.values():
            self.log(
                f"{target.service}: {target.current_digest or target.current_image} "
                f"-> {target.target_digest}"
            )

    async def _pull(self) -> None:
        digests = sorted(
            {t.target_digest for t in self.record.services.values() if t.target_digest}
        )
        span = (PROGRESS_AT[Stage.VERIFY] - PROGRESS_AT[Stage.PULL]) / max(1, len(digests))
        for index, digest in enumerate(digests):
            self.checkpoint()
            base = PROGRESS_AT[Stage.PULL] + index * span
            if await self.deps.engine.image_present(digest):
                self.log(f"{digest} already present")
                continue
            self.log(f"pulling {digest}")

            def report(update: PullProgress, base: float = base) -> None:
                self.progress(base + span * update.percent / 100)

            await asyncio.wait_for(
                self.deps.engine.pull(digest, on_progress=report), self.settings.pull_timeout
            )
            self.log(f"pulled {digest}")

    async def _verify(self) -> None:
        refused = []
        for target in self.record.services.values():
            if target.target_digest is None:
                continue
            verdict = await self.deps.signatures.verify(target.service, target.target_digest)
            self.record.verdicts = [*self.record.verdicts, verdict]
            self.log(f"{target.service}: signature {verdict.reason} ({verdict.policy})")
            if verdict.refused:
                refused.append(f"{target.service}: {verdict.reason}")
            elif not verdict.verified and verdict.policy is Policy.WARN:
                self.record.warnings = [
                    *self.record.warnings,
                    f"{target.service}: unverified signature allowed by policy warn "
                    f"({verdict.reason})",
                ]
        await self.save()
        if refused:
            raise SignatureRefused("signature policy refused: " + "; ".join(refused))

    async def _rehearse(self) -> None:
        from supervisor.update.rehearsal import rehearse_migrations

        await rehearse_migrations(self)

    async def _stop_apps(self) -> None:
        for service in reversed(self.layout.app_order):
            for container_id in self.layout.containers.get(service, []):
                self.record.stopped = [*self.record.stopped, container_id]
                await self.save()  # journaled before the engine acts
                await self.deps.engine.stop(container_id, self.settings.stop_timeout)
                self.log(f"stopped {service} ({container_id[:12]})")

    async def _backup(self) -> None:
        images = {
            t.service: t.current_digest or t.current_image or ""
            for t in self.record.services.values()
        }
        snapshot = await asyncio.wait_for(
            self.deps.snapshots.create(
                SnapshotReason.PRE_UPDATE, self.record.update_id, images, self.snapshot_progress
            ),
            self.settings.backup_timeout,
        )
        self.record.snapshot_id = snapshot.id
        await self.save()
        self.log(f"snapshot {snapshot.id} written")

    async def _migrate(self, template: str) -> None:
        image = self.migrations_image()
        self.log(f"running migrations from {image}")
        result = await self.deps.engine.run_one_shot(
            template, image, self.record.update_id, self.settings.migration_timeout
        )
        for line in result.logs.strip().splitlines()[-10:]:
            self.log(f"migrations: {line}")
        if result.exit_code != 0:
            raise MigrationFailed(
                f"migrations exited with code {result.exit_code}", exit_code=result.exit_code
            )

    def migrations_image(self) -> str:
        for target in self.record.services.values():
            if target.role is Role.MIGRATIONS and target.target_digest:
                return target.target_digest
        app = self.record.services[self.layout.app_order[-1]]
        assert app.target_digest is not None
        return app.target_digest

    async def _recreate(self) -> None:
        run_id = self.record.update_id
        for service in self.layout.app_order:
            target = self.record.services[service]
            assert target.target_digest is not None
            for container_id in self.layout.containers.get(service, []):
                # Journal the intent first: a crash inside recreate must still
                # know the old container's name and restart policy.
                old = await self.deps.engine.container(container_id)
                intent = RetainedRecord(
                    service=service, name=old.name, new_id="", old_id=container_id,
                    old_name=f"{old.name}{RETAINED_SUFFIX}{run_id}",
                    old_restart_policy=old.restart_policy or {"Name": "no"},
                    old_was_running=True,
                )  # fmt: skip
                self.record.retained = [*self.record.retained, intent]
                await self.save()
                retained = await self.deps.engine.recreate(
                    container_id, target.target_digest, run_id, self.settings.stop_timeout
                )
                done = to_record(retained).model_copy(
                    update={
                        "old_restart_policy": intent.old_restart_policy,
                        "old_was_running": True,
                    }
                )
                self.record.retained = [*self.record.retained[:-1], done]
                await self.save()
                self.log(f"recreated {service} as {retained.new_id[:12]}")

    async def _healthcheck(self) -> None:
        async def gate(record: RetainedRecord) -> None:
            await self.deps.engine.wait_healthy(
                record.new_id, self.settings.health_timeout, self.settings.stability_window
            )
            self.log(
                f"{record.service} healthy and stable for {self.settings.stability_window:g} s"
            )

        await gather_first_error(gate(record) for record in self.record.retained)
        for probe in self.settings.health_probes:
            await self.deps.prober.check(probe.url, probe.expect_status, probe.timeout)
            self.log(f"probe {probe.url} answered {probe.expect_status}")
        version_probe = self.settings.version_probe
        if version_probe is not None and self.record.target_version:
            reported = await self.deps.prober.version(
                version_probe.url, version_probe.json_field, 10
            )
            if reported != self.record.target_version:
                raise EngineError(
                    f"{version_probe.service} reports version {reported}, "
                    f"expected {self.record.target_version}"
                )

    async def _complete(self) -> None:
        from supervisor.update.completion import complete_run

        await complete_run(self)

    # --- failure ------------------------------------------------------------------

    async def _handle_failure(self, err: Exception) -> None:
        from supervisor.update.rollback import restart_stopped, roll_back

        stage = self.record.state
        if self.record.stages and self.record.stages[-1].finished_at is None:
            self.record.stages[-1] = self.record.stages[-1].model_copy(
                update={"finished_at": utcnow(), "ok": False}
            )
        if not isinstance(err, SupervisorError):
            _LOGGER.exception("unexpected error in %s", stage)
        self.record.error = RunError(
            error_key=getattr(err, "error_key", "internal_error"),
            message=str(getattr(err, "message", err)) or type(err).__name__,
            stage=stage,
        )
        self.log(f"{stage} failed: {self.record.error.message}")
        if stage in (Stage.MIGRATE, Stage.RECREATE, Stage.HEALTHCHECK):
            await roll_back(self)
        elif stage in (Stage.STOP, Stage.BACKUP):
            await restart_stopped(self)
        else:
            await self.finish(Stage.FAILED)

    async def finish(self, end: Stage) -> None:
        self.record.result = end
        self.record.finished_at = utcnow()
        if end is Stage.COMPLETED:
            self.record.progress = 100
        await self.enter(end)
        await asyncio.to_thread(self.deps.state.append_history, self.record)
        result = {
            "state": end.value,
            "update_id": self.record.update_id,
            "from_version": self.record.from_version,
            "target_version": self.record.target_version,
            "error": self.record.error.model_dump(mode="json") if self.record.error else None,
        }
        self.events.emit("result", result)
        for callback in self.deps.on_finished:
            callback(self.record)


async def _fault_hold(stage: Stage) -> None:
    """Fault injection for the crash tests: pause right after a stage is journaled.

    ``STACKSUP_FAULT_HOLD=<stage>:<seconds>`` (outside the ``SUPERVISOR_``
    settings on purpose) lets tests/docker/test_crash_matrix.py kill the
    process at an exact stage boundary even when the stage itself takes
    milliseconds. Unset in production: a no-op.
    """
    hold = os.environ.get("STACKSUP_FAULT_HOLD")
    if hold:
        name, _, seconds = hold.partition(":")
        if name == stage.value:
            _LOGGER.warning("fault injection: holding %s for %s s", stage, seconds)
            await asyncio.sleep(float(seconds or 5))


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
