"""The container work directory: made with the exec user's ids in one exec, never left
behind by a failed or cancelled start, and no upload without a readable owner.

The engine is replaced at its Protocol edge by a recorder that answers the few commands
the work directory sends; :class:`ContainerWorkdir` itself is the product's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from supervisor.engine.models import ExecResult
from supervisor.engine.protocol import OutputSink
from supervisor.exceptions import CommandFailed, SnapshotError
from supervisor.snapshots.models import FileEntry
from supervisor.snapshots.workdir import ContainerWorkdir

pytestmark = pytest.mark.unit


class RecordingEngine:
    """``exec`` answers: the mkdir exec prints ``ids``; ``fail_mkdir`` / ``hang_mkdir``."""

    def __init__(self, ids: bytes = b"999\n999\n", id_again: bytes = b"") -> None:
        self.ids, self.id_again = ids, id_again
        self.commands: list[list[str]] = []
        self.uploads: list[tuple[int, int]] = []
        self.fail_mkdir = False
        self.hang_mkdir = False

    async def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        stdout: OutputSink | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> ExecResult:
        self.commands.append(list(argv))
        out = b""
        if "mkdir" in " ".join(argv):
            if self.hang_mkdir:
                await asyncio.Event().wait()
            if self.fail_mkdir:
                raise CommandFailed("mkdir: read-only file system", exit_code=1)
            out = self.ids
        elif list(argv) == ["sh", "-c", "id -u; id -g"]:
            out = self.id_again
        if stdout is not None and out:
            await stdout(out)
        return ExecResult(0, len(out), "", 0.0)

    async def put_file(self, container_id: str, local: Path, directory: str, **kw: Any) -> str:
        self.uploads.append((kw["uid"], kw["gid"]))
        return "ab" * 32


def _removed(engine: RecordingEngine, workdir: ContainerWorkdir) -> bool:
    return ["rm", "-rf", workdir.path] in engine.commands


async def test_the_exec_users_ids_come_with_the_directory(tmp_path: Path) -> None:
    engine = RecordingEngine()
    (tmp_path / "postgres.dump").write_bytes(b"x")
    async with ContainerWorkdir(engine, "cid", "t1") as work:  # type: ignore[arg-type]
        await work.upload(tmp_path / "postgres.dump", _entry(), None)
    assert engine.uploads == [(999, 999)]
    assert not any(argv == ["sh", "-c", "id -u; id -g"] for argv in engine.commands)
    assert _removed(engine, work)


async def test_without_ids_an_upload_asks_again_and_refuses_without_an_owner(
    tmp_path: Path,
) -> None:
    (tmp_path / "postgres.dump").write_bytes(b"x")
    engine = RecordingEngine(ids=b"", id_again=b"70\n70\n")
    async with ContainerWorkdir(engine, "cid", "t2") as work:  # type: ignore[arg-type]
        await work.upload(tmp_path / "postgres.dump", _entry(), None)
    assert engine.uploads == [(70, 70)]

    engine = RecordingEngine(ids=b"", id_again=b"sh: id: not found")
    with pytest.raises(SnapshotError, match="cannot tell the exec user"):
        async with ContainerWorkdir(engine, "cid", "t3") as work:  # type: ignore[arg-type]
            await work.upload(tmp_path / "postgres.dump", _entry(), None)
    assert engine.uploads == []
    assert _removed(engine, work)


async def test_a_failed_or_cancelled_start_leaves_no_directory() -> None:
    engine = RecordingEngine()
    engine.fail_mkdir = True
    work = ContainerWorkdir(engine, "cid", "t4")  # type: ignore[arg-type]
    with pytest.raises(CommandFailed):
        async with work:
            pass
    assert _removed(engine, work)

    engine = RecordingEngine()
    engine.hang_mkdir = True
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


def _entry() -> FileEntry:
    return FileEntry(name="postgres.dump", size=1, sha256="ab" * 32)
