"""The Docker engine adapter: the sidecar's hands, through the docker-proxy.

::

    update run ──Engine protocol──▶ DockerEngine ──aiodocker──▶ docker-proxy ──▶ dockerd
                                        ├─ discovery, pull, stop/start (here)
                                        ├─ recreate and restore (docker_retained)
                                        ├─ ensure stopped / running (docker_lifecycle)
                                        ├─ exec and one-shot jobs (docker_jobs)
                                        └─ health gate (docker_health)

Only the ``docker_*`` modules of this package import aiodocker. Every call
goes through :func:`~supervisor.engine.docker_errors.engine_call`, so callers
only ever see :mod:`supervisor.exceptions`. Containers are found by Compose
labels, never by name (Compose v1 and v2 name them differently).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from supervisor.const import (
    COMPOSE_ONEOFF_LABEL,
    COMPOSE_PROJECT_LABEL,
    COMPOSE_SERVICE_LABEL,
    RETAINED_SUFFIX,
    ROLE_LABEL,
    RUN_LABEL,
    Role,
    is_next_container,
)
from supervisor.engine import (
    docker_files,
    docker_health,
    docker_jobs,
    docker_lifecycle,
    docker_retained,
    docker_scratch,
    docker_sibling,
)
from supervisor.engine.docker_errors import engine_call, translate_pull
from supervisor.engine.models import (
    ExecResult,
    OneShotResult,
    RetainedContainer,
    ServiceContainer,
    StackService,
)
from supervisor.engine.ordering import depends_on_from_label
from supervisor.engine.protocol import OutputSink, ProgressCallback
from supervisor.engine.pull_progress import PullTracker
from supervisor.engine.sandbox import Sandbox
from supervisor.exceptions import EngineNotFound, InvalidReference
from supervisor.reference import ImageReference

_LOGGER = logging.getLogger(__name__)
JSON = dict[str, Any]
# Registry host → the X-Registry-Auth payload for a pull (or None).
RegistryAuthProvider = Callable[[str], Mapping[str, str] | None]


class DockerEngine:
    """Implements :class:`~supervisor.engine.protocol.Engine` with aiodocker."""

    def __init__(self, url: str, registry_auth: RegistryAuthProvider | None = None) -> None:
        self.url = url
        self._docker = aiodocker.Docker(url=url)
        self._registry_auth = registry_auth

    async def close(self) -> None:
        await self._docker.close()

    async def __aenter__(self) -> DockerEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- reading --------------------------------------------------------------------

    async def ping(self) -> str:
        async with engine_call("checking the engine", self.url):
            version: JSON = await self._docker.version()
        return str(version.get("Version", "unknown"))

    async def inspect_container(self, container_id: str) -> JSON:
        async with engine_call(f"inspecting container {container_id[:12]}", self.url):
            data: JSON = await self._docker.containers.container(container_id).show()
        return data

    async def inspect_image(self, image: str) -> JSON:
        async with engine_call(f"inspecting image {image}", self.url):
            data: JSON = await self._docker.images.inspect(image)
        return data

    async def image_labels(self, image: str) -> dict[str, str]:
        data = await self.inspect_image(image)
        return dict((data.get("Config") or {}).get("Labels") or {})

    async def image_present(self, image: str) -> bool:
        try:
            await self.inspect_image(image)
        except EngineNotFound:
            return False
        return True

    async def container(self, container_id: str) -> ServiceContainer:
        data = await self.inspect_container(container_id)
        return _service_container(data, await self._repo_digest(data, {}))

    async def discover(
        self, project: str, roles: Mapping[str, Role] | None = None
    ) -> dict[str, StackService]:
        roles = roles or {}
        filters = json.dumps({"label": [f"{COMPOSE_PROJECT_LABEL}={project}"]})
        async with engine_call(f"listing the containers of project {project}", self.url):
            listed = _listed(await self._docker.containers.list(all=True, filters=filters))
        image_cache: dict[str, JSON] = {}
        by_service: dict[str, list[ServiceContainer]] = {}
        depends: dict[str, tuple[str, ...]] = {}
        for entry in listed:
            labels = entry.get("Labels") or {}
            names = entry.get("Names") or [""]
            if labels.get(COMPOSE_ONEOFF_LABEL, "False") == "True":
                continue
            if RETAINED_SUFFIX in names[0]:
                continue  # an old container kept for rollback by a run
            if is_next_container(names[0].lstrip("/"), labels):
                continue  # a start-first run's new container, not yet the service's
            try:
                data = await self.inspect_container(entry["Id"])
            except EngineNotFound:
                continue  # removed between list and inspect
            container = _service_container(data, await self._repo_digest(data, image_cache))
            by_service.setdefault(container.service, []).append(container)
            depends[container.service] = depends_on_from_label(container.labels)
        return {
            name: StackService(
                name=name,
                role=roles.get(name) or _role_from_labels(containers),
                containers=tuple(sorted(containers, key=lambda c: c.name)),
                depends_on=depends.get(name, ()),
            )
            for name, containers in sorted(by_service.items())
        }

    async def run_containers(self, project: str, run_id: str) -> list[ServiceContainer]:
        filters = json.dumps(
            {"label": [f"{COMPOSE_PROJECT_LABEL}={project}", f"{RUN_LABEL}={run_id}"]}
        )
        async with engine_call(f"listing the containers of run {run_id}", self.url):
            listed = _listed(await self._docker.containers.list(all=True, filters=filters))
        found = []
        for entry in listed:
            try:
                found.append(await self.container(entry["Id"]))
            except EngineNotFound:
                continue
        return found

    async def remove_container(self, container_id: str) -> None:
        await self._remove(container_id)

    async def _repo_digest(self, container: JSON, cache: dict[str, JSON]) -> str | None:
        """The manifest digest the container's image was pulled by, if the engine knows."""
        configured = str(container["Config"].get("Image", ""))
        if "@" in configured:
            return configured.split("@", 1)[1]
        image_id = container["Image"]
        if image_id not in cache:
            try:
                cache[image_id] = await self.inspect_image(image_id)
            except EngineNotFound:
                return None
        try:
            wanted = ImageReference.parse(configured).name
        except InvalidReference:
            wanted = configured
        for repo_digest in cache[image_id].get("RepoDigests") or []:
            name, _, digest = str(repo_digest).partition("@")
            if name == wanted:
                return digest
        return None

    # --- images ---------------------------------------------------------------------

    async def pull(self, image: str, on_progress: ProgressCallback | None = None) -> str:
        """Pull ``image`` (``name@digest``) and return its local id.

        The engine streams per-layer messages; they are folded into one
        :class:`PullProgress` per message for the caller's progress display.
        """
        reference = ImageReference.parse(image)
        auth = self._registry_auth(reference.registry) if self._registry_auth else None
        tracker = PullTracker(image)
        try:
            async with engine_call(f"pulling {image}", self.url):
                stream = self._docker.images.pull(
                    image, stream=True, auth=dict(auth) if auth else None
                )
                try:
                    async for event in stream:
                        if "error" in event:
                            raise translate_pull(image, str(event["error"]))
                        progress = tracker.update(event)
                        if on_progress is not None:
                            on_progress(progress)
                except aiodocker.DockerStreamError as err:
                    # aiodocker raises on an error message in the stream before we see it:
                    # the registry's answer (unreachable, unauthorised …) is in its text.
                    raise translate_pull(image, str(err.message)) from err
        except EngineNotFound as err:
            raise translate_pull(image, f"not found: {err.message}") from err
        data = await self.inspect_image(image)
        _LOGGER.info("pulled %s (%s)", image, data["Id"][:19])
        return str(data["Id"])

    # --- lifecycle ------------------------------------------------------------------

    async def stop(self, container_id: str, timeout: float) -> None:
        async with engine_call(f"stopping container {container_id[:12]}", self.url):
            await self._docker.containers.container(container_id).stop(
                t=int(timeout), timeout=aiohttp.ClientTimeout(total=timeout + 30)
            )

    async def start(self, container_id: str) -> None:
        async with engine_call(f"starting container {container_id[:12]}", self.url):
            await self._docker.containers.container(container_id).start()

    async def rename(self, container_id: str, name: str) -> None:
        async with engine_call(f"renaming container {container_id[:12]} to {name}", self.url):
            await self._docker.containers.container(container_id).rename(name)

    async def set_restart_policy(self, container_id: str, policy: Mapping[str, Any]) -> None:
        async with engine_call(f"updating container {container_id[:12]}", self.url):
            await self._docker._query_json(
                f"containers/{container_id}/update",
                method="POST",
                data=json.dumps({"RestartPolicy": dict(policy)}),
            )

    async def _remove(self, container_id: str) -> None:
        try:
            async with engine_call(f"removing container {container_id[:12]}", self.url):
                await self._docker.containers.container(container_id).delete(force=True)
        except EngineNotFound:
            pass

    async def create_container(
        self, body: JSON, name: str, extra_networks: Mapping[str, JSON]
    ) -> str:
        """Create a container and connect its extra networks; not started."""
        async with engine_call(f"creating container {name}", self.url):
            created = await self._docker.containers.create(body, name=name)
        try:
            for network, endpoint in extra_networks.items():
                async with engine_call(f"connecting {name} to network {network}", self.url):
                    joined = await self._docker.networks.get(network)
                    await joined.connect({"Container": created.id, "EndpointConfig": endpoint})
        except BaseException:
            await asyncio.shield(self._remove(created.id))
            raise
        return str(created.id)

    async def join_with_aliases(self, container_id: str, network: str, aliases: list[str]) -> None:
        """(Re)connect a running container to ``network`` under ``aliases`` (Docker cannot
        change the aliases of an endpoint in place)."""
        async with engine_call(f"giving {container_id[:12]} its aliases on {network}", self.url):
            joined = await self._docker.networks.get(network)
            try:
                await joined.disconnect({"Container": container_id, "Force": True})
            except aiodocker.DockerError as err:
                if err.status != 404 and "is not connected" not in str(err):
                    raise
            await joined.connect(
                {"Container": container_id, "EndpointConfig": {"Aliases": aliases}}
            )

    async def prepare_recreate(self, container_id: str, run_id: str) -> RetainedContainer:
        return await docker_retained.prepare_recreate(self, container_id, run_id)

    async def recreate(
        self, container_id: str, image: str, run_id: str, stop_timeout: float
    ) -> RetainedContainer:
        return await docker_retained.recreate(self, container_id, image, run_id, stop_timeout)

    async def restore_retained(
        self, retained: RetainedContainer, start: bool = True, stop_timeout: float = 10.0
    ) -> ServiceContainer:
        return await docker_retained.restore_retained(self, retained, start, stop_timeout)

    async def start_alongside(
        self, container_id: str, image: str, run_id: str
    ) -> RetainedContainer:
        return await docker_retained.start_alongside(self, container_id, image, run_id)

    async def share_aliases(self, retained: RetainedContainer) -> None:
        await docker_retained.share_aliases(self, retained)

    async def promote(self, retained: RetainedContainer, stop_timeout: float) -> RetainedContainer:
        return await docker_retained.promote(self, retained, stop_timeout)

    async def discard_retained(self, retained: RetainedContainer) -> None:
        # Volumes are kept: the new container uses the anonymous ones it inherited.
        await self._remove(retained.old_id)

    async def ensure_stopped(self, container_id: str, timeout: float) -> None:
        await docker_lifecycle.ensure_stopped(self, container_id, timeout)

    async def ensure_running(
        self,
        container_id: str,
        timeout: float,
        *,
        stop_timeout: float | None = None,
        settle: float = docker_lifecycle.SETTLE_SECONDS,
    ) -> ServiceContainer:
        return await docker_lifecycle.ensure_running(
            self, container_id, timeout, stop_timeout=stop_timeout, settle=settle
        )

    # --- jobs and health (see docker_jobs / docker_health) --------------------------

    async def run_one_shot(
        self,
        template_id: str,
        image: str,
        run_id: str,
        timeout: float,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> OneShotResult:
        return await docker_jobs.run_one_shot(
            self, template_id, image, run_id, timeout, command, env
        )

    async def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        stdout: OutputSink | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> ExecResult:
        return await docker_jobs.exec_in(self, container_id, argv, stdout, timeout, env, check)

    async def wait_healthy(
        self, container_id: str, timeout: float, stability_window: float = 0
    ) -> ServiceContainer:
        return await docker_health.wait_healthy(self, container_id, timeout, stability_window)

    async def container_env(self, container_id: str) -> dict[str, str]:
        data = await self.inspect_container(container_id)
        pairs = (str(item).partition("=") for item in data["Config"].get("Env") or [])
        return {key: value for key, _, value in pairs}

    async def put_file(
        self,
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
        return await docker_files.put_file(
            self, container_id, local_path, container_dir,
            name=name, uid=uid, gid=gid, mode=mode, timeout=timeout,
        )  # fmt: skip

    # --- the rehearsal sandbox (see docker_scratch) ----------------------------------

    async def create_sandbox(self, postgres_id: str, project: str, run_id: str) -> Sandbox:
        return await docker_scratch.create_sandbox(self, postgres_id, project, run_id)

    async def run_one_shot_in_sandbox(
        self,
        sandbox: Sandbox,
        template_id: str,
        image: str,
        run_id: str,
        timeout: float,
        command: Sequence[str] | None = None,
    ) -> OneShotResult:
        return await docker_scratch.run_one_shot_in_sandbox(
            self, sandbox, template_id, image, run_id, timeout, command
        )

    async def remove_sandboxes(self, project: str, run_id: str) -> list[str]:
        return await docker_scratch.remove_sandboxes(self, project, run_id)

    # --- the sibling of a database container (see sibling) ---------------------------

    async def start_sibling(self, of: str, source: str, tag: str, lifetime: float) -> str:
        return await docker_sibling.start_sibling(self, of, source, tag, lifetime)

    async def remove_siblings(
        self, of: str, tag: str | None = None, wait: bool = True
    ) -> list[str]:
        return await docker_sibling.remove_siblings(self, of, tag, wait)

    async def sweep_siblings(self, project: str) -> list[str]:
        return await docker_sibling.sweep_siblings(self, project)

    async def host_path_of(self, path: PurePosixPath) -> str | None:
        return await docker_sibling.host_path_of(self, path)

    async def logs_tail(self, container_id: str, lines: int = 30) -> str:
        async with engine_call(f"reading logs of {container_id[:12]}", self.url):
            chunks = await self._docker.containers.container(container_id).log(
                stdout=True, stderr=True, tail=lines
            )
        return "".join(chunks)

    @property
    def client(self) -> aiodocker.Docker:
        """The aiodocker client, for the sibling ``docker_*`` modules only."""
        return self._docker


def _service_container(data: JSON, repo_digest: str | None) -> ServiceContainer:
    labels: dict[str, str] = data["Config"].get("Labels") or {}
    state: JSON = data["State"]
    return ServiceContainer(
        id=data["Id"],
        name=data["Name"].lstrip("/"),
        project=labels.get(COMPOSE_PROJECT_LABEL, ""),
        service=labels.get(COMPOSE_SERVICE_LABEL, ""),
        image=str(data["Config"].get("Image", "")),
        image_id=data["Image"],
        repo_digest=repo_digest,
        state=state.get("Status", "unknown"),
        health=(state.get("Health") or {}).get("Status"),
        restart_count=int(data.get("RestartCount", 0)),
        labels=labels,
        restart_policy=dict((data.get("HostConfig") or {}).get("RestartPolicy") or {}),
        published_ports=tuple(
            sorted(
                port
                for port, bindings in (
                    (data.get("HostConfig") or {}).get("PortBindings") or {}
                ).items()
                if bindings
            )
        ),
    )


def _role_from_labels(containers: Sequence[ServiceContainer]) -> Role | None:
    for container in containers:
        value = container.labels.get(ROLE_LABEL)
        if value is None:
            continue
        try:
            return Role(value)
        except ValueError:
            _LOGGER.warning(
                "container %s has unknown %s=%r; ignored", container.name, ROLE_LABEL, value
            )
    return None


def _listed(containers: list[DockerContainer]) -> list[JSON]:
    """The fields of a ``containers/json`` listing the discovery reads (aiodocker's public
    ``containers.list`` returns objects that only offer item access)."""
    return [{key: c[key] for key in ("Id", "Names", "Labels") if key in c} for c in containers]
