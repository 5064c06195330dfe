"""The last finished run and the active one: what a UI badge and ``/admin/version`` show.

One function, :func:`run_summary`, builds both objects, and ``/admin/version``,
``/admin/badge.json`` and ``/admin/badge.svg`` all render its answer, so the badge and the
version page cannot disagree. It reads only what survives a restart of the sidecar (the
manager's status and the journaled history), so the answer is the same before and after one.

``last_result`` is the last *finished* run (an end state), even while another run is active;
``running`` is the active run, or null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from supervisor.exceptions import NoUpdate
from supervisor.update.models import RunRecord

EndState = Literal["completed", "failed", "cancelled", "rolled_back", "needs_intervention"]


class _Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LastResult(_Summary):
    """The last finished run (null before the first one has ended)."""

    update_id: str
    state: EndState = Field(description="the end state the run reached")
    from_version: str | None = Field(description="the version the stack ran before the run")
    target_version: str | None = Field(description="the version the run went to (or tried)")
    finished_at: datetime = Field(description="when the run ended (UTC)")
    error_key: str | None = Field(description="why it did not complete; null when completed")


class RunningRun(_Summary):
    """The active run (null when none is)."""

    update_id: str
    state: str = Field(description="the stage it is in: preflight, pull, … rollback")
    progress: int = Field(ge=0, le=100)
    target_version: str | None
    started_at: datetime


class Blocked(_Summary):
    """A run ended ``needs_intervention``: no update starts until an admin acknowledges it."""

    update_id: str
    since: datetime = Field(description="when that run ended")
    message: str = Field(description="what to do: inspect the run, then acknowledge it")


class RunSummary(_Summary):
    last_result: LastResult | None
    running: RunningRun | None
    blocked: Blocked | None = Field(
        description="set while a needs_intervention run awaits POST /admin/update/acknowledge"
    )


class RunReader(Protocol):
    """What the summary needs of the update service (a part of ``UpdateService``)."""

    def status(self, update_id: str | None = None) -> RunRecord: ...

    def history(self, limit: int = 50) -> list[RunRecord]: ...

    def blocking_run(self) -> RunRecord | None: ...


def run_summary(updates: RunReader) -> RunSummary:
    try:
        latest: RunRecord | None = updates.status()
    except NoUpdate:
        latest = None
    running = latest if latest is not None and not latest.state.finished else None
    finished = [r for r in updates.history(1) if r.state.finished]
    if latest is not None and latest.state.finished:
        finished.append(latest)  # journaled as ended, maybe not yet appended to history
    last = max(finished, key=_ended_at, default=None)
    blocking = updates.blocking_run()
    return RunSummary(
        last_result=_last_result(last) if last is not None else None,
        running=_running(running) if running is not None else None,
        blocked=_blocked(blocking) if blocking is not None else None,
    )


def _blocked(record: RunRecord) -> Blocked:
    return Blocked(
        update_id=record.update_id,
        since=_ended_at(record),
        message=(
            f"update {record.update_id} ended needs_intervention; updates are blocked until "
            f"an admin acknowledges it (POST /admin/update/acknowledge or "
            f"`supervisor acknowledge {record.update_id}`)"
        ),
    )


def _ended_at(record: RunRecord) -> datetime:
    return record.finished_at or record.started_at


def _last_result(record: RunRecord) -> LastResult:
    return LastResult.model_validate(
        {
            "update_id": record.update_id,
            "state": (record.result or record.state).value,
            "from_version": record.from_version,
            "target_version": record.target_version,
            "finished_at": _ended_at(record),
            "error_key": record.error.error_key if record.error else None,
        }
    )


def _running(record: RunRecord) -> RunningRun:
    return RunningRun(
        update_id=record.update_id,
        state=record.state.value,
        progress=max(0, min(100, record.progress)),
        target_version=record.target_version,
        started_at=record.started_at,
    )
