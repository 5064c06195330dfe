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
# The longest version a request may name: an OCI tag is at most 128 characters, and the
# version becomes the tag. One limit for start, plan, the CLI and the OpenAPI document.
MAX_VERSION_LENGTH = 128
# What a requested version may look like: it becomes an image tag, so Docker's tag grammar
# (packaging alone takes "\x0c2" or " 1.2" for a version, which no tag is).
VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with ``Z``, as every time the API serves outside a model."""
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


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
    old_image: str = ""
    old_image_id: str = ""
    old_repo_digest: str | None = None
    # The old container's create spec (its environment included): journaled so a
    # rollback can recreate it if it was removed by hand; never served (public()).
    old_spec: dict[str, Any] = Field(default_factory=dict, repr=False)


class StageTiming(_Model):
    stage: Stage
    started_at: datetime
    finished_at: datetime | None = None
    ok: bool | None = None


class RunError(_Model):
    error_key: str
    message: str
    stage: Stage


class RollbackJournal(_Model):
    """Each rollback step, journaled *before* it acts, so a crash resumes it instead of
    starting it over (a second pre-rollback dump after the swap would hold the old data)."""

    new_stopped: bool = False
    pre_rollback: Literal["pending", "taken", "verified", "failed"] = "pending"
    pre_rollback_error: str | None = None
    snapshot_checked: bool = False
    restore_started: bool = False
    restored: bool = False
    # The live database renamed aside by the restore: the new version's data,
    # kept until the pre-rollback dump is verified (dropped then), else kept.
    replaced_database: str | None = None
    replaced_database_dropped: bool = False
    # The rollback swaps the run's rollback copy in instead of restoring the dump (decided
    # once); the replaced database is then dumped after the previous version is back.
    via_copy: bool = False
    influx_restored: bool = False  # (via_copy) InfluxDB restored on its own, after the swap
    replaced_snapshot_id: str | None = None  # that dump (reason pre-rollback)
    put_back: list[str] = Field(default_factory=list)  # old container ids put back


class Acknowledgement(_Model):
    """An admin took over a ``needs_intervention`` run; starts are allowed again."""

    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    by: str
    note: str = ""


class StartRequest(_Model):
    """``POST /admin/update/start`` (CanopyOS): strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    target_version: str | None = Field(None, max_length=MAX_VERSION_LENGTH, pattern=VERSION_PATTERN)
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
    # The rollback copy of the database (supervisor.snapshots.postgres_copy), tagged with
    # the run's id: ``making`` is journaled before it is made, ``ready`` once it is
    # complete (only a ready one is swapped in); any other end drops it by its tag.
    rollback_copy: Literal["none", "making", "ready"] = "none"
    rollback_copy_name: str | None = None
    # Whether the pre-update snapshot holds PostgreSQL: ``included`` (dumped while the app
    # was stopped), or dumped from the rollback copy after the app runs again: ``pending``
    # → ``added``; ``failed`` (the run rolls back), ``cancelled`` (a rollback ended it).
    snapshot_postgres: Literal["included", "pending", "added", "failed", "cancelled"] = "included"
    stopped: list[str] = Field(default_factory=list)  # container ids the run stopped
    retained: list[RetainedRecord] = Field(default_factory=list)
    stages: list[StageTiming] = Field(default_factory=list)
    verdicts: list[SignatureVerdict] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: RunError | None = None
    result: Stage | None = None
    cancel_requested: bool = False
    rollback: RollbackJournal | None = None
    kept: list[str] = Field(default_factory=list)  # artifacts kept for the operator
    acknowledged: Acknowledgement | None = None
    # start-first: the new containers start next to the old ones, which serve until the new
    # ones are healthy; its rollback keeps the database (supervisor.update.update_order).
    update_order: Literal["stop-first", "start-first"] = "stop-first"

    @property
    def blocking(self) -> bool:
        """Ended ``needs_intervention`` and nobody has acknowledged it yet."""
        return self.state is Stage.NEEDS_INTERVENTION and self.acknowledged is None

    def log(self, line: str) -> None:
        self.log_tail = [*self.log_tail, line][-LOG_TAIL_LINES:]

    def public(self) -> dict[str, Any]:
        """The status body: the CanopyOS fields first, then ours.

        Retained containers' create specs stay in the journal only: they hold the
        old containers' environment (database passwords)."""
        return self.model_dump(mode="json", exclude={"retained": {"__all__": {"old_spec"}}})


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
