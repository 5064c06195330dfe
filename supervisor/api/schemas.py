"""Bodies the API itself defines (the run record and events come from ``supervisor.update``).

Handlers build their answers through these models and ``openapi.py`` derives the document's
schemas from the same classes, so the published document cannot drift from what is served.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.policy.state import Freeze
from supervisor.update.models import MAX_VERSION_LENGTH, RunRecord
from supervisor.update.stages import Stage
from supervisor.update.summary import Blocked, LastResult, RunningRun


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorEnvelope(_Body):
    """Every 4xx and 5xx answer."""

    error_key: str = Field(description="stable, for scripts: update_running, no_update …")
    message: str = Field(description="for people; may change between versions")
    update_id: str | None = Field(None, description="the run the error is about, if any")
    problems: list[str] | None = Field(
        None, description="policy_invalid: every problem of the file or labels, one each"
    )


class StartResponse(_Body):
    update_id: str
    state: Stage


class CancelRequest(_Body):
    model_config = ConfigDict(extra="forbid", strict=True)

    update_id: str = Field(max_length=128)


class AcknowledgeRequest(_Body):
    """``POST /admin/update/acknowledge``: who took over a ``needs_intervention`` run, and why."""

    model_config = ConfigDict(extra="forbid", strict=True)

    update_id: str = Field(max_length=128)
    note: str = Field(default="", max_length=1000, description="recorded in history")
    operator: str | None = Field(
        default=None, max_length=128, description="who acknowledges (default: the caller kind)"
    )


class VersionMarkRequest(_Body):
    """``POST /admin/policy/versions``: skip or snooze a version for auto-apply, or clear its
    mark (a skip, a snooze or the ``bad`` mark of a failed run)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: str = Field(min_length=1, max_length=MAX_VERSION_LENGTH)
    action: Literal["skip", "snooze", "clear"]
    hours: float | None = Field(
        default=None, gt=0, le=24 * 366, description="snooze: for this many hours"
    )
    note: str = Field(default="", max_length=1000)
    operator: str | None = Field(default=None, max_length=128)


class UnfreezeRequest(_Body):
    """``POST /admin/policy/unfreeze``: an operator lifts the self-freeze of auto-apply."""

    model_config = ConfigDict(extra="forbid", strict=True)

    note: str = Field(default="", max_length=1000)
    operator: str | None = Field(default=None, max_length=128)


class HistoryPage(_Body):
    runs: list[RunRecord] = Field(description="finished runs, newest first")


BadgeState = Literal[
    "none", "running", "completed", "failed", "cancelled", "rolled_back", "needs_intervention"
]


class AutoApplyStatus(_Body):
    """Unattended updates in one glance (``/admin/version``, the badge); details in
    ``GET /admin/policy``."""

    mode: Literal["off", "patch", "minor", "major"] = Field(description="the auto-apply policy")
    frozen: Freeze | None = Field(
        description="auto-apply stopped itself after a bad automatic run; null when not frozen"
    )
    bad_versions: list[str] = Field(description="versions whose run failed or rolled back")


class Badge(_Body):
    """The badge in one line, and the two objects of ``/admin/version`` it is drawn from."""

    state: BadgeState = Field(
        description="`running` while a run is active, else the last result; `none` before"
    )
    version: str | None = Field(None, description="the version the run goes (or went) to")
    time: datetime | None = Field(None, description="when it ended, or started if running")
    update_id: str | None = None
    label: str = "update"
    message: str
    color: str = Field(description="CSS colour: green, orange, red, blue or grey")
    last_result: LastResult | None = Field(description="exactly as in /admin/version")
    running: RunningRun | None = Field(description="exactly as in /admin/version")
    blocked: Blocked | None = Field(description="exactly as in /admin/version")
    auto_apply: AutoApplyStatus | None = Field(
        None, description="exactly as in /admin/version (null without unattended updates)"
    )


class Job(_Body):
    """A manual snapshot or an HTTP restore, running in the background."""

    job_id: str
    kind: Literal["snapshot", "restore"]
    state: Literal["running", "completed", "failed"]
    started_at: datetime
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: ErrorEnvelope | None = None


class SnapshotList(_Body):
    snapshots: list[dict[str, Any]] = Field(description="manifests, newest first")


class Health(_Body):
    status: Literal["ok"] = "ok"
