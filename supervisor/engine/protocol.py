"""The engine adapter's contract: what the update run asks of Docker.

The real implementation is :class:`supervisor.engine.docker_engine.DockerEngine`
(aiodocker, through the docker-proxy); unit tests hand the domain a fake that
implements this protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from supervisor.const import Role
from supervisor.engine.models import (
    ExecResult,
    OneShotResult,
    PullProgress,
    RetainedContainer,
    ServiceContainer,
    StackService,
)

ProgressCallback = Callable[[PullProgress], None]
# Receives stdout in chunks as it arrives; awaited, so a slow disk slows the
# stream instead of buffering it in memory.
OutputSink = Callable[[bytes], Awaitable[None]]


class Engine(Protocol):
    async def ping(self) -> str:
        """The engine's version; raises EngineUnreachable / ProxyForbidden."""
        ...

    async def discover(
        self, project: str, roles: Mapping[str, Role] | None = None
    ) -> dict[str, StackService]:
        """The project's services by Compose labels (one-off containers excluded)."""
        ...

    async def run_containers(self, project: str, run_id: str) -> list[ServiceContainer]:
        """Containers a run created (new service containers and one-shot jobs)."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Force-remove; a container that is already gone is not an error."""
        ...

    async def container(self, container_id: str) -> ServiceContainer:
        """A fresh view of one container."""
        ...

    async def image_present(self, image: str) -> bool:
        """True when the engine already holds ``image`` (a reference or id)."""
        ...

    async def image_labels(self, image: str) -> dict[str, str]:
        """The image's labels (``org.opencontainers.image.version`` tells its version)."""
        ...

    async def pull(self, image: str, on_progress: ProgressCallback | None = None) -> str:
        """Pull ``name@digest``; return the local image id."""
        ...

    async def stop(self, container_id: str, timeout: float) -> None: ...

    async def start(self, container_id: str) -> None: ...

    async def recreate(
        self, container_id: str, image: str, run_id: str, stop_timeout: float
    ) -> RetainedContainer:
        """Replace a container by one from ``image`` with the same configuration.

        The old container is renamed ``<name>.old-<run>``, stopped, its restart
        policy set to ``no`` (so a daemon restart does not revive it) and kept.
        """
        ...

    async def restore_retained(self, retained: RetainedContainer, start: bool = True) -> None:
        """Undo a recreate: remove the new container, put the old one back."""
        ...

    async def discard_retained(self, retained: RetainedContainer) -> None:
        """Success confirmed: remove the old container."""
        ...

    async def run_one_shot(
        self,
        template_id: str,
        image: str,
        run_id: str,
        timeout: float,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> OneShotResult:
        """Run a container like ``template_id`` but from ``image``; always removed.

        ``env`` overrides single variables of the template (the migration
        rehearsal points the migrations at a scratch database this way).
        """
        ...

    async def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        stdout: OutputSink | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> ExecResult:
        """Run ``argv`` (never a shell string) in a running container."""
        ...

    async def container_env(self, container_id: str) -> dict[str, str]:
        """The container's configured environment (``Config.Env``), for credentials that
        the database container was started with. Values are secrets: never log them."""
        ...

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
        """Stream a local file into ``container_dir`` (which must exist) as ``name``, owned by
        ``uid:gid`` with ``mode``; return the sha256 (hex) of the bytes sent."""
        ...

    async def wait_healthy(
        self, container_id: str, timeout: float, stability_window: float = 0
    ) -> ServiceContainer:
        """Healthy (or running without a healthcheck), then stable for the window."""
        ...
