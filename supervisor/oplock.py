"""One exclusive lock for every writer of the stack and its databases, across processes.

::

    sidecar process (serve)                     `supervisor restore` in the container
    ├── update run ──────┐                      └── restore ──┐
    ├── start-up recovery ┼──▶ flock(state/stack.lock) ◀──────┘
    ├── HTTP restore ─────┤    state/stack.lock.json: who holds it
    └── manual snapshot ──┘    (operation, owner, pid, update_id, since)

Why a file lock: the CLI and the server are different processes, and an ``asyncio.Lock``
orders only one of them; a restore from the CLI while the server recovers a run would each
drop the other's temporary databases. ``flock`` is released by the kernel when the holder's
process dies (``kill -9`` included), so a crash never leaves the stack locked and there is no
stale-lock timeout to guess.

Every holder opens the lock file itself, so it has its own open file description: ``flock``
locks belong to that, not to the process, so two holders in one process exclude each other
as well. The lock is not re-entrant: work done *inside* an operation that holds it (the
update run's own snapshot and retention) must not take it again.

The holder file is information only, so a refusal can say who is in the way: written after
the lock is taken, removed before it is released, ignored while the lock is free (a killed
holder leaves it behind). Never delete ``stack.lock`` itself: a new file would be a new lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor.exceptions import StackBusy, StateError

_LOGGER = logging.getLogger(__name__)

LOCK_FILE = "stack.lock"
HOLDER_FILE = "stack.lock.json"
POLL_INTERVAL = 0.05  # seconds between attempts while waiting
# Even ``wait=0`` tries twice, this far apart: :meth:`StackLock.holder` probes the lock for
# a few microseconds, and that must not make a concurrent acquirer fail.
SETTLE = 0.02


class StackLease:
    """The lock, held until :meth:`release` (idempotent; from :meth:`StackLock.acquire`).

    For an operation that outlives the coroutine that took the lock (an HTTP job started by a
    handler): the job calls :meth:`release` in its ``finally``. A lease dropped without a
    release (a task cancelled before it started) releases itself when collected.
    """

    def __init__(self, lock: StackLock, fd: int, info: dict[str, Any]) -> None:
        self.lock = lock
        self.info = info
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock.holder_path)  # before unlocking: never the next holder's
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)  # also if a forked child shares the descriptor
            finally:
                os.close(fd)
        _LOGGER.info("stack lock released after %s", describe(self.info))

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):  # at interpreter exit logging may be gone
                _LOGGER.warning("stack lock of %s released on collection", describe(self.info))
                self.release()


class StackLock:
    """The stack lock in ``state_dir``; one instance per process (any number of holders)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self.holder_path = state_dir / HOLDER_FILE

    def hold(
        self,
        operation: str,
        *,
        owner: str = "server",
        update_id: str | None = None,
        wait: float = 0.0,
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with lock.hold("restore"): …``; raises StackBusy if not acquired within
        ``wait`` seconds. Released when the block is left: normally, by an error, or because
        the task was cancelled."""
        return self._held(operation, owner, update_id, wait)

    @contextlib.asynccontextmanager
    async def _held(
        self, operation: str, owner: str, update_id: str | None, wait: float
    ) -> AsyncIterator[None]:
        lease = await self.acquire(operation, owner=owner, update_id=update_id, wait=wait)
        try:
            yield
        finally:
            lease.release()

    async def acquire(
        self,
        operation: str,
        *,
        owner: str = "server",
        update_id: str | None = None,
        wait: float = 0.0,
    ) -> StackLease:
        """Take the lock (polling up to ``wait`` seconds) and return the lease to release.

        Nothing awaits between taking the lock and returning the lease, so a cancellation can
        only land while the lock is not held.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, SETTLE)
        while (fd := self._try_lock()) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._busy(operation)
            await asyncio.sleep(min(POLL_INTERVAL, remaining))
        info = {
            "operation": operation,
            "owner": owner,
            "pid": os.getpid(),
            "update_id": update_id,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        lease = StackLease(self, fd, info)
        try:
            self._write_holder(info)
        except OSError as err:  # information only: the lock itself is held
            _LOGGER.warning("cannot write %s: %s", self.holder_path, err.strerror)
        _LOGGER.info("stack lock taken for %s", describe(info))
        return lease

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (``operation``, ``owner``, ``pid``, ``update_id``,
        ``since``); None when it is free."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._read_holder()
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    # --- the files ------------------------------------------------------------------

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise StateError(f"cannot open the stack lock {self.path}: {err.strerror}") from err

    def _try_lock(self) -> int | None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _write_holder(self, info: dict[str, Any]) -> None:
        """Atomic (a reader never sees half of it) but not fsynced: after a crash the lock
        is free anyway and the file is ignored."""
        temporary = self.holder_path.with_name(f".{HOLDER_FILE}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        os.replace(temporary, self.holder_path)

    def _read_holder(self) -> dict[str, Any]:
        try:
            info = json.loads(self.holder_path.read_bytes())
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict):  # taken a moment ago, or the file is damaged
            return {"operation": "unknown", "owner": "unknown", "pid": None,
                    "update_id": None, "since": None}  # fmt: skip
        return info

    def _busy(self, operation: str) -> StackBusy:
        info = self.holder() or {"operation": "unknown", "owner": "unknown"}
        return StackBusy(
            f"cannot {operation} now: the stack is locked by {describe(info)}; "
            "try again when it has finished",
            operation=operation,
            holder=info,
            update_id=info.get("update_id"),  # the envelope carries it when a run holds it
        )


def describe(info: dict[str, Any]) -> str:
    """``update 1a2b3c4d5e6f (server, pid 7, since 2026-01-02T03:04:05Z)``."""
    what = str(info.get("operation") or "unknown")
    if info.get("update_id"):
        what += f" {info['update_id']}"
    who = [str(info.get("owner") or "unknown")]
    if info.get("pid"):
        who.append(f"pid {info['pid']}")
    if info.get("since"):
        who.append(f"since {info['since']}")
    return f"{what} ({', '.join(who)})"
