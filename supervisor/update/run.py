"""One update run: walks the stage table forward, and on failure runs the failed stage's undo.

::

    preflight → pull → verify → [rehearse] → stop → backup → migrate → recreate → healthcheck
        │          │       │          │         │       │         │          │            │
        └──────────┴───────┴──────────┘         └───────┘         └──────────┴────────────┘
         undo: abandon → failed          undo: restart → failed   undo: roll back → rolled_back

The stages, their zones, actions and undos are one table
(:data:`supervisor.update.steps.STEPS`); this module only drives it. Every
transition is journaled (``state/current-run.json``) before it is announced
as an event, and a finished run is never rewritten: clean-up problems after
``completed`` become warnings on the record, never a second result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from supervisor.config import Settings
from supervisor.engine.models import PullProgress
from supervisor.engine.protocol import Engine
from supervisor.exceptions import StateError, SupervisorError
from supervisor.snapshots.protocol import SnapshotProgress
from supervisor.statedir import StateStore
from supervisor.update import actions
from supervisor.update.events import EventLog
from supervisor.update.faults import fault_point
from supervisor.update.models import RunError, RunRecord, StageTiming, utcnow
from supervisor.update.ports import Prober, SignatureVerifier, Snapshots
from supervisor.update.stages import Stage
from supervisor.update.steps import FORWARD, STEPS, allowed, next_forward

_LOGGER = logging.getLogger(__name__)


class RunCancelled(Exception):
    """Raised at a checkpoint after cancel was requested (before ``stop``)."""


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
        # Set by start-up recovery: engine calls of the dead process may still be in flight.
        self.recovering = False
        # The pre-update dump of the rollback copy, running beside the run (deferred_dump).
        self.pre_update_dump: asyncio.Future[None] | None = None

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
        """Journal the transition, then announce it; refuse what the table does not allow."""
        current = self.record.state if self.record.stages else None
        if not allowed(current, stage) or (
            stage in FORWARD and current in FORWARD and stage is not next_forward(self, current)
        ):
            raise StateError(f"run {self.record.update_id}: {current} cannot go to {stage}")
        now = utcnow()
        if self.record.stages and self.record.stages[-1].finished_at is None:
            # The stage before an undo or a bad end did not succeed, also after a crash.
            ok = stage not in (Stage.ROLLBACK, Stage.FAILED, Stage.NEEDS_INTERVENTION)
            self.record.stages[-1] = self.record.stages[-1].model_copy(
                update={"finished_at": now, "ok": ok}
            )
        spec = STEPS[stage]
        self.record.state = stage
        self.record.phase = spec.phase
        if spec.progress >= 0:
            self.record.progress = spec.progress
        if not stage.finished:
            self.record.stages = [*self.record.stages, StageTiming(stage=stage, started_at=now)]
        await self.save()
        self.events.emit("phase", {"state": stage.value, "message": self.record.phase})
        self.events.emit("progress", {"state": stage.value, "progress": self.record.progress})
        await fault_point(stage.value)

    def progress(self, percent: float) -> None:
        self.record.progress = int(percent)
        self.events.emit(
            "progress", {"state": self.record.state.value, "progress": self.record.progress}
        )

    def pull_progress(self, percent: float, update: PullProgress) -> None:
        """Progress during ``pull`` carries the byte counts the CLI's transfer bar shows."""
        self.record.progress = int(percent)
        self.events.emit(
            "progress",
            {
                "state": self.record.state.value,
                "progress": self.record.progress,
                "image": update.image,
                "bytes_done": update.bytes_done,
                "bytes_total": update.bytes_total,
            },
        )

    def progress_span(self, stage: Stage) -> tuple[int, int]:
        """Where ``stage`` starts and the next forward stage starts on the 0-100 bar."""
        following = FORWARD[FORWARD.index(stage) + 1]
        return STEPS[stage].progress, STEPS[following].progress

    def checkpoint(self) -> None:
        if self.record.cancel_requested:
            raise RunCancelled

    def reached(self, stage: Stage) -> bool:
        return any(timing.stage is stage for timing in self.record.stages)

    def migrations_image(self) -> str:
        return actions.migrations_image(self)

    # --- the run ------------------------------------------------------------------

    async def execute(self) -> RunRecord:
        try:
            await self._forward()
        except RunCancelled:
            self.log("cancelled before any service was stopped")
            await self.finish(Stage.CANCELLED)
        except Exception as err:
            if self.record.state.finished:  # journaled as ended: never rewritten
                _LOGGER.exception("after the end of run %s", self.record.update_id)
                await self._warn(f"after the run ended: {err}")
            else:
                await self._handle_failure(err)
        return self.record

    async def _forward(self) -> None:
        stage = next_forward(self, None)
        while stage is not None:
            await self.enter(stage)
            action = STEPS[stage].action
            assert action is not None
            await action(self)
            if stage.cancellable:
                self.checkpoint()
            stage = next_forward(self, stage)
        from supervisor.update.completion import complete_run

        await complete_run(self)

    async def _handle_failure(self, err: Exception) -> None:
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
        await self.undo(stage)

    async def undo(self, stage: Stage) -> None:
        """Run the undo the table gives ``stage`` (after a failure here or a crash there)."""
        undo = STEPS[stage].undo
        assert undo is not None, f"no undo for {stage}"
        try:
            await undo(self)
        except Exception as undo_err:
            await self.undo_failed(undo_err)

    async def undo_failed(self, err: Exception) -> None:
        """The undo itself raised (a full state disk, an engine gone): stop where we are.

        ``needs_intervention`` if that can still be journaled. If not even that can, the
        run stays unfinished on disk, and the manager keeps refusing starts until a
        restart lets recovery take it from the journal (see UpdateManager._finished).
        """
        from supervisor.update.rollback import needs_intervention

        _LOGGER.exception("the undo of run %s failed", self.record.update_id)
        if self.record.state.finished:
            return
        try:
            await needs_intervention(self, f"undoing the failure failed: {err}")
        except Exception:
            _LOGGER.exception(
                "run %s could not be ended; restart the sidecar to recover it",
                self.record.update_id,
            )

    async def _warn(self, warning: str) -> None:
        self.record.warnings = [*self.record.warnings, warning]
        try:
            await self.save()
        except Exception:  # the journal already says how the run ended
            _LOGGER.exception("could not journal a warning of run %s", self.record.update_id)

    async def finish(self, end: Stage) -> None:
        """End the run: journal, history, the single ``result`` event, callbacks."""
        if self.record.state.finished:
            return  # already finished: one result, never two
        before = self.record.model_copy()
        self.record.result = end
        self.record.finished_at = utcnow()
        if end is not Stage.NEEDS_INTERVENTION:  # the specs are only needed to undo
            self.record.retained = [
                r.model_copy(update={"old_spec": {}}) for r in self.record.retained
            ]
        if end is Stage.COMPLETED:
            self.record.progress = 100
        try:
            await self.enter(end)
        except BaseException:  # not journaled: the run has not ended, on disk or here
            for name in ("result", "finished_at", "retained", "progress", "state", "phase"):
                setattr(self.record, name, getattr(before, name))
            raise
        await asyncio.to_thread(self.deps.state.append_history, self.record)
        self.events.emit("result", result_payload(self.record))
        for callback in self.deps.on_finished:
            callback(self.record)


def result_payload(record: RunRecord) -> dict[str, object]:
    """The ``result`` event's data (docs/api.md), also replayed for ended runs."""
    return {
        "state": (record.result or record.state).value,
        "update_id": record.update_id,
        "from_version": record.from_version,
        "target_version": record.target_version,
        "error": record.error.model_dump(mode="json") if record.error else None,
    }
