"""The update manager: single-flight runs, validation up front, status and events.

It implements :class:`~supervisor.update.protocol.UpdateService` for the API
and the CLI. ``start`` validates everything a client can get wrong (version,
channel, downgrade, freeze, hard pin, a run already active) *before* it returns,
so those are 4xx answers, not failed runs; then the run proceeds in a
background task and is followed through :meth:`status` and :meth:`events`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from supervisor.const import Role
from supervisor.exceptions import (
    AlreadyCurrent,
    DowngradeRefused,
    NotCancellable,
    NoUpdate,
    UpdateNotFound,
    UpdateRunning,
    UpdatesBlocked,
)
from supervisor.registry.protocol import RegistryClient
from supervisor.update.events import EventLog
from supervisor.update.models import RunEvent, RunRecord, StartRequest
from supervisor.update.recovery import recover
from supervisor.update.release import ManifestFetcher, Release, ReleaseResolver, parse_version
from supervisor.update.run import RunDeps, UpdateRun
from supervisor.update.stack import StackView, inspect_stack
from supervisor.update.stages import Stage

_LOGGER = logging.getLogger(__name__)
KEEP_EVENT_LOGS = 20


@dataclass
class _Active:
    record: RunRecord
    events: EventLog
    task: asyncio.Task[RunRecord] | None = None


class UpdateManager:
    def __init__(
        self,
        deps: RunDeps,
        registry: RegistryClient,
        fetch_manifest: ManifestFetcher | None = None,
    ) -> None:
        self.deps = deps
        self.settings = deps.settings
        self._registry = registry
        self._fetch_manifest = fetch_manifest
        self._lock = asyncio.Lock()  # guards the single-flight check-and-start
        self._runs: dict[str, _Active] = {}
        self._current: str | None = None
        self._latest: dict[str, Any] | None = None
        self._recovery: asyncio.Task[RunRecord | None] | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def startup(self) -> RunRecord | None:
        """Recover an interrupted run before anything else may start."""
        async with self._lock:
            events = EventLog()
            record = await recover(self.deps, self.settings.app_services, events)
            if record is not None:
                self._remember(_Active(record, events))
            return record

    async def shutdown(self) -> None:
        """Leave a running run to recovery: cancel the task, keep the journal."""
        for active in self._runs.values():
            if active.task is not None and not active.task.done():
                active.task.cancel()
                await asyncio.gather(active.task, return_exceptions=True)

    # --- starting -------------------------------------------------------------------

    async def _stack(self) -> StackView:
        return await inspect_stack(self.deps.engine, self.settings, self.deps.state)

    def resolver(self, stack: StackView) -> ReleaseResolver:
        return ReleaseResolver(self._registry, stack.repositories, self._fetch_manifest)

    def blockers(self, stack: StackView, release: Release, force: bool) -> list[Exception]:
        problems: list[Exception] = []
        if self.settings.freeze_file.exists():
            problems.append(
                UpdatesBlocked(f"updates are frozen ({self.settings.freeze_file} exists)")
            )
        pin = self.settings.hard_pin
        if pin is not None and parse_version(pin) != parse_version(release.version):
            problems.append(UpdatesBlocked(f"the stack is hard-pinned to {pin}"))
        if stack.version is not None and not force:
            current, target = parse_version(stack.version), parse_version(release.version)
            if target < current:
                problems.append(
                    DowngradeRefused(
                        f"{release.version} is older than the running {stack.version}; "
                        "use force to downgrade"
                    )
                )
            elif target == current:
                problems.append(
                    AlreadyCurrent(f"{release.version} is already running; use force to redo it")
                )
        return problems

    async def start(self, request: StartRequest, trigger: str = "api") -> RunRecord:
        async with self._lock:
            if self._current is not None:
                raise UpdateRunning(
                    f"update {self._current} is still running", update_id=self._current
                )
            stack = await self._stack()
            channel = request.channel or self.settings.channel.value
            release = await self.resolver(stack).resolve(request.target_version, channel)
            problems = self.blockers(stack, release, request.force)
            if problems:
                raise problems[0]
            record = stack.new_record(
                update_id=secrets.token_hex(6),
                request=request,
                release=release,
                trigger=trigger,
                rehearse=self.rehearsal_possible(stack),
            )
            await asyncio.to_thread(self.deps.state.write_current, record)
            active = _Active(record, EventLog())
            run = UpdateRun(self.deps, record, stack.layout, active.events)
            active.task = asyncio.create_task(run.execute(), name=f"update-{record.update_id}")
            active.task.add_done_callback(lambda _t: self._finished(record.update_id))
            self._current = record.update_id
            self._remember(active)
            _LOGGER.info(
                "update %s: %s -> %s", record.update_id, record.from_version, release.version
            )
            return record

    def rehearsal_possible(self, stack: StackView) -> bool:
        return (
            self.settings.rehearse
            and self.settings.service_for(Role.POSTGRES) is not None
            and stack.layout.migrations_container is not None
        )

    def _finished(self, update_id: str) -> None:
        if self._current == update_id:
            self._current = None

    def _remember(self, active: _Active) -> None:
        self._runs[active.record.update_id] = active
        while len(self._runs) > KEEP_EVENT_LOGS:
            oldest = next(iter(self._runs))
            if oldest == self._current:
                break
            del self._runs[oldest]

    # --- following ------------------------------------------------------------------

    def status(self, update_id: str | None = None) -> RunRecord:
        if update_id is None:
            if self._current is not None:
                return self._runs[self._current].record
            if self._runs:
                return list(self._runs.values())[-1].record
            history = self.deps.state.history(limit=1)
            if history:
                return history[0]
            raise NoUpdate("no update has run yet")
        if update_id in self._runs:
            return self._runs[update_id].record
        record = self.deps.state.find(update_id)
        if record is None:
            raise UpdateNotFound(f"no update with id {update_id!r}", update_id=update_id)
        return record

    async def events(
        self, update_id: str | None = None, after: int | None = None
    ) -> AsyncIterator[RunEvent]:
        record = self.status(update_id)
        active = self._runs.get(record.update_id)
        if active is None:  # a run from before this process: its result only
            active = _Active(record, _replayed(record))
        async for event in active.events.follow(after):
            yield event

    async def cancel(self, update_id: str) -> RunRecord:
        record = self.status(update_id)
        if record.state.finished or not record.state.cancellable:
            raise NotCancellable(
                f"update {record.update_id} is in {record.state}: past the point where it "
                "can be cancelled",
                update_id=record.update_id,
            )
        record.cancel_requested = True
        await asyncio.to_thread(self.deps.state.write_current, record)
        return record

    async def wait(self, update_id: str) -> RunRecord:
        active = self._runs.get(update_id)
        if active is not None and active.task is not None:
            return await asyncio.shield(active.task)
        return self.status(update_id)

    def history(self, limit: int = 50) -> list[RunRecord]:
        return self.deps.state.history(limit=limit)

    # --- read-only views ------------------------------------------------------------

    async def check(self) -> dict[str, Any]:
        stack = await self._stack()
        channel = self.settings.channel.value
        release = await self.resolver(stack).resolve(None, channel)
        self._latest = {
            "version": release.version,
            "channel": channel,
            "services": {s: str(ref) for s, ref in release.images.items()},
            "update_available": stack.version is None
            or parse_version(release.version) > parse_version(stack.version),
        }
        return self._latest

    async def version_info(self) -> dict[str, Any]:
        from supervisor.update.views import version_info

        return await version_info(self, await self._stack())

    async def plan(self, target_version: str | None = None, force: bool = False) -> dict[str, Any]:
        from supervisor.update.views import plan

        return await plan(self, await self._stack(), target_version, force)

    @property
    def latest(self) -> dict[str, Any] | None:
        return self._latest

    @property
    def current_update_id(self) -> str | None:
        return self._current


def _replayed(record: RunRecord) -> EventLog:
    """Events for a run this process did not see: its phase and result."""
    log = EventLog()
    log.emit("phase", {"state": record.state.value, "message": record.phase})
    if record.state.finished:
        log.emit(
            "result",
            {
                "state": (record.result or record.state).value,
                "update_id": record.update_id,
                "from_version": record.from_version,
                "target_version": record.target_version,
                "error": record.error.model_dump(mode="json") if record.error else None,
            },
        )
    return log


__all__ = ["Stage", "UpdateManager"]
