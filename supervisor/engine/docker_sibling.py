"""The sibling of a database container on the engine, and where a path of ours is on the host.

What the sibling is for is drawn in :mod:`.sibling`. Every sibling carries its
tag, its database container's id and its Compose project as labels, so a
crashed operation's sibling is found and removed by the next one with the same
tag, and by :func:`sweep_siblings` (the first in-place read of a sidecar).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from supervisor.engine.docker_errors import engine_call
from supervisor.engine.docker_lifecycle import remove_with_volumes
from supervisor.engine.sibling import (
    SIBLING_LABEL,
    SIBLING_OF_LABEL,
    SIBLING_PROJECT_LABEL,
    sibling_spec,
)
from supervisor.exceptions import EngineConflict, EngineError, EngineNotFound

if TYPE_CHECKING:
    from supervisor.engine.docker_engine import DockerEngine

_LOGGER = logging.getLogger(__name__)
JSON = dict[str, Any]
# In /proc/self/mountinfo of a process in a Docker container: the files Docker mounts
# from the container's own directory (<docker root>/containers/<id>/hostname, …).
_OWN_ID_RE = re.compile(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)\s")
_MOUNTINFO = "/proc/self/mountinfo"


async def start_sibling(
    engine: DockerEngine, of: str, source: str, tag: str, lifetime: float
) -> str:
    """Create and start the sibling; a leftover with the same tag is removed first. On any
    failure nothing is left."""
    await remove_siblings(engine, of, tag)
    live = await engine.inspect_container(of)
    name, body = sibling_spec(live, source, tag, lifetime)
    sibling_id = await engine.create_container(body, name, {})
    try:
        await engine.start(sibling_id)
    except BaseException:
        await asyncio.shield(remove_with_volumes(engine, sibling_id))
        raise
    return sibling_id


async def remove_siblings(
    engine: DockerEngine, of: str, tag: str | None = None, wait: bool = True
) -> list[str]:
    """Remove the siblings of ``of`` (with ``tag``, or all of them); their names. Without
    ``wait`` a running sibling is only killed, and the engine removes it (AutoRemove)."""
    labels = [f"{SIBLING_OF_LABEL}={of}"] + ([f"{SIBLING_LABEL}={tag}"] if tag else [])
    removed = []
    for entry in await _listed(engine, labels, f"the siblings of {of[:12]}"):
        if not wait and entry["State"] == "running":
            await _kill(engine, entry.id)
        else:
            await remove_with_volumes(engine, entry.id)
        removed.append(_name(entry))
    return removed


async def _listed(engine: DockerEngine, labels: list[str], what: str) -> list[Any]:
    async with engine_call(f"listing {what}", engine.url):
        found: list[Any] = await engine.client.containers.list(
            all=True, filters=json.dumps({"label": labels})
        )
    return found


def _name(entry: Any) -> str:
    return str((entry["Names"] or [entry.id])[0]).lstrip("/")


async def _kill(engine: DockerEngine, container_id: str) -> None:
    try:
        async with engine_call(f"killing container {container_id[:12]}", engine.url):
            # TERM, which ``sleep`` dies of: for KILL the engine waits until the container
            # has stopped (0.25 s here), for any other signal it only delivers it.
            await engine.client.containers.container(container_id).kill(signal="SIGTERM")
    except (EngineNotFound, EngineConflict):  # gone, or stopped meanwhile (then removed)
        pass


async def sweep_siblings(engine: DockerEngine, project: str) -> list[str]:
    """Remove the project's siblings that cannot be in use: not running (created by an
    operation that crashed before starting it, or stopped), or whose database container
    is not running; their names. A running sibling of a running database is left alone:
    an operation may be using it, and its lifetime ends it anyway."""
    labels = [f"{SIBLING_PROJECT_LABEL}={project}"]
    removed = []
    for entry in await _listed(engine, labels, "the siblings of the stack"):
        of = str((entry["Labels"] or {}).get(SIBLING_OF_LABEL, ""))
        if entry["State"] == "running" and await _running(engine, of):
            continue
        await remove_with_volumes(engine, entry.id)
        removed.append(_name(entry))
    return removed


async def _running(engine: DockerEngine, container_id: str) -> bool:
    try:
        data = await engine.inspect_container(container_id)
    except EngineNotFound:
        return False
    return bool((data.get("State") or {}).get("Running"))


def own_container_id(mountinfo: str) -> str | None:
    """The id of the container this process runs in, from the files Docker mounts into
    it; None outside one. (Not the host name: a hex host name outside a container could
    name another container, and its mounts are not ours.)"""
    found = _OWN_ID_RE.search(mountinfo)
    return found.group(1) if found else None


def host_path(mounts: list[JSON], path: PurePosixPath) -> str | None:
    """Where ``path`` (inside the container) is on the host, from the container's mounts:
    the deepest mount that contains it (a bind mount's or a local volume's source)."""
    best: tuple[int, str] | None = None
    for mount in mounts:
        destination = PurePosixPath(str(mount.get("Destination") or "/-"))
        source = str(mount.get("Source") or "")
        if not source or not path.is_relative_to(destination):
            continue
        depth = len(destination.parts)
        if best is None or depth > best[0]:
            rest = path.relative_to(destination)
            best = (depth, str(PurePosixPath(source) / rest) if rest.parts else source)
    return best[1] if best else None


async def host_path_of(engine: DockerEngine, path: PurePosixPath) -> str | None:
    """Where ``path`` of this process is on the engine's host, if this process runs in a
    container of that engine with ``path`` mounted from the host; else None."""
    try:
        mountinfo = await asyncio.to_thread(_read_mountinfo)
    except OSError:
        mountinfo = ""
    own = own_container_id(mountinfo)
    if own is None:
        return None
    try:
        data = await engine.inspect_container(own)
    except EngineError as err:  # not a container of this engine, or not allowed
        _LOGGER.debug("cannot inspect the sidecar's own container %s: %s", own[:12], err)
        return None
    return host_path(list(data.get("Mounts") or []), path)


def _read_mountinfo() -> str:
    with open(_MOUNTINFO, encoding="utf-8", errors="replace") as handle:
        return handle.read()
