"""The one table of stages: zone, progress, phase text, the action and its undo.

The forward run walks this table in order; the failure handler runs the undo
of the stage that failed; start-up recovery runs the undo of the stage the
journal was in. Adding a stage is one row here plus its action. ``enter``
refuses any transition the table does not allow (:func:`allowed`), so a bug
cannot, say, walk a finished run back into ``rollback``.

Modelled on OpenStack TaskFlow's execute/revert atoms: each row's undo is
the revert of everything up to and including that stage, and every undo is
itself journaled step by step (see :mod:`supervisor.update.rollback`), so it
can be resumed after a crash instead of started over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.update import actions, rollback
from supervisor.update.stages import Stage, Zone

if TYPE_CHECKING:
    from supervisor.update.run import UpdateRun

Action = Callable[["UpdateRun"], Awaitable[None]]


def _always(_run: UpdateRun) -> bool:
    return True


def _rehearsing(run: UpdateRun) -> bool:
    return run.record.rehearse


def _migrating(run: UpdateRun) -> bool:
    return run.layout.migrations_container is not None


def _stopping(run: UpdateRun) -> bool:
    """start-first keeps the old version serving until the new one is healthy."""
    return run.record.update_order == "stop-first"


@dataclass(frozen=True)
class StageSpec:
    stage: Stage
    zone: Zone
    progress: int  # where the stage starts on the 0-100 bar
    phase: str  # the human text of the ``phase`` event and the status body
    action: Action | None = None  # forward work (None: not a forward stage)
    undo: Action | None = None  # what a failure here, or a crash here, runs
    applies: Callable[[UpdateRun], bool] = _always


_END_PROGRESS = -1  # end states keep the progress they reached (completed: 100)

STEPS: dict[Stage, StageSpec] = {
    spec.stage: spec
    for spec in (
        StageSpec(Stage.PREFLIGHT, Zone.UNTOUCHED, 0,
                  "Checking the engine, disk space and the target release",
                  actions.preflight, rollback.abandon),
        StageSpec(Stage.PULL, Zone.UNTOUCHED, 5, "Pulling images", actions.pull, rollback.abandon),
        StageSpec(Stage.VERIFY, Zone.UNTOUCHED, 30, "Verifying image signatures",
                  actions.verify, rollback.abandon),
        StageSpec(Stage.REHEARSE, Zone.UNTOUCHED, 35,
                  "Rehearsing migrations on a copy of the database",
                  actions.rehearse, rollback.abandon, _rehearsing),
        StageSpec(Stage.STOP, Zone.STOPPED, 50, "Stopping application services",
                  actions.stop_apps, rollback.restart_stopped, _stopping),
        StageSpec(Stage.BACKUP, Zone.STOPPED, 55, "Snapshotting databases",
                  actions.backup, rollback.restart_stopped),
        StageSpec(Stage.MIGRATE, Zone.CHANGED, 65, "Running database migrations",
                  actions.migrate, rollback.roll_back, _migrating),
        StageSpec(Stage.RECREATE, Zone.CHANGED, 75, "Recreating services with the new images",
                  actions.recreate, rollback.roll_back),
        StageSpec(Stage.HEALTHCHECK, Zone.CHANGED, 85, "Checking the new version's health",
                  actions.healthcheck, rollback.roll_back),
        StageSpec(Stage.ROLLBACK, Zone.UNDOING, 90, "Rolling back images and data",
                  None, rollback.roll_back),
        StageSpec(Stage.COMPLETED, Zone.ENDED, 100, "Update completed"),
        StageSpec(Stage.FAILED, Zone.ENDED, _END_PROGRESS, "Update failed; nothing was changed"),
        StageSpec(Stage.CANCELLED, Zone.ENDED, _END_PROGRESS,
                  "Update cancelled; nothing was changed"),
        StageSpec(Stage.ROLLED_BACK, Zone.ENDED, _END_PROGRESS,
                  "Update failed and was rolled back"),
        StageSpec(Stage.NEEDS_INTERVENTION, Zone.ENDED, _END_PROGRESS,
                  "Stopped half-way: operator intervention needed"),
    )
}  # fmt: skip

FORWARD: tuple[Stage, ...] = tuple(s for s, spec in STEPS.items() if spec.action is not None)

# Where each zone may go besides forward: the end states its undo can reach.
_EXITS: dict[Zone, frozenset[Stage]] = {
    Zone.UNTOUCHED: frozenset({Stage.FAILED, Stage.CANCELLED}),
    Zone.STOPPED: frozenset({Stage.FAILED, Stage.NEEDS_INTERVENTION}),
    Zone.CHANGED: frozenset({Stage.ROLLBACK, Stage.NEEDS_INTERVENTION}),
    Zone.UNDOING: frozenset({Stage.ROLLED_BACK, Stage.NEEDS_INTERVENTION}),
    Zone.ENDED: frozenset(),
}


def allowed(current: Stage | None, target: Stage) -> bool:
    """May a run in ``current`` (None: not started) enter ``target``?"""
    if current is None:  # journaled by start, killed before its first stage began
        return target is FORWARD[0] or target in _EXITS[Zone.UNTOUCHED]
    spec = STEPS[current]
    if target in _EXITS[spec.zone]:
        return True
    if current is Stage.HEALTHCHECK and target is Stage.COMPLETED:
        return True
    return (
        spec.zone in (Zone.UNTOUCHED, Zone.STOPPED, Zone.CHANGED)
        and target in FORWARD
        and FORWARD.index(target) > FORWARD.index(current)
    )


def next_forward(run: UpdateRun, current: Stage | None) -> Stage | None:
    """The forward stage after ``current`` that applies to this run (None: the end).

    Optional stages (rehearse, migrate; stop in a start-first run) are skipped only when
    they do not apply;
    no mandatory stage (backup!) can ever be skipped.
    """
    start = 0 if current is None else FORWARD.index(current) + 1
    return next((s for s in FORWARD[start:] if STEPS[s].applies(run)), None)


def phase_text(stage: Stage) -> str:
    return STEPS[stage].phase


def last_forward_stage(stages: list[Stage], fallback: Stage) -> Stage:
    """The stage whose undo a resumed run owes (the journal may already say ``rollback``)."""
    for stage in reversed(stages):
        if stage in FORWARD:
            return stage
    return fallback
