"""The event log of one run: history for late subscribers, then live events.

Server-Sent Events need three things from it: every event has an id that
increases within the run, a subscriber that connects late first receives what
it missed (``Last-Event-ID`` resumes strictly after an id), and the stream ends
after the single ``result`` event. Progress events are throttled to whole
percent changes so a pull of many layers does not flood the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from supervisor.update.models import RunEvent

MAX_EVENTS = 5000

EventKind = Literal["phase", "progress", "log", "result"]


class EventLog:
    def __init__(self) -> None:
        self._events: list[RunEvent] = []
        self._next_id = 1
        self._changed = asyncio.Condition()
        self._last_progress = -1
        self.closed = False

    def emit(self, kind: EventKind, data: dict[str, Any]) -> RunEvent | None:
        if self.closed:
            return None
        if kind == "progress":
            percent = int(data.get("progress", 0))
            if percent == self._last_progress:
                return None
            self._last_progress = percent
        event = RunEvent(id=self._next_id, event=kind, data={"event": kind, **data})
        self._next_id += 1
        self._events.append(event)
        if len(self._events) > MAX_EVENTS:
            # Keep the first events (phases of the start) and the newest ones.
            del self._events[100 : len(self._events) - MAX_EVENTS + 100]
        if kind == "result":
            self.closed = True
        self._notify()
        return event

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(notify())
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    def snapshot(self) -> list[RunEvent]:
        return list(self._events)

    async def follow(self, after: int | None = None) -> AsyncIterator[RunEvent]:
        """Events with id > ``after`` (all when None), live, until ``result``."""
        last = after or 0
        while True:
            pending = [e for e in self._events if e.id > last]
            for event in pending:
                last = event.id
                yield event
                if event.event == "result":
                    return
            if self.closed and not pending:
                return
            async with self._changed:
                if not any(e.id > last for e in self._events) and not self.closed:
                    await self._changed.wait()


_PENDING: set[asyncio.Task[None]] = set()
