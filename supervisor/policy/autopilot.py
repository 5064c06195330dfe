"""Unattended updates: the periodic loop that applies releases under the policy, the marks an
operator puts on versions, the self-freeze after a bad automatic run, and the notices.

Why it stands apart from the update manager: the manager starts a run when asked and refuses
what is unsafe; the autopilot decides *whether to ask*. It asks through the same
``UpdateManager.start`` as an operator (trigger ``auto``), so every guard (lock, freeze file,
``needs_intervention``, downgrade, signatures) holds for it too, and a run it started is
recovered, rolled back and reported exactly like any other.

Each tick decides with :func:`supervisor.policy.decide.decide` and records the decision with
its reason (readable in ``GET /admin/policy`` and ``supervisor plan``). Notices go to a sink
that never blocks (``supervisor.notify``): a slow notifier cannot delay a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from supervisor.exceptions import BadRequest, MarkNotFound, NotFrozen, SupervisorError
from supervisor.notify.events import Notice, NotifyEvent
from supervisor.notify.messages import notice_for_run, notice_frozen, notice_update_available
from supervisor.policy.decide import Rules, Situation, decide
from supervisor.policy.effective import EffectivePolicy, ServiceLabels
from supervisor.policy.state import Decision, Freeze, PolicyState, PolicyStore, VersionMark
from supervisor.policy.windows import any_open, next_opening
from supervisor.update.models import RunRecord, StartRequest, iso_z, utcnow
from supervisor.update.release import newer_than_running
from supervisor.update.stages import Stage

if TYPE_CHECKING:
    from supervisor.update.manager import UpdateManager

_LOGGER = logging.getLogger(__name__)
TICK_INTERVAL = 60.0  # the loop looks at the clock every minute: windows open on time
BAD_ENDS = {Stage.ROLLED_BACK, Stage.FAILED, Stage.NEEDS_INTERVENTION}
RUN_EVENTS = {
    Stage.COMPLETED: NotifyEvent.COMPLETED,
    Stage.ROLLED_BACK: NotifyEvent.ROLLED_BACK,
    Stage.FAILED: NotifyEvent.FAILED,
    Stage.NEEDS_INTERVENTION: NotifyEvent.NEEDS_INTERVENTION,
}
Clock = Callable[[], datetime]


class NoticeSink(Protocol):
    def publish(self, notice: Notice) -> None:
        """Queue ``notice`` for delivery; returns at once and never raises."""
        ...


class NoNotices:
    def publish(self, notice: Notice) -> None:
        _LOGGER.debug("notice (no notifier configured): %s", notice.title)


class Autopilot:
    def __init__(
        self,
        manager: UpdateManager,
        store: PolicyStore,
        policy: EffectivePolicy,
        notices: NoticeSink | None = None,
        clock: Clock = utcnow,
        created: Callable[[str], Any] | None = None,
    ) -> None:
        """``policy``: the configuration in force (a reload changes it between ticks).
        ``created``: ``async (version) -> datetime | None``, the candidate image's creation
        time (for ``maturity_from = image_created``)."""
        self.manager = manager
        self.store = store
        self.policy = policy
        self.rules: Callable[[], Rules] = policy.rules
        self.notices: NoticeSink = notices or NoNotices()
        self.clock = clock
        self._created = created
        self._lock = asyncio.Lock()
        self._state: PolicyState | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        manager.on_started.append(self._run_started)
        manager.before_start.append(self.read_labels)
        manager.deps.on_finished.append(self._run_finished)

    @property
    def project(self) -> str:
        return self.manager.settings.compose_project

    # --- state ---------------------------------------------------------------------

    async def state(self) -> PolicyState:
        if self._state is None:
            self._state = await asyncio.to_thread(self.store.load)
        return self._state

    async def _save(self) -> None:
        await asyncio.to_thread(self.store.save, await self.state())

    async def read_labels(self) -> None:
        """Per-service labels of the stack's containers into the policy (label over file)."""
        settings = self.manager.settings
        self.policy.observe(await self.manager.deps.engine.discover(settings.compose_project))

    async def reload(self) -> dict[str, Any]:
        """Re-read the policy file and the labels; PolicyInvalid keeps the old policy."""
        settings = self.manager.settings
        services = await self.manager.deps.engine.discover(settings.compose_project)
        return self.policy.reload(ServiceLabels(services))

    # --- the loop ------------------------------------------------------------------

    async def run_forever(self, interval: float = TICK_INTERVAL) -> None:
        """Tick every ``interval`` seconds (windows open on time) and right after every
        release check (a new release is decided on at once); a failing tick is logged and
        the loop goes on."""
        checked = self.manager.watch.checked
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(checked.wait(), interval)
            checked.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("auto-apply tick failed; next try in %.0f s", interval)

    async def tick(self) -> Decision:
        """Decide once (and start the run if the decision is to apply)."""
        async with self._lock:
            now, state = self.clock(), await self.state()
            release = self.manager.watch.release
            latest = release.version if release is not None else None
            try:
                await self.read_labels()
                rules = self.rules()
                current = (await self.manager.current_stack()).version
            except SupervisorError as err:
                return await self._record(
                    state,
                    Decision(at=now, last_at=now, action="wait", version=latest,
                             reason=f"the stack cannot be read ({err.message}): waiting"),
                )  # fmt: skip
            if latest is not None:
                state.seen(latest, now)
                self._announce(state, latest, current)
            candidate = rules.hard_pin or latest
            created = None
            if rules.maturity_from == "image_created" and candidate and self._created:
                created = await self._created(candidate)
            situation = Situation(now, current, latest, created, await self._busy())
            decision = decide(rules, state, situation)
            if decision.action == "apply" and decision.version is not None:
                decision = await self._apply(decision)
            return await self._record(state, decision)

    async def _record(self, state: PolicyState, decision: Decision) -> Decision:
        recorded = state.record(decision)
        if recorded is decision:  # a new line, not a repeat
            _LOGGER.info("auto-apply: %s", decision.reason)
        await self._save()
        return recorded

    async def _busy(self) -> str | None:
        manager = self.manager
        if manager.current_update_id is not None:
            return f"update {manager.current_update_id} is running"
        blocking = await asyncio.to_thread(manager.blocking_run)
        if blocking is not None:
            return f"update {blocking.update_id} needs intervention"
        if manager.settings.freeze_file.exists():
            return f"updates are frozen by {manager.settings.freeze_file}"
        return None

    async def _apply(self, decision: Decision) -> Decision:
        request = StartRequest(target_version=decision.version)
        try:
            record = await self.manager.start(request, trigger="auto")
        except SupervisorError as err:
            return replace_decision(
                decision, "wait", f"{decision.version}: the start was refused ({err.message})"
            )
        decision.update_id = record.update_id
        return decision

    def _announce(self, state: PolicyState, latest: str, current: str | None) -> None:
        """``update_available`` once per version, and only for one newer than what runs."""
        if latest in state.announced or not newer_than_running(latest, current):
            return
        release = self.manager.watch.release
        images = {n: str(ref) for n, ref in release.images.items()} if release else {}
        self.notices.publish(notice_update_available(latest, current, images, project=self.project))
        state.announced = [*state.announced, latest][-100:]

    # --- runs ----------------------------------------------------------------------

    def _run_started(self, record: RunRecord) -> None:
        self.notices.publish(notice_for_run(record, NotifyEvent.STARTED, project=self.project))

    def _run_finished(self, record: RunRecord) -> None:
        """Called by the run as it ends (also a recovered one): notices, marks, freeze."""
        end = record.result or record.state
        event = RUN_EVENTS.get(end)
        if event is not None:
            self.notices.publish(notice_for_run(record, event, project=self.project))
        if end in BAD_ENDS and record.target_version:
            task = asyncio.get_running_loop().create_task(self._went_bad(record.model_copy()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _went_bad(self, record: RunRecord) -> None:
        """Mark the version bad; after an automatic run, also freeze auto-apply."""
        end = (record.result or record.state).value
        version = record.target_version or "?"
        async with self._lock:
            state = await self.state()
            state.marks[version] = VersionMark(
                version=version, kind="bad", at=self.clock(), by=f"run {record.update_id}",
                update_id=record.update_id, result=end,
                note=record.error.message if record.error else "",
            )  # fmt: skip
            if record.trigger == "auto" and state.frozen is None:
                reason = f"the automatic update to {version} ended {end}"
                state.frozen = Freeze(
                    at=self.clock(), reason=reason, version=version, update_id=record.update_id
                )
                self.notices.publish(
                    notice_frozen(reason, version, record.update_id, project=self.project)
                )
                _LOGGER.warning("auto-apply frozen: %s", reason)
            try:
                await self._save()
            except OSError as err:  # kept in memory; the next save (each tick) retries
                _LOGGER.error("the bad mark of %s could not be saved yet: %s", version, err)

    async def settle(self) -> None:
        """Until the marks of ended runs are written (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- operator actions ----------------------------------------------------------

    async def mark(
        self,
        version: str,
        kind: str,
        by: str,
        note: str = "",
        hours: float | None = None,
    ) -> VersionMark | None:
        """Skip or snooze ``version``, or clear its mark (``clear``, also a ``bad`` one)."""
        async with self._lock:
            state = await self.state()
            now = self.clock()
            if kind == "clear":
                removed = state.marks.pop(version, None)
                if removed is None:
                    raise MarkNotFound(
                        f"{version} has no skip, snooze or bad mark to clear", version=version
                    )
                await self._save()
                return None
            if kind == "snoozed" and (hours is None or hours <= 0):
                raise BadRequest("hours: a snooze needs a number of hours greater than 0")
            mark = VersionMark(
                version=version, kind="skipped" if kind == "skipped" else "snoozed", at=now,
                by=by, note=note,
                until=now + timedelta(hours=hours) if kind == "snoozed" and hours else None,
            )  # fmt: skip
            state.marks[version] = mark
            await self._save()
            return mark

    async def unfreeze(self, by: str, note: str = "") -> Freeze:
        async with self._lock:
            state = await self.state()
            if state.frozen is None:
                raise NotFrozen("auto-apply is not frozen")
            lifted = state.frozen
            state.frozen = None
            now = self.clock()
            state.record(
                Decision(at=now, last_at=now, action="none", version=lifted.version,
                         reason=f"unfrozen by {by}" + (f": {note}" if note else ""))
            )  # fmt: skip
            await self._save()
            _LOGGER.warning("auto-apply unfrozen by %s: %s", by, note or "-")
            return lifted

    # --- views ---------------------------------------------------------------------

    async def view(self, decisions: int = 20) -> dict[str, Any]:
        """What ``GET /admin/policy`` and ``supervisor plan`` show."""
        rules, state, now = self.rules(), await self.state(), self.clock()
        opens = next_opening(rules.windows, now)
        return {
            "auto_apply": rules.auto_apply.value,
            "windows": [str(w) for w in rules.windows],
            "window_open": any_open(rules.windows, now),
            "next_window": iso_z(opens) if rules.windows else None,
            "maturity_hours": rules.maturity.total_seconds() / 3600,
            "maturity_from": rules.maturity_from,
            "hard_pin": rules.hard_pin,
            "frozen": state.frozen.model_dump(mode="json") if state.frozen else None,
            "marks": [
                m.model_dump(mode="json") for v, m in state.marks.items() if state.mark_of(v, now)
            ],
            "bad_versions": _bad(state),
            "decisions": [d.model_dump(mode="json") for d in state.decisions[-decisions:]][::-1],
            "config": self.policy.describe(),
        }

    async def summary(self) -> dict[str, Any]:
        """The short form for ``/admin/version`` and the badge."""
        state = await self.state()
        return {
            "mode": self.rules().auto_apply.value,
            "frozen": state.frozen.model_dump(mode="json") if state.frozen else None,
            "bad_versions": _bad(state),
        }


def replace_decision(decision: Decision, action: str, reason: str) -> Decision:
    return decision.model_copy(update={"action": action, "reason": reason})


def _bad(state: PolicyState) -> list[str]:
    return sorted(v for v, m in state.marks.items() if m.kind == "bad")


__all__ = ["Autopilot", "NoNotices", "NoticeSink"]
