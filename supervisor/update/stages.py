"""The stages of an update run and the states it can end in.

Every transition is written to the journal before it is announced, so the
stage in ``state/current-run.json`` is never behind what a client was told.
``stop`` is the point of no return for cancellation: from there on the old
version is down and the only ways out are forward or a rollback.
"""

from __future__ import annotations

from enum import StrEnum


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
        """From ``stop`` on, recovery after a crash must roll back."""
        return self in (
            Stage.STOP,
            Stage.BACKUP,
            Stage.MIGRATE,
            Stage.RECREATE,
            Stage.HEALTHCHECK,
            Stage.ROLLBACK,
        )


END_STATES = frozenset(
    {Stage.COMPLETED, Stage.FAILED, Stage.CANCELLED, Stage.ROLLED_BACK, Stage.NEEDS_INTERVENTION}
)
BEFORE_STOP = frozenset({Stage.PREFLIGHT, Stage.PULL, Stage.VERIFY, Stage.REHEARSE})

# Where each stage starts on the 0-100 progress bar.
PROGRESS_AT: dict[Stage, int] = {
    Stage.PREFLIGHT: 0,
    Stage.PULL: 5,
    Stage.VERIFY: 30,
    Stage.REHEARSE: 35,
    Stage.STOP: 50,
    Stage.BACKUP: 55,
    Stage.MIGRATE: 65,
    Stage.RECREATE: 75,
    Stage.HEALTHCHECK: 85,
    Stage.ROLLBACK: 90,
}

PHASE_TEXT: dict[Stage, str] = {
    Stage.PREFLIGHT: "Checking the engine, disk space and the target release",
    Stage.PULL: "Pulling images",
    Stage.VERIFY: "Verifying image signatures",
    Stage.REHEARSE: "Rehearsing migrations on a copy of the database",
    Stage.STOP: "Stopping application services",
    Stage.BACKUP: "Snapshotting databases",
    Stage.MIGRATE: "Running database migrations",
    Stage.RECREATE: "Recreating services with the new images",
    Stage.HEALTHCHECK: "Checking the new version's health",
    Stage.ROLLBACK: "Rolling back images and data",
    Stage.COMPLETED: "Update completed",
    Stage.FAILED: "Update failed; nothing was changed",
    Stage.CANCELLED: "Update cancelled; nothing was changed",
    Stage.ROLLED_BACK: "Update failed and was rolled back",
    Stage.NEEDS_INTERVENTION: "Rollback failed: operator intervention needed",
}
