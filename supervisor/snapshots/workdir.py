"""A private scratch directory inside a database container, and commands that can be stopped.

Why the guard: when the sidecar stops reading an exec's output (the disk filled
up, a timeout, a cancellation), Docker does *not* end the process; it blocks
on its full stdout pipe and lives on, holding a database transaction. So every
long command is started as::

    sh -c 'echo $$ >"$0" && exec "$@"' /tmp/supervisor-<op>/<name>.pid  ARGV…

which records its pid and then *becomes* the command (the arguments are passed
as positional parameters, never pasted into the script, so nothing in them is
interpreted by the shell; secrets travel in the exec environment). On any
failure but the command's own exit the guard stops that pid (TERM, then KILL:
see ``_KILL_PID`` for why a plain KILL can crash the database server). The
directory also receives uploads and the InfluxDB backup, and is removed when
the operation ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from supervisor.engine.models import ExecResult
from supervisor.engine.protocol import Engine, OutputSink
from supervisor.exceptions import CommandFailed, SnapshotCorrupt, SnapshotError, SupervisorError
from supervisor.snapshots.const import CONTAINER_WORKDIR_PREFIX
from supervisor.snapshots.models import FileEntry

_LOGGER = logging.getLogger(__name__)
_TAG_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")
_RECORD_PID = 'echo $$ >"$0" && exec "$@"'
# The exec user's ids come with it (uploads are given to that user): one exec, not two.
# An image without ``id`` still gets its directory; an upload then asks again (and fails).
_FRESH_DIR = 'rm -rf "$0" && mkdir -m 700 "$0" && { id -u && id -g || true; }'
# TERM first, KILL only if it is still there 5 s later. Why not KILL at once: a process
# whose parent dies is re-parented to the container's PID 1, which in a database image is
# usually the postmaster itself; the postmaster treats any child that ends by a signal
# (or with a code above 1) as a crashed backend and restarts the whole server with crash
# recovery. Killing the leader of ``pg_restore --jobs=N`` did exactly that (its orphaned
# workers died of SIGPIPE); on TERM, pg_restore stops its workers itself, all exiting 1.
_KILL_PID = (
    'p="$(cat "$0" 2>/dev/null)"; rm -f "$0"; [ -n "$p" ] || exit 0; '
    'kill -TERM "$p" 2>/dev/null || exit 0; i=0; '
    'while kill -0 "$p" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done; '
    'kill -KILL "$p" 2>/dev/null; exit 0'
)
CLEANUP_TIMEOUT = 60.0


async def exec_output(
    engine: Engine, container_id: str, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> str:
    """stdout of a short command in a container (not guarded: for quick queries)."""
    out = bytearray()

    async def collect(chunk: bytes) -> None:
        out.extend(chunk)

    await engine.exec(container_id, argv, stdout=collect, env=env, timeout=CLEANUP_TIMEOUT)
    return out.decode("utf-8", "replace")


def _ids(output: str) -> tuple[int, int] | None:
    """``uid, gid`` from the output of ``id -u; id -g``, None unless exactly that."""
    words = output.split()
    if len(words) != 2 or not all(word.isdigit() for word in words):
        return None
    return int(words[0]), int(words[1])


class ContainerWorkdir:
    """``/tmp/supervisor-<tag>`` in one container, for one operation (``async with``)."""

    def __init__(self, engine: Engine, container_id: str, tag: str) -> None:
        if not _TAG_RE.fullmatch(tag):
            raise ValueError(f"unsafe work directory tag {tag!r}")
        self.engine = engine
        self.container_id = container_id
        self.path = f"{CONTAINER_WORKDIR_PREFIX}{tag}"
        self._ids: tuple[int, int] | None = None  # the exec user's uid, gid

    async def __aenter__(self) -> ContainerWorkdir:
        # A crashed earlier attempt may have left the directory: start clean (one exec).
        try:
            self._ids = _ids(await self.output(["sh", "-c", _FRESH_DIR, self.path]))
        except BaseException:  # cancelled or failed after the mkdir: never left behind
            await asyncio.shield(self._quietly(["rm", "-rf", self.path]))
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(self._quietly(["rm", "-rf", self.path]))

    def file(self, name: str) -> str:
        if not _TAG_RE.fullmatch(name):
            raise ValueError(f"unsafe file name {name!r}")
        return f"{self.path}/{name}"

    async def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stdout: OutputSink | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> ExecResult:
        """Run ``argv`` so that it is killed if this call does not complete normally."""
        pidfile = self.file(f"{name}.pid")
        wrapped = ["sh", "-c", _RECORD_PID, pidfile, *argv]
        try:
            return await self.engine.exec(
                self.container_id, wrapped, stdout=stdout, timeout=timeout, env=env, check=check
            )
        except CommandFailed:
            raise  # it has ended: its pid may already belong to another process
        except BaseException:
            await asyncio.shield(self.kill(name))
            raise

    async def output(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        """stdout of a short command (not guarded: for quick queries)."""
        return await exec_output(self.engine, self.container_id, argv, env)

    async def upload(self, local: Path, entry: FileEntry, timeout: float | None) -> str:
        """Copy a snapshot file in (owned by the exec user, mode 0600); its path in here.

        The bytes are hashed as they are sent: a file that changed since it was verified
        is refused here, before anything uses it.
        """
        ids = self._ids or _ids(await self.output(["sh", "-c", "id -u; id -g"]))
        if ids is None:
            raise SnapshotError(
                f"cannot tell the exec user of container {self.container_id[:12]} "
                "(`id -u` / `id -g` gave no numbers): the upload would not be readable"
            )
        uid, gid = ids
        sent = await self.engine.put_file(
            self.container_id, local, self.path, name=entry.name, uid=uid, gid=gid,
            mode=0o600, timeout=timeout,
        )  # fmt: skip
        if sent != entry.sha256:
            raise SnapshotCorrupt(f"{local} changed on disk while being restored")
        return self.file(entry.name)

    async def kill(self, name: str) -> None:
        """Kill the command started as ``name`` if it still runs (best effort, never raises)."""
        await self._quietly(["sh", "-c", _KILL_PID, self.file(f"{name}.pid")])

    async def _quietly(self, argv: list[str]) -> None:
        with contextlib.suppress(SupervisorError, OSError, TimeoutError):
            result = await self.engine.exec(
                self.container_id, argv, timeout=CLEANUP_TIMEOUT, check=False
            )
            if result.exit_code != 0:
                _LOGGER.debug(
                    "cleanup %s in %s: %s", argv[0], self.container_id[:12], result.stderr
                )
