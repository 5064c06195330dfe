"""Where a dump streamed out of a container lands: a file, hashed while it is written.

``Engine.exec`` hands stdout over in chunks of up to 32 KiB. Writing each one
with ``asyncio.to_thread`` would cost a thread hop per chunk, and writing in
the event loop would block it; so chunks are gathered into large buffers and
each buffer is hashed and written by a worker thread *while the next one is
received* (one write in flight at most, so memory stays at about two buffers).

A full disk is reported as :class:`DiskFull` (``disk_full``), other write errors
as :class:`BackupFailed`: never as ``OSError``, which the engine adapter would
mistake for a lost connection to Docker.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
from pathlib import Path
from typing import IO

from supervisor.exceptions import BackupFailed, DiskFull, SnapshotError
from supervisor.snapshots.models import FileEntry

_LOGGER = logging.getLogger(__name__)
BUFFER_BYTES = 8 * 1024 * 1024
HASH_CHUNK_BYTES = 4 * 1024 * 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_error(path: Path, err: OSError, written: int) -> SnapshotError:
    """The snapshot error an operator should see for a failed write."""
    if err.errno in _DISK_FULL:
        return DiskFull(
            f"the disk holding {path.parent} filled up while writing {path.name} "
            f"({written} bytes written); the incomplete snapshot was removed: free space "
            "or lower SUPERVISOR_RETENTION_KEEP",
            path=str(path.parent),
            written_bytes=written,
        )
    return BackupFailed(f"writing {path} failed: {err.strerror or err}", path=str(path))


class HashingFileSink:
    """An :data:`~supervisor.engine.OutputSink` that writes to ``path`` and hashes the bytes.

    Use as ``async with HashingFileSink(path) as sink: await engine.exec(…, stdout=sink)``;
    :attr:`entry` is set once the block ends cleanly (data fsynced). The file is created
    new (``x`` mode) and private (0600).
    """

    def __init__(self, path: Path, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.path = path
        self.entry: FileEntry | None = None
        self._buffer_bytes = buffer_bytes
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._written = 0
        self._digest = hashlib.sha256()
        self._handle: IO[bytes] | None = None
        self._pending: asyncio.Future[None] | None = None

    async def __aenter__(self) -> HashingFileSink:
        def open_private() -> IO[bytes]:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            return os.fdopen(fd, "wb", buffering=0)

        # Cancelled while the thread opens it: the file is closed when it arrives, not
        # left to the garbage collector (an unclosed file, and a ResourceWarning).
        opening = asyncio.ensure_future(asyncio.to_thread(open_private))
        try:
            self._handle = await asyncio.shield(opening)
        except OSError as err:
            raise write_error(self.path, err, 0) from err
        except asyncio.CancelledError:
            opening.add_done_callback(_close_result)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            await self._finish()
            return
        # Failing already: close once the write in flight is done (its error adds
        # nothing), even if this is cancelled meanwhile.
        handle, self._handle = self._handle, None
        if handle is None:
            return
        closing = asyncio.ensure_future(_close_after(self._pending, handle))
        await asyncio.shield(closing)

    async def __call__(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= self._buffer_bytes:
            await self._flush()

    @property
    def bytes_written(self) -> int:
        return self._written + self._buffered

    async def _flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        if not self._chunks:
            return
        data = b"".join(self._chunks)
        self._chunks, self._buffered = [], 0
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._write, data))

    def _write(self, data: bytes) -> None:
        assert self._handle is not None
        self._digest.update(data)
        view = memoryview(data)
        try:
            while view:
                count = self._handle.write(view)
                self._written += count
                view = view[count:]
        except OSError as err:
            raise write_error(self.path, err, self._written) from err

    async def _finish(self) -> None:
        assert self._handle is not None
        handle = self._handle
        try:
            await self._flush()
            await self._flush()  # waits for the last write
            try:
                await asyncio.to_thread(os.fsync, handle.fileno())
            except OSError as err:
                raise write_error(self.path, err, self._written) from err
        finally:
            self._handle = None
            await asyncio.shield(asyncio.to_thread(handle.close))  # closed even if cancelled
        self.entry = FileEntry(
            name=self.path.name, size=self._written, sha256=self._digest.hexdigest()
        )
        _LOGGER.debug("wrote %s: %d bytes", self.path, self._written)


async def _close_after(pending: asyncio.Future[None] | None, handle: IO[bytes]) -> None:
    if pending is not None:
        await asyncio.gather(pending, return_exceptions=True)
    await asyncio.to_thread(handle.close)


def _close_result(opening: asyncio.Future[IO[bytes]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def hash_file(path: Path) -> FileEntry:
    """Size and sha256 of a file (blocking: call it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(name=path.name, size=size, sha256=digest.hexdigest())
