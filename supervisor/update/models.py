"""The run record: everything known about one update, as journaled and served.

One pydantic model is the journal entry (``state/current-run.json``), the
history line, and the body of ``GET /admin/update/status``: what the client
sees is exactly what survives a crash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.const import Role
from supervisor.signatures.models import SignatureVerdict
from supervisor.update.stages import Stage

LOG_TAIL_LINES = 50


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServiceTarget(_Model):
    """One managed service: where it is, and where the run takes it."""

    service: str
    role: Role
    container_ids: list[str] = Field(default_factory=list)
    current_image: str | None = None  # as the container was created (tag or digest)
    current_digest: str | None = None  # name@sha256:… : the rollback target
    current_version: str | None = None
    target_image: str | None = None  # name:tag the digest was resolved from
    target_digest: str | None = None  # name@sha256:… : all the run ever uses


class RetainedRecord(_Model):
    """An old container kept aside by ``recreate`` (see engine RetainedContainer)."""

    service: str
    name: str
    new_id: str
    old_id: str
    old_name: str
    old_restart_policy: dict[str, Any]
    old_was_running: bool


class StageTiming(_Model):
    stage: Stage
    started_at: datetime
    finished_at: datetime | None = None
    ok: bool | None = None


class RunError(_Model):
    error_key: str
    message: str
    stage: Stage


class StartRequest(_Model):
    """``POST /admin/update/start`` (CanopyOS): strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    target_version: str | None = None
    channel: Literal["stable", "beta"] | None = None
    force: bool = False


class RunRecord(_Model):
    update_id: str
    state: Stage = Stage.PREFLIGHT
    phase: str = ""
    progress: int = 0
    log_tail: list[str] = Field(default_factory=list)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    trigger: Literal["api", "cli", "auto", "recovery"] = "api"
    request: StartRequest = Field(default_factory=StartRequest)
    from_version: str | None = None
    target_version: str | None = None
    services: dict[str, ServiceTarget] = Field(default_factory=dict)
    rehearse: bool = False
    snapshot_id: str | None = None
    pre_rollback_snapshot_id: str | None = None
    stopped: list[str] = Field(default_factory=list)  # container ids the run stopped
    retained: list[RetainedRecord] = Field(default_factory=list)
    stages: list[StageTiming] = Field(default_factory=list)
    verdicts: list[SignatureVerdict] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: RunError | None = None
    result: Stage | None = None
    cancel_requested: bool = False

    def log(self, line: str) -> None:
        self.log_tail = [*self.log_tail, line][-LOG_TAIL_LINES:]

    def public(self) -> dict[str, Any]:
        """The status body: the CanopyOS fields first, then ours."""
        return self.model_dump(mode="json")


class LastGood(_Model):
    """The version the stack last ran healthy: the rollback target of a crash."""

    version: str | None
    images: dict[str, str]  # service → name@digest
    snapshot_id: str | None = None
    update_id: str | None = None
    recorded_at: datetime = Field(default_factory=utcnow)


class RunEvent(_Model):
    """One Server-Sent Event of a run; ``id`` increases per run."""

    id: int
    event: Literal["phase", "progress", "log", "result"]
    data: dict[str, Any]
