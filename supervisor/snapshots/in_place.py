"""Giving a snapshot file to a database container: read in place through a sibling, else uploaded.

::

    readable(engine, hosts, container, tag, folder, entry)
      where is <folder> on the engine's host?  (SUPERVISOR_BACKUP_HOST_DIR, or the
      │                                         sidecar's own mount of backup_dir)
      ├─ known: start the sibling (supervisor.engine.sibling) holding <folder>/<file>
      │         read-only, while the work directory is made; find its root from
      │         inside the database container
      │         → /proc/<pid>/root/supervisor-snapshot-<tag>/<file>   (no copy at all)
      └─ unknown, or any of that fails (a warning says why):
                upload the file into the work directory, hashed on the way

Both give a path that the database container's own tools can open and seek in
(``pg_restore --jobs`` needs that). The sibling gets TERM when the caller is
done, whatever happened, and the engine removes it. One left by a crash is
removed by the next operation with the same tag (the tag is derived from the
target), or by the sweep of this sidecar's first in-place read if it cannot be
in use (:class:`HostFolders`), and ends by itself after
:func:`sibling_lifetime` in any case. The
file is not hashed again on the in-place path: the caller re-hashed every
snapshot file against its manifest just before, and a restore then verifies
every row against the checksums recorded at dump time, which a changed file
cannot pass.

Measured on two CPUs (bench/snapshot_bench.py, docs/snapshots.md): the upload
of a 165 MB dump took 0.68 s of a 4.7 s restore; the sibling takes about
0.15 s, while the work directory and the target database are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from supervisor.engine.protocol import Engine
from supervisor.engine.sibling import FIND_SCRIPT, sibling_target
from supervisor.exceptions import CommandFailed, EngineError, SupervisorError
from supervisor.snapshots.models import FileEntry
from supervisor.snapshots.together import together
from supervisor.snapshots.workdir import ContainerWorkdir, exec_output

_LOGGER = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 1800.0  # SUPERVISOR_BACKUP_TIMEOUT's default
FIND_ATTEMPTS = 10  # see _find
FIND_PAUSE = 0.05
AUTO = "auto"  # SUPERVISOR_BACKUP_HOST_DIR: find it from the sidecar's own mounts
OFF = "off"  # always upload


class HostFolders:
    """Where the backups folder is on the engine's host: from the setting, or asked of the
    engine once (the sidecar's own container's mount of it); None when not known. When
    it is known, the first question also removes the ``project``'s siblings that a
    crashed sidecar left and that cannot be in use (the engine's ``sweep_siblings``)."""

    def __init__(
        self, engine: Engine, backup_dir: Path, setting: str = AUTO, project: str = ""
    ) -> None:
        self.engine = engine
        self.project = project
        self.backup_dir = Path(os.path.abspath(backup_dir))  # a string operation, no I/O
        self.setting = setting
        self._root: asyncio.Future[str | None] | None = None

    async def source(self, folder: Path) -> str | None:
        """The host path of ``folder`` (inside the backups folder), or None."""
        root = await self._host_root()
        if root is None:
            return None
        try:
            rest = PurePosixPath(folder).relative_to(self.backup_dir)
        except ValueError:
            return None
        return str(PurePosixPath(root) / rest) if rest.parts else root

    async def _host_root(self) -> str | None:
        # Asked once and shared; shielded, so a caller's cancellation does not cancel the
        # shared answer. A failed question is asked again next time.
        if self._root is None or self._root.cancelled():
            self._root = asyncio.ensure_future(self._find_root())
        root = self._root
        try:
            return await asyncio.shield(root)
        except SupervisorError as err:
            if self._root is root:
                self._root = None
            _LOGGER.warning("cannot tell where %s is on the host: %s", self.backup_dir, err)
            return None

    async def _find_root(self) -> str | None:
        if self.setting == OFF:
            return None
        if self.setting == AUTO:
            found = await self.engine.host_path_of(PurePosixPath(self.backup_dir))
            if found is None:
                _LOGGER.info(
                    "%s is not a mount of the sidecar's container: snapshot files are "
                    "uploaded into the database container to restore them "
                    "(SUPERVISOR_BACKUP_HOST_DIR)", self.backup_dir,
                )  # fmt: skip
                return None
        else:
            found = self.setting
        try:
            if swept := await self.engine.sweep_siblings(self.project):
                _LOGGER.info("removed siblings left by a crash: %s", ", ".join(swept))
        except SupervisorError as err:
            _LOGGER.warning("could not remove siblings left by a crash: %s", err)
        return found


@contextlib.asynccontextmanager
async def readable(
    engine: Engine,
    hosts: HostFolders | None,
    container_id: str,
    tag: str,
    folder: Path,
    entry: FileEntry,
    timeout: float | None,
) -> AsyncIterator[tuple[ContainerWorkdir, str]]:
    """A work directory ``tag`` in the container, and the path of ``folder/entry`` there,
    for the block. The sibling starts while the work directory is made; when the block
    ends both go (the sibling is killed, and the engine removes it: nothing waits)."""
    folder_source = await hosts.source(folder) if hosts is not None else None
    source = f"{folder_source}/{entry.name}" if folder_source is not None else None
    local = folder / entry.name
    async with contextlib.AsyncExitStack() as stack:
        if source is not None:
            stack.push_async_callback(_shielded_removal, engine, container_id, tag)
        work, path = await together(
            stack.enter_async_context(ContainerWorkdir(engine, container_id, tag)),
            _open(engine, container_id, tag, source, local, sibling_lifetime(timeout)),
        )
        if path is None:
            path = await work.upload(local, entry, timeout)
        yield work, path


def sibling_lifetime(timeout: float | None) -> float:
    """How long a sibling may live: longer than any operation that uses it (a restore's
    two ``pg_restore`` runs and its verification, each bounded by ``timeout``), short
    enough that one left by a crashed sidecar does not linger for days."""
    return 3 * (timeout or DEFAULT_TIMEOUT) + 300


async def _open(
    engine: Engine,
    container_id: str,
    tag: str,
    source: str | None,
    local: Path,
    lifetime: float,
) -> str | None:
    """The file's path through a started sibling, or None (then nothing is left running)."""
    if source is None:
        return None
    try:
        await engine.start_sibling(container_id, source, tag, lifetime)
        script = ["sh", "-c", FIND_SCRIPT, sibling_target(tag), local.name]
        found, identity = await asyncio.gather(
            _find(engine, container_id, script), asyncio.to_thread(_identity, local)
        )
    except (EngineError, CommandFailed, OSError) as err:
        await _remove(engine, container_id, tag)
        why = err.message if isinstance(err, SupervisorError) else str(err)
        _LOGGER.warning("reading %s in place failed, uploading it: %s", local.name, why)
        return None
    paths = [path for path, seen in _candidates(found) if seen == identity]
    if not paths:
        await _remove(engine, container_id, tag)
        _LOGGER.warning(
            "container %s cannot read %s through the sibling's root (another user, a "
            "security profile that forbids it, or not the same file: %s); uploading it",
            container_id[:12], source, found.strip()[:300] or "nothing found",
        )  # fmt: skip
        return None
    _LOGGER.info("%s is read in place (%s)", local.name, paths[0])
    return f"{paths[0]}/{local.name}"


async def _find(engine: Engine, container_id: str, script: list[str]) -> str:
    """What ``FIND_SCRIPT`` prints, asked again while it finds nothing: the engine answers
    a start before the sibling's process has become ``sleep``, and until then (the
    runtime's own init, not dumpable) its root cannot be read. Seen once in about ten
    runs of the demo; a few tenths of a second at most."""
    for _ in range(FIND_ATTEMPTS - 1):
        if found := (await exec_output(engine, container_id, script)).strip():
            return found
        await asyncio.sleep(FIND_PAUSE)
    return await exec_output(engine, container_id, script)


def _identity(path: Path) -> tuple[int, int, int]:
    """Size, inode and mtime (seconds): the same through a bind mount of the file."""
    info = path.stat()
    return info.st_size, info.st_ino, int(info.st_mtime)


def _candidates(found: str) -> list[tuple[str, tuple[int, int, int] | None]]:
    """(path, identity) of each line ``FIND_SCRIPT`` printed; None if it is not one."""
    out: list[tuple[str, tuple[int, int, int] | None]] = []
    for line in found.splitlines():
        words = line.split()
        if not words or not words[0].startswith("/proc/"):
            continue
        numbers = words[1:]
        ok = len(numbers) == 3 and all(n.isdigit() for n in numbers)
        out.append((words[0], (int(numbers[0]), int(numbers[1]), int(numbers[2])) if ok else None))
    return out


async def _shielded_removal(engine: Engine, container_id: str, tag: str) -> None:
    await asyncio.shield(_remove(engine, container_id, tag))


async def _remove(engine: Engine, container_id: str, tag: str) -> None:
    try:
        await engine.remove_siblings(container_id, tag, wait=False)
    except SupervisorError as err:
        _LOGGER.warning("could not remove the sibling %s of %s: %s", tag, container_id[:12], err)
