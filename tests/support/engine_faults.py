"""Faults in what the product depends on: a registry that goes away mid-pull, a Docker
engine that restarts.

Two tools for the real-engine failure scenarios (tests/docker/test_second_order_engine.py):

* :class:`ThrottledProxy`: a TCP proxy in a thread, in front of the test registry on its
  own 127.0.0.1 port. Image references written with that port are pulled by the engine
  through it (the engine trusts any loopback registry over plain HTTP), so one test can
  slow its pulls down and then cut the registry off without touching anybody else's.
* :func:`publish_with_fresh_layer`: a release whose image has one layer no engine has
  seen, written straight to the registry, so that pulling it really moves bytes.
* :func:`restart_engine`: stops ``dockerd`` (the one ``scripts/testenv up`` started; its
  pid is in ``.testenv/dockerd.pid``) and starts it again the same way, then starts the
  containers the restart took down that have no restart policy of their own (the
  registry, docker-proxies of running test sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from supervisor.registry.protocol import MANIFEST_MEDIA_TYPES, compute_digest
from tests.support.dockercli import docker, engine_available, owner_labels
from tests.support.signer_registry import RegistryWriter

# --- a registry that can be slowed down and cut off ------------------------------------------


class ThrottledProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; downstream bytes at ``rate`` bytes/s.

    ``rate`` None is full speed. :meth:`cut` closes the listener and aborts every open
    connection: from then on the port refuses connections, as a registry that went away.
    """

    CHUNK = 16 * 1024

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rate: float | None = None
        self.bytes_down = 0  # registry → engine, counted as forwarded
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False

    def __enter__(self) -> ThrottledProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._cut_now(), self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut_now(self) -> None:
        self._cut = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._cut:
            client_w.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, up_w}
        try:
            await asyncio.gather(
                self._pump(client_r, up_w, throttled=False),
                self._pump(up_r, client_w, throttled=True),
            )
        finally:
            for writer in (client_w, up_w):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, throttled: bool
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while not self._cut:
                data = await reader.read(self.CHUNK)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
                if throttled:
                    self.bytes_down += len(data)
                    if self.rate:
                        await asyncio.sleep(len(data) / self.rate)
            if not self._cut and writer.can_write_eof():
                writer.write_eof()


# --- a Docker engine restart --------------------------------------------------------------------


@dataclass
class EngineRestart:
    """What one restart took and put back."""

    stopped_after: float = 0.0  # seconds from the stop signal until dockerd exited
    down_for: float = 0.0  # seconds from the stop signal until `docker info` answered again
    old_pid: int = 0
    new_pid: int = 0
    restarted_by_hand: list[str] = field(default_factory=list)  # names started again


def _pid_is_dockerd(pid: int) -> bool:
    """A live dockerd (a zombie is not: PID 1 here does not always reap its orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, _, rest = stat.partition("(")[2].rpartition(")")
    return name == "dockerd" and rest.split()[:1] != ["Z"]


def _running_without_restart_policy() -> list[str]:
    """Ids of running containers the engine will not bring back after a restart itself."""
    ids = docker("ps", "-q", "--no-trunc").split()
    if not ids:
        return []
    data = json.loads(docker("inspect", *ids, check=False) or "[]")
    return [
        c["Id"]
        for c in data
        if (c["HostConfig"].get("RestartPolicy") or {}).get("Name", "no") in ("", "no")
    ]


def restart_engine(
    state_dir: Path, *, sig: int = signal.SIGTERM, keep_down: Collection[str] = ()
) -> EngineRestart:
    """Stop the ``dockerd`` that ``scripts/testenv up`` started and start it the same way.

    ``sig`` SIGTERM is ``systemctl restart docker`` (the daemon stops every container
    first), SIGKILL an engine crash. Containers that were running and have no restart
    policy (the registry, docker-proxies of live test sessions, database fixtures) are
    started again once the engine is back; ``keep_down`` names container ids not to touch.
    Always leaves an engine running, also when stopping took too long.
    """
    pid_file = state_dir / "dockerd.pid"
    pid = int(pid_file.read_text().strip())
    if not _pid_is_dockerd(pid):
        raise AssertionError(f"{pid_file} says {pid}, which is not a running dockerd")
    bring_back = set(_running_without_restart_policy()) - set(keep_down)
    result = EngineRestart(old_pid=pid)
    started = time.monotonic()
    os.kill(pid, sig)
    deadline = started + 60
    while _pid_is_dockerd(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_is_dockerd(pid):  # a stuck shutdown: what an operator's second attempt does
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while _pid_is_dockerd(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    result.stopped_after = time.monotonic() - started
    # Exactly as scripts/testenv starts it (appending to the log instead of truncating it).
    log = state_dir / "dockerd.log"
    out = subprocess.run(
        ["bash", "-c", f'nohup dockerd --host unix:///var/run/docker.sock >>"{log}" 2>&1 & echo $!'],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True,
        start_new_session=True,
    )  # fmt: skip
    result.new_pid = int(out.stdout.strip())
    pid_file.write_text(f"{result.new_pid}\n")
    deadline = time.monotonic() + 60
    while not engine_available():
        if time.monotonic() > deadline:
            raise AssertionError("dockerd did not come back:\n" + log.read_text()[-3000:])
        time.sleep(0.2)
    result.down_for = time.monotonic() - started
    for cid in sorted(bring_back):
        state = docker("inspect", "-f", "{{.State.Running}} {{.Name}}", cid, check=False).split()
        if state and state[0] == "false":
            docker("start", cid, check=False)
            result.restarted_by_hand.append(state[1].lstrip("/"))
    return result


# --- a docker-proxy that survives an engine restart on the same port ---------------------------


def persistent_docker_proxy(image: str, grants: dict[str, str], port: int) -> str:
    """A docker-proxy on a fixed host port with ``restart: unless-stopped`` (as deployed).

    The session's proxy has an ephemeral host port, which changes when the engine
    restarts it; the sidecar of an engine-restart test needs an address that stays.
    Returns the container id; the caller removes it.
    """
    args = ["run", "-d", "--restart", "unless-stopped", "-p", f"127.0.0.1:{port}:2375",
            "-v", "/var/run/docker.sock:/var/run/docker.sock"]  # fmt: skip
    for key, value in {**owner_labels(), "org.stacksup.test.role": "docker-proxy"}.items():
        args += ["--label", f"{key}={value}"]
    for key, value in grants.items():
        args += ["-e", f"{key}={value}"]
    cid = docker(*args, image).strip()
    wait_answers(f"http://127.0.0.1:{port}/_ping", b"OK")
    return cid


def wait_answers(url: str, body: bytes | None = None, timeout: float = 60) -> float:
    """Wait until ``url`` answers 200 (with ``body``); return how long it took."""
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if body is None or response.read() == body:
                    return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{url} did not answer in {timeout:g} s")
        time.sleep(0.2)


# --- a release with a layer the engine has never seen ------------------------------------------


async def publish_with_fresh_layer(
    host: str, source: str, repository: str, tags: dict[str, str], noise: bytes
) -> dict[str, str]:
    """Publish ``source`` images under ``repository``, the last one with one extra layer.

    ``tags`` maps tag → digest in ``source`` (a repository on ``host``, e.g.
    ``stacksup/fakeapp``); every image is copied as it is (blobs mounted, same digest),
    except the last, which gets a gzipped layer holding ``noise`` on top: an image whose
    new layer no engine has, written straight to the registry's /v2 API, so a pull of it
    really transfers bytes, without building on, pushing from or deleting in the shared
    engine. Returns tag → digest as published.
    """
    published: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        writer = RegistryWriter(session, host)
        *plain, (last_tag, last_digest) = tags.items()
        for tag, digest in plain:
            descriptor = await writer.copy_image(source, repository, digest)
            manifest = await _get(session, host, f"{source}/manifests/{digest}", manifest=True)
            await writer.put_manifest(repository, tag, descriptor["mediaType"], manifest)
            published[tag] = digest
        manifest = json.loads(
            await _get(session, host, f"{source}/manifests/{last_digest}", manifest=True)
        )
        config = json.loads(
            await _get(session, host, f"{source}/blobs/{manifest['config']['digest']}")
        )
        for layer in manifest["layers"]:
            await writer.mount(repository, layer["digest"], source)
        tar = _tar_of("opt/noise", noise)
        layer_gz = gzip.compress(tar, compresslevel=1, mtime=0)
        layer_digest = compute_digest(layer_gz)
        await _put_large_blob(session, host, repository, layer_digest, layer_gz)
        config["rootfs"]["diff_ids"].append(compute_digest(tar))
        config.setdefault("history", []).append({"created_by": "test: one fresh layer"})
        config_bytes = json.dumps(config).encode()
        config_digest = compute_digest(config_bytes)
        await writer.put_blob(repository, config_digest, config_bytes)
        manifest["config"] = {
            **manifest["config"],
            "digest": config_digest,
            "size": len(config_bytes),
        }
        manifest["layers"].append(
            {"mediaType": manifest["layers"][-1]["mediaType"], "size": len(layer_gz),
             "digest": layer_digest}
        )  # fmt: skip
        body = json.dumps(manifest, indent=3).encode()
        published[last_tag] = await writer.put_manifest(
            repository, last_tag, manifest["mediaType"], body
        )
    return published


async def _get(
    session: aiohttp.ClientSession, host: str, path: str, manifest: bool = False
) -> bytes:
    headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)} if manifest else {}
    async with session.get(f"http://{host}/v2/{path}", headers=headers) as reply:
        reply.raise_for_status()
        return await reply.read()


async def _put_large_blob(
    session: aiohttp.ClientSession, host: str, repository: str, digest: str, data: bytes
) -> None:
    """A monolithic upload streamed from a file object (aiohttp warns on big raw bodies)."""
    async with session.post(f"http://{host}/v2/{repository}/blobs/uploads/") as reply:
        location = reply.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    separator = "&" if "?" in location else "?"
    url = f"{location}{separator}digest={digest}"
    async with session.put(url, data=io.BytesIO(data)) as reply:
        if reply.status != 201:
            raise RuntimeError(f"upload {digest}: {reply.status} {await reply.text()}")


def _tar_of(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def delete_repository(host: str, repository: str) -> list[str]:
    """Delete every tagged manifest of ``repository`` on ``host`` (blobs wait for the GC)."""
    deleted: list[str] = []
    try:
        with urllib.request.urlopen(f"http://{host}/v2/{repository}/tags/list", timeout=10) as r:
            tags = json.loads(r.read()).get("tags") or []
    except OSError:
        return deleted
    accept = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
    for tag in tags:
        url = f"http://{host}/v2/{repository}/manifests/"
        head = urllib.request.Request(url + tag, method="HEAD", headers=accept)
        with contextlib.suppress(OSError), urllib.request.urlopen(head, timeout=10) as r:
            digest = r.headers["Docker-Content-Digest"]
            urllib.request.urlopen(
                urllib.request.Request(url + digest, method="DELETE"), timeout=10
            ).close()
            deleted.append(f"{repository}:{tag}")
    return deleted
