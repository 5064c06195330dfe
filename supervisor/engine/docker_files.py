"""Copy a file from the sidecar into a container, streamed, through the docker-proxy.

::

    snapshot folder ──read 4 MiB chunks (thread)──▶ tar stream made on the fly ──PUT
        /containers/{id}/archive?path=DIR──▶ docker-proxy ──▶ dockerd ──▶ DIR/name

Why a file and not stdin: ``pg_restore -j N`` (parallel) and ``influxd restore``
need a file they can seek in, and exec gives no stdin through aiodocker. Why
on the fly: a dump can be larger than the sidecar's memory, so the tar (one
header, the bytes, padding, two zero blocks) is generated while it is sent and
never assembled. The bytes are hashed as they are read, so the caller can
prove that what reached the container is what the manifest recorded.

The engine extracts the archive as root and keeps the header's owner and
mode: pass the uid/gid of the user that will read the file (``id -u`` in the
container) and it stays private to that user.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import tarfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import aiohttp

from supervisor.engine.docker_errors import engine_call
from supervisor.exceptions import (
    EngineError,
    EngineNotFound,
    EngineUnreachable,
    JobTimeout,
    LocalFileChanged,
)

if TYPE_CHECKING:
    from supervisor.engine.docker_engine import DockerEngine

_LOGGER = logging.getLogger(__name__)
CHUNK_BYTES = 4 * 1024 * 1024
BLOCK = tarfile.BLOCKSIZE  # 512


def tar_header(name: str, size: int, mode: int, uid: int, gid: int, mtime: float) -> bytes:
    """One regular-file header; PAX so that sizes over 8 GiB and long names are fine."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = size, mode, uid, gid
    info.mtime = int(mtime)
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT)


def tar_trailer(size: int) -> bytes:
    """Padding of the last data block plus the two zero blocks that end an archive."""
    return b"\0" * ((-size) % BLOCK) + b"\0" * (2 * BLOCK)


def _read_chunk(handle: IO[bytes], count: int, digest: hashlib._Hash) -> bytes:
    data = handle.read(count)
    digest.update(data)  # in the worker thread: hashlib releases the GIL on large buffers
    return data


async def _tar_stream(
    handle: IO[bytes], header: bytes, size: int, digest: hashlib._Hash, path: Path
) -> AsyncGenerator[bytes, None]:
    yield header
    sent = 0
    while sent < size:
        try:
            data = await asyncio.to_thread(
                _read_chunk, handle, min(CHUNK_BYTES, size - sent), digest
            )
        except OSError as err:
            raise LocalFileChanged(f"reading {path} failed while sending it: {err}") from err
        if not data:
            raise LocalFileChanged(f"{path} shrank while it was being sent ({sent} of {size})")
        sent += len(data)
        yield data
    yield tar_trailer(size)


_GO_MODE_DIR = 1 << 31  # os.ModeDir in the engine's path stat
_GO_MODE_SYMLINK = 1 << 27  # os.ModeSymlink


async def check_directory(engine: DockerEngine, container_id: str, container_dir: str) -> None:
    """Raise :class:`EngineNotFound` unless ``container_dir`` is a directory in the container.

    Asked with a HEAD before an upload because the engine refuses an archive
    for a missing container or directory without reading the body: it answers
    404 and closes the connection while the tar is still being sent, and the
    client then sees a dropped connection instead of the answer (a race that
    depends on timing). The HEAD gives the clear error every time.
    """
    where = f"container {container_id[:12]}:{container_dir}"
    client = engine.client
    async with engine_call(f"looking up {where}", engine.url):
        await client._check_version()
        # Not _query: aiodocker parses an error body as JSON, and a HEAD has none.
        async with client.session.head(
            client._canonicalize_url(f"containers/{container_id}/archive", versioned_api=True),
            params={"path": container_dir},
        ) as response:
            status = response.status
            encoded = response.headers.get("X-Docker-Container-Path-Stat", "")
    if status == 404:
        raise EngineNotFound(f"{where}: no such container or directory")
    if status == 403:
        return  # not granted for HEAD: the upload's own answer decides
    if status >= 400:
        raise EngineError(f"looking up {where}: the engine answered {status}")
    try:
        mode = int(json.loads(base64.b64decode(encoded)).get("mode", 0))
    except (ValueError, TypeError, AttributeError):
        return  # an engine without the stat header: the upload's own answer decides
    if not mode & (_GO_MODE_DIR | _GO_MODE_SYMLINK):  # a link: the upload follows it
        raise EngineNotFound(f"{where}: not a directory")


async def put_file(
    engine: DockerEngine,
    container_id: str,
    local_path: Path,
    container_dir: str,
    *,
    name: str | None = None,
    uid: int = 0,
    gid: int = 0,
    mode: int = 0o600,
    timeout: float | None = None,
) -> str:
    """Copy ``local_path`` to ``container_dir/name`` (the directory must exist).

    Returns the sha256 (hex) of the bytes sent.
    """
    target_name = name or local_path.name
    if "/" in target_name or target_name in ("", ".", ".."):
        raise ValueError(f"not a plain file name: {target_name!r}")
    action = f"copying {local_path.name} into container {container_id[:12]}:{container_dir}"
    try:
        async with asyncio.timeout(timeout):
            await check_directory(engine, container_id, container_dir)
    except TimeoutError as err:
        raise JobTimeout(f"{action}: the engine did not answer in {timeout:g} s") from err
    handle = await asyncio.to_thread(local_path.open, "rb")
    try:
        stat = os.fstat(handle.fileno())
        header = tar_header(target_name, stat.st_size, mode, uid, gid, stat.st_mtime)
        digest = hashlib.sha256()
        started = time.monotonic()
        body = _tar_stream(handle, header, stat.st_size, digest, local_path)
        try:
            async with (
                asyncio.timeout(timeout),
                engine_call(action, engine.url),
                engine.client._query(
                    f"containers/{container_id}/archive",
                    method="PUT",
                    params={"path": container_dir},
                    data=body,
                    headers={"Content-Type": "application/x-tar"},
                    timeout=aiohttp.ClientTimeout(),  # bounded by asyncio.timeout instead
                    chunked=True,
                ) as response,
            ):
                await response.read()
        except TimeoutError as err:
            raise JobTimeout(f"{action}: not done after {timeout:g} s") from err
        except EngineUnreachable as err:
            # The container or directory may have gone while the bytes were sent: the
            # engine then drops the connection (see check_directory). Say which.
            try:
                await check_directory(engine, container_id, container_dir)
            except EngineNotFound as gone:
                raise gone from err
            except EngineError:
                pass  # the engine is gone too: the first error says so
            raise
        finally:
            await body.aclose()
    finally:
        await asyncio.to_thread(handle.close)
    seconds = time.monotonic() - started
    _LOGGER.debug(
        "copied %s (%d bytes) into %s in %.1f s",
        local_path,
        stat.st_size,
        container_id[:12],
        seconds,
    )
    return digest.hexdigest()
