"""The dump file sink: a cancellation at any moment leaves no file open (an unclosed file
is a leaked descriptor, and a ResourceWarning that surfaced in an unrelated test)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from pathlib import Path

from supervisor.snapshots.sink import HashingFileSink


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settle() -> None:
    for _ in range(50):  # the threads finish, their done-callbacks run
        await asyncio.sleep(0.01)
    gc.collect()


async def test_cancelled_while_opening_or_closing_leaves_no_file_open(tmp_path: Path) -> None:
    await _settle()
    before = _open_files()
    for i in range(20):
        sink = HashingFileSink(tmp_path / f"opening-{i}")
        entering = asyncio.ensure_future(sink.__aenter__())
        await asyncio.sleep(0)  # the thread is opening the file
        entering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await entering

    for i in range(20):
        sink = HashingFileSink(tmp_path / f"failing-{i}", buffer_bytes=1)
        await sink.__aenter__()
        await sink(b"x" * 4096)  # a write is in flight
        leaving = asyncio.ensure_future(sink.__aexit__(RuntimeError, RuntimeError(), None))
        await asyncio.sleep(0)
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaving

    await _settle()
    assert _open_files() <= before


async def test_a_clean_block_writes_hashes_and_closes(tmp_path: Path) -> None:
    await _settle()
    before = _open_files()
    async with HashingFileSink(tmp_path / "dump", buffer_bytes=3) as sink:
        for chunk in (b"ab", b"cd", b"e"):
            await sink(chunk)
    assert sink.entry is not None
    assert (sink.entry.size, (tmp_path / "dump").read_bytes()) == (5, b"abcde")
    await _settle()
    assert _open_files() <= before
