"""The stages of an update run, the states it can end in, and the zone each stage is in.

Every transition is written to the journal before it is announced, so the
stage in ``state/current-run.json`` is never behind what a client was told.
``stop`` is the point of no return for cancellation: from there on the old
version is down and the only ways out are forward or a rollback.

The *zone* of a stage says what a failure there has to undo, and it is the
only place that says so: the forward run, the failure handler and start-up
recovery all ask :data:`supervisor.update.steps.STEPS`, which is keyed by
these stages and carries each stage's zone, action and undo.
"""

from __future__ import annotations

from enum import StrEnum


class Zone(StrEnum):
    """What a failure in a stage leaves behind, and therefore how it is undone."""

    UNTOUCHED = "untouched"  # nothing changed yet: clean up, end ``failed``
    STOPPED = "stopped"  # services down, data unchanged: start them again, end ``failed``
    CHANGED = "changed"  # data or images may have changed: roll back
    UNDOING = "undoing"  # the rollback itself: resume it from its journal
    ENDED = "ended"  # a finished run is never rewritten


class Stage(StrEnum):
    PREFLIGHT = "preflight"
    PULL = "pull"
    VERIFY = "verify"
    REHEARSE = "rehearse"
    STOP = "stop"
    BACKUP = "backup"
    MIGRATE = "migrate"
    RECREATE = "recreate"
    HEALTHCHECK = "healthcheck"
    ROLLBACK = "rollback"
    # end states
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"
    NEEDS_INTERVENTION = "needs_intervention"

    @property
    def finished(self) -> bool:
        return self in END_STATES

    @property
    def cancellable(self) -> bool:
        """Cancel is honoured up to the start of ``stop``."""
        return self in BEFORE_STOP

    @property
    def touches_stack(self) -> bool:
        """From ``stop`` on, recovery after a crash must restart or roll back."""
        return not self.finished and self not in BEFORE_STOP


END_STATES = frozenset(
    {Stage.COMPLETED, Stage.FAILED, Stage.CANCELLED, Stage.ROLLED_BACK, Stage.NEEDS_INTERVENTION}
)
BEFORE_STOP = frozenset({Stage.PREFLIGHT, Stage.PULL, Stage.VERIFY, Stage.REHEARSE})
