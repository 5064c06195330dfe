"""The container work directory: made with the exec user's ids in one exec, never left
behind by a failed or cancelled start, and no upload without a readable owner.

The engine is replaced at its Protocol edge by the recording fake of the InfluxDB
command tests; :class:`ContainerWorkdir` itself is the product's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisor.exceptions import CommandFailed, SnapshotError
from supervisor.snapshots.models import FileEntry
from supervisor.snapshots.workdir import ContainerWorkdir
from tests.unit.test_snapshot_influx_v2 import FakeEngine

pytestmark = pytest.mark.unit


def _removed(engine: FakeEngine, workdir: ContainerWorkdir) -> bool:
    return ["rm", "-rf", workdir.path] in engine.commands()


def _dump(tmp_path: Path) -> tuple[Path, FileEntry]:
    path = tmp_path / "postgres.dump"
    path.write_bytes(b"x")
    return path, FileEntry(
        name="postgres.dump",
        size=1,
        sha256="2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
    )


async def test_the_exec_users_ids_come_with_the_directory(tmp_path: Path) -> None:
    engine = FakeEngine(ids=b"999\n999\n")
    path, entry = _dump(tmp_path)
    async with ContainerWorkdir(engine, "cid", "t1") as work:  # type: ignore[arg-type]
        await work.upload(path, entry, None)
    assert engine.owners == [(999, 999)]
    assert ["sh", "-c", "id -u; id -g"] not in engine.commands()
    assert _removed(engine, work)


async def test_without_ids_an_upload_asks_again_and_refuses_without_an_owner(
    tmp_path: Path,
) -> None:
    path, entry = _dump(tmp_path)
    engine = FakeEngine(ids=b"", id_again=b"70\n70\n")
    async with ContainerWorkdir(engine, "cid", "t2") as work:  # type: ignore[arg-type]
        await work.upload(path, entry, None)
    assert engine.owners == [(70, 70)]

    engine = FakeEngine(ids=b"", id_again=b"sh: id: not found")
    with pytest.raises(SnapshotError, match="cannot tell the exec user"):
        async with ContainerWorkdir(engine, "cid", "t3") as work:  # type: ignore[arg-type]
            await work.upload(path, entry, None)
    assert engine.owners == []
    assert _removed(engine, work)


async def test_a_failed_or_cancelled_start_leaves_no_directory() -> None:
    engine = FakeEngine(mkdir_error=CommandFailed("mkdir: read-only file system", exit_code=1))
    work = ContainerWorkdir(engine, "cid", "t4")  # type: ignore[arg-type]
    with pytest.raises(CommandFailed):
        async with work:
            pass
    assert _removed(engine, work)

    engine = FakeEngine(mkdir_hangs=True)
    work = ContainerWorkdir(engine, "cid", "t5")  # type: ignore[arg-type]

    async def enter() -> None:
        async with work:
            pass

    task = asyncio.ensure_future(enter())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _removed(engine, work)
