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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from supervisor.config import Settings
from supervisor.const import Role
from supervisor.exceptions import (
    AlreadyCurrent,
    DowngradeRefused,
    InterventionRequired,
    NotAcknowledgeable,
    NotCancellable,
    NoUpdate,
    UpdateNotFound,
    UpdateRunning,
    UpdatesBlocked,
)
from supervisor.oplock import StackLease, StackLock
from supervisor.registry.protocol import RegistryClient
from supervisor.update.events import EventLog, event_log_path, replay
from supervisor.update.freshness import ReleaseWatch
from supervisor.update.image_config import image_config, labels_of
from supervisor.update.models import Acknowledgement, RunEvent, RunRecord, StartRequest
from supervisor.update.recovery import recover
from supervisor.update.release import (
    ManifestFetcher,
    Release,
    ReleaseResolver,
    parse_version,
    unknown_current_version,
)
from supervisor.update.run import RunDeps, UpdateRun, result_payload
from supervisor.update.stack import StackView, inspect_stack
from supervisor.update.stages import Stage
from supervisor.update.update_order import UpdateOrder
from supervisor.update.update_order import choose as choose_update_order

_LOGGER = logging.getLogger(__name__)
KEEP_EVENT_LOGS = 20
# Recovery waits this long for a CLI restore holding the stack lock to finish.
RECOVERY_LOCK_WAIT = 600.0


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
        stack_lock: StackLock | None = None,
    ) -> None:
        self.deps = deps
        self.settings = deps.settings
        self._registry = registry
        self._fetch_manifest = fetch_manifest
        self._lock = asyncio.Lock()  # guards the single-flight check-and-start
        self._runs: dict[str, _Active] = {}
        self._current: str | None = None
        self.watch = ReleaseWatch()  # the last release check: latest release or its error
        # One lock for every writer of the stack and its databases, across processes
        # (a CLI restore in the container is another process): runs and recovery here.
        self.stack_lock = stack_lock or StackLock(self.settings.state_dir)
        # Told of every run this manager starts, once it is journaled (notices).
        self.on_started: list[Callable[[RunRecord], None]] = []
        # Awaited before a start reads the stack (the policy reads the services' labels).
        self.before_start: list[Callable[[], Awaitable[None]]] = []

    def use_settings(self, settings: Settings) -> None:
        """A policy reload: runs that start from now on use ``settings``; a running run keeps
        the settings it started with (it has its own copy of the deps)."""
        self.settings = settings
        self.deps.settings = settings

    # --- lifecycle ------------------------------------------------------------------

    async def startup(self) -> RunRecord | None:
        """Recover an interrupted run before anything else may start.

        Holds the stack lock (waiting for a CLI restore that is still running)
        so that recovery and another writer never work on the database at once.
        """
        async with self._lock:
            journal = await asyncio.to_thread(self.deps.state.read_current)
            if journal is None:
                return None
            if journal.state.finished and journal.state is not Stage.COMPLETED:
                # Ended: only its history line may be missing; nothing touches the stack.
                return await recover(self.deps, self.settings.app_services, EventLog())
            async with self.stack_lock.hold("recovery", wait=RECOVERY_LOCK_WAIT):
                # A recovered run continues its event id sequence from state/events/.
                events = EventLog(self._event_path(journal.update_id))
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

    async def current_stack(self) -> StackView:
        """The stack as it runs now (strict: every managed service must be there)."""
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
        unknown = unknown_current_version(stack.version) if stack.version is not None else None
        if unknown is not None and not force:
            problems.append(unknown)
        elif stack.version is not None and not force:
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

    async def _settle_finished_run(self) -> None:
        """A run that already announced its result may still be cleaning up (old containers,
        retention) with the stack lock held: a start right after the result waits for that
        instead of answering 409 for a run the client was told has ended."""
        active = self._runs.get(self._current) if self._current is not None else None
        if active is None or active.task is None or not active.record.state.finished:
            return
        await asyncio.gather(asyncio.shield(active.task), return_exceptions=True)
        self._finished(active.record.update_id)

    def blocking_run(self) -> RunRecord | None:
        """The run that ended ``needs_intervention`` and awaits an acknowledgement, if any."""
        current = self.deps.state.read_current()
        if current is not None and current.blocking:
            return current
        return next((r for r in self.deps.state.history(limit=20) if r.blocking), None)

    async def acknowledge(self, update_id: str, by: str, note: str = "") -> RunRecord:
        """An admin took over a ``needs_intervention`` run: record who and when, unblock."""
        async with self._lock:
            record = self.status(update_id)
            if not record.blocking:
                raise NotAcknowledgeable(
                    f"update {update_id} is {record.state}"
                    + (" and already acknowledged" if record.acknowledged else "")
                    + "; only an unacknowledged needs_intervention run can be acknowledged",
                    update_id=update_id,
                )
            record.acknowledged = Acknowledgement(by=by, note=note)
            current = await asyncio.to_thread(self.deps.state.read_current)
            if current is not None and current.update_id == update_id:
                await asyncio.to_thread(self.deps.state.write_current, record)
            await asyncio.to_thread(self.deps.state.amend_history, record)
            _LOGGER.warning("update %s acknowledged by %s: %s", update_id, by, note or "-")
            return record

    async def start(self, request: StartRequest, trigger: str = "api") -> RunRecord:
        for prepare in self.before_start:
            await prepare()
        async with self._lock:
            await self._settle_finished_run()
            if self._current is not None:
                raise UpdateRunning(
                    f"update {self._current} is still running", update_id=self._current
                )
            blocking = await asyncio.to_thread(self.blocking_run)
            if blocking is not None:
                raise InterventionRequired(
                    f"update {blocking.update_id} ended needs_intervention and no update can "
                    f"start until an admin acknowledges it: inspect GET /admin/update/status"
                    f"?update_id={blocking.update_id} (the kept artifacts are listed there), "
                    f"then POST /admin/update/acknowledge or `supervisor acknowledge "
                    f"{blocking.update_id}`",
                    update_id=blocking.update_id,
                )
            stack = await self.current_stack()
            channel = request.channel or self.settings.channel.value
            release = await self.resolver(stack).resolve(request.target_version, channel)
            problems = self.blockers(stack, release, request.force)
            if problems:
                raise problems[0]
            order = await self.update_order(stack, release)
            record = stack.new_record(
                update_id=secrets.token_hex(6),
                request=request,
                release=release,
                trigger=trigger,
                rehearse=self.rehearsal_possible(stack),
                update_order=order.order,
            )
            if order.why_not:
                record.warnings = [order.why_not]
            # StackBusy (409) when a restore holds it; released when the run task ends.
            lease = await self.stack_lock.acquire("update", update_id=record.update_id)
            try:
                await asyncio.to_thread(self.deps.state.write_current, record)
            except BaseException:
                lease.release()
                raise
            active = _Active(record, EventLog(self._event_path(record.update_id)))
            run = UpdateRun(replace(self.deps), record, stack.layout, active.events)
            active.task = asyncio.create_task(
                _holding(lease, run.execute()), name=f"update-{record.update_id}"
            )
            active.task.add_done_callback(lambda _t: self._finished(record.update_id))
            self._current = record.update_id
            self._remember(active)
            _LOGGER.info(
                "update %s: %s -> %s", record.update_id, record.from_version, release.version
            )
            for callback in self.on_started:
                callback(record)
            return record

    async def update_order(self, stack: StackView, release: Release) -> UpdateOrder:
        """Stop-first, or start-first when every condition holds (update_order.py)."""

        async def migrations_labels() -> dict[str, str]:
            reference = release.images.get(self.settings.migrations_source())
            if reference is None or reference.digest is None:
                return {}
            return labels_of(await image_config(self._registry, reference, reference.digest))

        return await choose_update_order(self.settings, stack, release, migrations_labels)

    def rehearsal_possible(self, stack: StackView) -> bool:
        return (
            self.settings.rehearse
            and self.settings.service_for(Role.POSTGRES) is not None
            and stack.layout.migrations_container is not None
        )

    def _finished(self, update_id: str) -> None:
        active = self._runs.get(update_id)
        if active is not None and not active.record.state.finished:
            # The task ended without journaling an end (its undo failed too): the stack
            # is in an unknown state. Starts stay refused until a restart's recovery.
            _LOGGER.error(
                "update %s stopped without an end state; restart the sidecar to recover it",
                update_id,
            )
            return
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
        if active is None:  # a run from before this process: its log from state/events/
            log = replay(self._event_path(record.update_id), record, result_payload(record))
            active = _Active(record, log)
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
        from supervisor.update.views import check_answer

        channel = self.settings.channel.value
        try:
            stack = await self.current_stack()
            release = await self.resolver(stack).resolve(None, channel)
        except Exception as err:
            self.watch.failed(err)  # /admin/version reports it; the last good answer stays
            raise
        self.watch.succeeded(release, channel)
        return check_answer(self, stack)

    async def version_info(self) -> dict[str, Any]:
        from supervisor.update.views import version_info

        return await version_info(self)

    def _event_path(self, update_id: str) -> Path:
        return event_log_path(self.settings.state_dir, update_id)

    async def plan(self, target_version: str | None = None, force: bool = False) -> dict[str, Any]:
        from supervisor.update.views import plan

        return await plan(self, await self.current_stack(), target_version, force)

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.watch.latest()

    @property
    def current_update_id(self) -> str | None:
        return self._current


async def _holding(lease: StackLease, work: Coroutine[Any, Any, RunRecord]) -> RunRecord:
    """Run ``work`` and release the stack lock when it ends, however it ends."""
    try:
        return await work
    finally:
        lease.release()


__all__ = ["Stage", "UpdateManager"]
