"""The event log of one run: history for late subscribers, then live events, kept on disk.

Server-Sent Events need three things from it: every event has an id that increases within
the run, a subscriber that connects late first receives what it missed (``Last-Event-ID``
resumes strictly after an id), and the stream ends after the single ``result`` event.

The ids must also survive a restart of the sidecar, or a ``Last-Event-ID`` taken before it
would skip or repeat events after it. So a run's log is written append-only to
``state/events/<update_id>.jsonl`` as it is emitted (one JSON line per event, flushed to the
OS at once, fsync'd at every ``phase`` and ``result``): a restarted server replays exactly the
same ids, and a run recovered at start-up continues the sequence where the file ends. A
``kill -9`` loses nothing that was written; a power cut may lose the tail after the last
phase, and the sequence then continues from what is on disk.

Bounded: progress events are throttled to whole-percent changes, at most :data:`MAX_EVENTS`
events are kept per run (past that, ``log`` and ``progress`` events are left out, ``phase``
and ``result`` never are), and only the newest :data:`KEEP_FILES` runs keep a file; an older
run replays as its phase and result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from supervisor.update.models import RunEvent

if TYPE_CHECKING:
    from supervisor.update.models import RunRecord

_LOGGER = logging.getLogger(__name__)

MAX_EVENTS = 5000
KEEP_FILES = 100
EVENTS_DIR = "events"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

EventKind = Literal["phase", "progress", "log", "result"]
_DURABLE: frozenset[str] = frozenset({"phase", "result"})


def event_log_path(state_dir: Path, update_id: str) -> Path:
    """Where a run's events live; refuses an id that could leave the directory."""
    if not _SAFE_ID.match(update_id) or ".." in update_id:
        raise ValueError(f"not a run id usable as a file name: {update_id!r}")
    return state_dir / EVENTS_DIR / f"{update_id}.jsonl"


class EventLog:
    """Events of one run. With ``path``: loaded from it (if present) and appended to it."""

    def __init__(self, path: Path | None = None) -> None:
        self._events: list[RunEvent] = []
        self._next_id = 1
        self._changed = asyncio.Condition()
        self._last_progress = -1
        self._omitting = False
        self.closed = False
        self._path = path
        if path is not None:
            _cut_torn_tail(path)
            for event in _read(path):
                self._append(event)
            if not path.exists():
                _prepare(path)

    @classmethod
    def load(cls, path: Path) -> EventLog:
        """A read-only copy of a run's log as it is on disk (for replaying an ended run)."""
        log = cls()
        for event in _read(path):
            log._append(event)
        return log

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def _append(self, event: RunEvent) -> None:
        self._events.append(event)
        self._next_id = event.id + 1
        if event.event == "progress":
            self._last_progress = int(event.data.get("progress", self._last_progress))
        if event.event == "result":
            self.closed = True

    def emit(self, kind: EventKind, data: dict[str, Any]) -> RunEvent | None:
        if self.closed:
            return None
        if kind == "progress":
            percent = int(data.get("progress", 0))
            if percent == self._last_progress:
                return None
        if kind in ("log", "progress") and len(self._events) >= MAX_EVENTS:
            if self._omitting:
                return None
            self._omitting = True  # one note, then only phases and the result
            kind, data = "log", {"message": f"more than {MAX_EVENTS} events: log lines and "
                                 "progress are left out of this stream from here on"}  # fmt: skip
        payload = {"event": kind, **{k: v for k, v in data.items() if k != "event"}}
        event = RunEvent(id=self._next_id, event=kind, data=payload)
        self._write(event)
        self._append(event)
        self._notify()
        return event

    def _write(self, event: RunEvent) -> None:
        if self._path is None:
            return
        line = (event.model_dump_json() + "\n").encode()
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                if event.event in _DURABLE:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:  # the run matters more than its replay: go on in memory
            _LOGGER.warning("event log %s not written (%s); ids may change on restart",
                            self._path, err.strerror or err)  # fmt: skip
            self._path = None

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
        """Events with id > ``after`` (all when None), live, until ``result``.

        A subscriber that already has the ``result`` (``after`` at or past it) gets it again:
        a stream of an ended run always ends with its result, so a browser ``EventSource``
        that reconnected stops instead of reconnecting forever.
        """
        last = after or 0
        while True:
            pending = [e for e in self._events if e.id > last]
            for event in pending:
                last = event.id
                yield event
                if event.event == "result":
                    return
            if self.closed and not pending:
                result = next((e for e in reversed(self._events) if e.event == "result"), None)
                if result is not None:
                    yield result
                return
            async with self._changed:
                if not any(e.id > last for e in self._events) and not self.closed:
                    await self._changed.wait()


def replay(path: Path, record: RunRecord, result: dict[str, Any]) -> EventLog:
    """The log of a run this process is not running: from its file, ending in its result.

    Without a file (a run older than :data:`KEEP_FILES` runs, or from before logs were
    kept) it is the run's phase and result. A finished run whose file stops before the
    ``result`` (killed between the journal and the event) gets it appended in memory, with
    the next id: the same id on every replay, since nothing writes that file any more.
    """
    log = EventLog.load(path)
    if not log.snapshot():
        log.emit("phase", {"state": record.state.value, "message": record.phase})
    if record.state.finished and not log.closed:
        log.emit("result", result)
    return log


def _read(path: Path) -> list[RunEvent]:
    """The events in ``path``, in order; a torn last line (crash mid-write) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as err:
        _LOGGER.warning("event log %s unreadable: %s", path, err.strerror or err)
        return []
    events: list[RunEvent] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            event = RunEvent.model_validate_json(line)
        except ValueError:
            continue
        if not events or event.id > events[-1].id:
            events.append(event)
    return events


def _cut_torn_tail(path: Path) -> None:
    """Drop a half-written last line (a crash mid-write) so the next event starts a line."""
    try:
        with path.open("rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        return
    except OSError as err:
        _LOGGER.warning("event log %s: %s", path, err.strerror or err)


def _prepare(path: Path) -> None:
    """Create ``state/events`` (0700) and drop the files of all but the newest runs."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[KEEP_FILES - 1 :]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    except OSError as err:
        _LOGGER.warning("event log directory %s: %s", directory, err.strerror or err)


_PENDING: set[asyncio.Task[None]] = set()
