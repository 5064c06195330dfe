"""In-memory fakes of the services the API drives, for API, client and CLI unit tests.

:class:`FakeUpdateService` implements :class:`supervisor.update.protocol.UpdateService` with the
decided semantics (single flight, already-current / downgrade / freeze refusals, cancel only
before ``stop``, events with increasing ids replayed then live, one ``result`` event) but no
Docker: a run walks through the stages on its own. With ``manual=True`` it waits before each
stage until the test calls :meth:`FakeUpdateService.advance`, so a test can hold a run in any
stage. :class:`FakeSnapshotService` implements the API's ``SnapshotService``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from packaging.version import Version
from pydantic import BaseModel

from supervisor.config import Settings
from supervisor.exceptions import (
    AlreadyCurrent,
    DowngradeRefused,
    InvalidVersion,
    NotCancellable,
    NotFound,
    NoUpdate,
    UpdateNotFound,
    UpdateRunning,
    UpdatesBlocked,
)
from supervisor.snapshots.const import SnapshotReason
from supervisor.update.models import RunError, RunEvent, RunRecord, StageTiming, StartRequest
from supervisor.update.stages import PHASE_TEXT, PROGRESS_AT, Stage

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
SCRIPT = (
    Stage.PREFLIGHT, Stage.PULL, Stage.VERIFY, Stage.STOP, Stage.BACKUP,
    Stage.MIGRATE, Stage.RECREATE, Stage.HEALTHCHECK,
)  # fmt: skip
SERVICES = {"app": "canopyos-app", "python_backend": "canopyos-backend"}


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "compose_project": "canopy",
        "services": {"app": "app", "python_backend": "app", "migrations": "migrations"},
        "signature_policy": "off",
        "admin_token": ADMIN,
        "read_token": READ,
        "max_body_bytes": 4096,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FakeRun:
    record: RunRecord
    events: list[RunEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class FakeUpdateService:
    def __init__(
        self,
        *,
        current: str = "1.4.1",
        releases: Sequence[str] = ("1.4.0", "1.4.1", "1.4.2", "1.5.0b1"),
        manual: bool = False,
        outcome: Stage = Stage.COMPLETED,
        fail_at: Stage | None = None,
        frozen: bool = False,
    ) -> None:
        self.current_version = current
        self.releases = list(releases)
        self.manual = manual
        self.outcome, self.fail_at, self.frozen = outcome, fail_at, frozen
        self.runs: dict[str, FakeRun] = {}
        self.order: list[str] = []
        self.subscribers = 0
        self.checks = 0
        self.starts: list[tuple[StartRequest, str]] = []
        self._steps = asyncio.Semaphore(0)

    # --- test controls ---------------------------------------------------------------
    def advance(self, steps: int = 1) -> None:
        """Let a manual run take ``steps`` more stages (the last step ends the run)."""
        for _ in range(steps):
            self._steps.release()

    def release(self) -> None:
        """Stop waiting for the test: runs go to their end on their own."""
        self.manual = False
        self.advance(len(SCRIPT) + 2)

    async def settle(self) -> None:
        """Let every task that can run, run (events emitted, states taken)."""
        for _ in range(20):
            await asyncio.sleep(0)

    def latest(self, channel: str | None = None) -> str:
        versions = [Version(v) for v in self.releases]
        if channel != "beta":
            versions = [v for v in versions if not v.is_prerelease]
        return str(max(versions))

    # --- UpdateService ---------------------------------------------------------------
    async def start(self, request: StartRequest, trigger: str = "api") -> RunRecord:
        self.starts.append((request, trigger))
        active = self._active()
        if active is not None:
            raise UpdateRunning(
                f"update {active.record.update_id} is running", update_id=active.record.update_id
            )
        target = self._check_target(request.target_version, request.channel, request.force)
        record = RunRecord.model_validate(
            {
                "update_id": secrets.token_hex(4),
                "trigger": trigger,
                "request": request,
                "from_version": self.current_version,
                "target_version": target,
            }
        )
        run = FakeRun(record=record)
        self.runs[record.update_id] = run
        self.order.append(record.update_id)
        self._enter(run, Stage.PREFLIGHT)
        run.task = asyncio.create_task(self._drive(run))
        return record.model_copy(deep=True)

    def status(self, update_id: str | None = None) -> RunRecord:
        return self._run(update_id).record.model_copy(deep=True)

    async def events(
        self, update_id: str | None = None, after: int | None = None
    ) -> AsyncIterator[RunEvent]:
        run = self._run(update_id)
        self.subscribers += 1
        try:
            position = after or 0
            while True:
                waiter = run.changed
                for event in [e for e in run.events if e.id > position]:
                    position = event.id
                    yield event
                    if event.event == "result":
                        return
                if run.record.state.finished and position >= len(run.events):
                    return
                await waiter.wait()
        finally:
            self.subscribers -= 1

    async def cancel(self, update_id: str) -> RunRecord:
        run = self._run(update_id)
        if not run.record.state.cancellable:
            raise NotCancellable(
                f"update {update_id} is in {run.record.state}: past the point of no return",
                update_id=update_id,
            )
        run.record.cancel_requested = True
        run.cancelled.set()
        return run.record.model_copy(deep=True)

    async def wait(self, update_id: str) -> RunRecord:
        run = self._run(update_id)
        if run.task is not None:
            await asyncio.shield(run.task)
        return run.record.model_copy(deep=True)

    async def version_info(self) -> dict[str, Any]:
        latest = self.latest()
        return {
            "current": {
                name: {
                    "tag": self.current_version,
                    "digest": digest(f"{name}:{self.current_version}"),
                }
                for name in SERVICES
            },
            "latest": {
                "version": latest,
                "services": {name: f"phyrron/{repo}:{latest}" for name, repo in SERVICES.items()},
            },
        }

    async def check(self) -> dict[str, Any]:
        self.checks += 1
        info = await self.version_info()
        return {**info["latest"], "checked_at": datetime.now(UTC)}

    async def plan(self, target_version: str | None = None, force: bool = False) -> dict[str, Any]:
        target = self._check_target(target_version, None, force)
        # The same shape as supervisor.update.views.plan.
        return {
            "current_version": self.current_version,
            "target_version": target,
            "source": "tags",
            "services": {
                name: {
                    "current_image": f"{name}:{self.current_version}",
                    "current_digest": digest(f"{name}:{self.current_version}"),
                    "current_version": self.current_version,
                    "target_image": f"{name}:{target}",
                    "target_digest": digest(f"{name}:{target}"),
                    "changes": target != self.current_version,
                    "signature": {"policy": "off", "verified": False, "reason": "policy off"},
                }
                for name in SERVICES
            },
            "migrations": True,
            "rehearsal": False,
            "estimated_backup_bytes": 1_000_000,
            "blockers": [],
            "would_run": True,
        }

    def history(self, limit: int = 50) -> list[RunRecord]:
        finished = [self.runs[i].record for i in reversed(self.order)]
        return [r.model_copy(deep=True) for r in finished if r.state.finished][:limit]

    # --- the run ---------------------------------------------------------------------
    def _run(self, update_id: str | None) -> FakeRun:
        if update_id is None:
            if not self.order:
                raise NoUpdate("no update has run yet")
            return self.runs[self.order[-1]]
        try:
            return self.runs[update_id]
        except KeyError:
            raise UpdateNotFound(f"no update with id {update_id!r}") from None

    def _active(self) -> FakeRun | None:
        runs = [self.runs[i] for i in self.order if not self.runs[i].record.state.finished]
        return runs[0] if runs else None

    def _check_target(self, target: str | None, channel: str | None, force: bool) -> str:
        if self.frozen:
            raise UpdatesBlocked("updates are frozen (state/FREEZE exists)")
        target = target or self.latest(channel)
        if target not in self.releases:
            raise InvalidVersion(f"no release {target[:40]!r}")
        if target == self.current_version and not force:
            raise AlreadyCurrent(f"{target} is already running")
        if Version(target) < Version(self.current_version) and not force:
            raise DowngradeRefused(f"{target} is older than {self.current_version}")
        return target

    async def _gate(self, run: FakeRun) -> bool:
        """Wait for the test's go (manual) or a loop turn; False when cancelled meanwhile."""
        if not self.manual:
            await asyncio.sleep(0)
            return not run.cancelled.is_set()
        step = asyncio.ensure_future(self._steps.acquire())
        cancel = asyncio.ensure_future(run.cancelled.wait())
        done, pending = await asyncio.wait({step, cancel}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if step in done and cancel in done:
            self._steps.release()  # not used: give the step back
        return cancel not in done

    async def _drive(self, run: FakeRun) -> None:
        for index, stage in enumerate(SCRIPT):
            if index and not await self._gate(run):
                self._finish(run, Stage.CANCELLED)
                return
            if index:
                self._enter(run, stage)
            if stage is Stage.PULL:
                for done in (40, 100):
                    self._emit(run, "progress", {
                        "stage": "pull", "progress": 5 + done // 5, "image": "app",
                        "bytes_done": done * 1000, "bytes_total": 100_000})  # fmt: skip
            self._emit(run, "log", {"message": f"{stage}: done"})
            if stage is self.fail_at:
                break
        if not await self._gate(run) and run.record.state.cancellable:
            self._finish(run, Stage.CANCELLED)
            return
        if self.outcome in (Stage.ROLLED_BACK, Stage.NEEDS_INTERVENTION):
            self._enter(run, Stage.ROLLBACK)
        self._finish(run, self.outcome)

    def _emit(self, run: FakeRun, kind: str, data: dict[str, Any]) -> None:
        run.events.append(RunEvent.model_validate(
            {"id": len(run.events) + 1, "event": kind, "data": data}))  # fmt: skip
        if kind == "log":
            run.record.log(data["message"])
        elif kind == "progress":
            run.record.progress = data["progress"]
        waker, run.changed = run.changed, asyncio.Event()
        waker.set()

    def _enter(self, run: FakeRun, stage: Stage) -> None:
        now = datetime.now(UTC)
        record = run.record
        if record.stages:
            record.stages[-1].finished_at, record.stages[-1].ok = now, True
        record.stages = [*record.stages, StageTiming(stage=stage, started_at=now)]
        record.state, record.phase = stage, PHASE_TEXT[stage]
        record.progress = PROGRESS_AT[stage]
        self._emit(run, "phase", {"state": str(stage), "message": record.phase,
                                  "progress": record.progress})  # fmt: skip

    def _finish(self, run: FakeRun, state: Stage) -> None:
        record = run.record
        now = datetime.now(UTC)
        if record.stages:
            record.stages[-1].finished_at = now
            record.stages[-1].ok = state is Stage.COMPLETED
        if state is not Stage.COMPLETED and state is not Stage.CANCELLED:
            stage = self.fail_at or record.state
            record.error = RunError(error_key="fake_failure", message="it broke", stage=stage)
        record.state, record.result, record.finished_at = state, state, now
        record.phase = PHASE_TEXT[state]
        record.progress = 100 if state is Stage.COMPLETED else record.progress
        if state is Stage.COMPLETED and record.target_version:
            self.current_version = record.target_version
        self._emit(run, "result", {"state": str(state), "message": record.phase,
                                   "update_id": record.update_id,
                                   "target_version": record.target_version})  # fmt: skip


class FakeManifest(BaseModel):
    """The fields of ``supervisor.snapshots.models.SnapshotManifest`` the API reads."""

    id: str
    reason: str
    run_id: str | None = None
    created_at: datetime
    images: dict[str, str]
    files: list[dict[str, Any]]


class FakeSnapshotService:
    def __init__(self, snapshots: Sequence[FakeManifest] = ()) -> None:
        self.snapshots = list(snapshots)
        self.restored: list[str] = []
        self.gate: asyncio.Event | None = None  # set to hold create/restore until the test says

    async def list(self) -> list[FakeManifest]:
        return sorted(self.snapshots, key=lambda m: m.created_at, reverse=True)

    async def get(self, snapshot_id: str) -> FakeManifest:
        for manifest in self.snapshots:
            if manifest.id == snapshot_id:
                return manifest
        raise NotFound(f"no snapshot {snapshot_id!r}")

    async def create(
        self,
        reason: SnapshotReason,
        run_id: str | None = None,
        images: Mapping[str, str] | None = None,
    ) -> FakeManifest:
        if self.gate is not None:
            await self.gate.wait()
        manifest = make_manifest(f"20250120T1234{len(self.snapshots):02d}Z_{secrets.token_hex(3)}",
                                 reason=reason, run_id=run_id, images=dict(images or {}))  # fmt: skip
        self.snapshots.append(manifest)
        return manifest

    async def restore(self, snapshot_id: str) -> FakeManifest:
        manifest = await self.get(snapshot_id)
        if self.gate is not None:
            await self.gate.wait()
        self.restored.append(snapshot_id)
        return manifest


def make_manifest(
    snapshot_id: str, reason: str = "pre-update", run_id: str | None = None,
    images: dict[str, str] | None = None,
) -> FakeManifest:  # fmt: skip
    return FakeManifest(
        id=snapshot_id, reason=reason, run_id=run_id, created_at=datetime.now(UTC),
        images=images or {}, files=[{"name": "postgres.dump", "size": 1000, "sha256": "ab"},
                                    {"name": "influx.tar", "size": 234, "sha256": "cd"}],
    )  # fmt: skip


def auth(token: str | None = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def make_app(
    updates: FakeUpdateService | None = None,
    snapshots: FakeSnapshotService | None = None,
    keepalive: float = 0.05,
    **settings: Any,
) -> Any:
    """The real API app around fakes (``Any``: keeps aiohttp out of this module's imports)."""
    from supervisor.api import ApiOptions, create_app

    return create_app(
        make_settings(**settings),
        updates if updates is not None else FakeUpdateService(),
        snapshots if snapshots is not None else FakeSnapshotService(),
        options=ApiOptions(sse_keepalive=keepalive),
    )
