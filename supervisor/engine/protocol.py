"""The engine adapter's contract: what the update run asks of Docker.

The real implementation is :class:`supervisor.engine.docker_engine.DockerEngine`
(aiodocker, through the docker-proxy); unit tests hand the domain a fake that
implements this protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
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
from supervisor.engine.sandbox import Sandbox

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

    async def start_alongside(
        self, container_id: str, image: str, run_id: str
    ) -> RetainedContainer:
        """Start a container like ``container_id`` from ``image`` next to it (start-first).

        Named ``<name>-next-<run>``, without the service's network aliases (reachable by
        its name only); the old container keeps running and serving. Refuses
        (``EngineConflict``) a container that publishes host ports. Returns what
        ``recreate`` would, so ``restore_retained`` undoes it; ``promote`` completes it.
        """
        ...

    async def share_aliases(self, retained: RetainedContainer) -> None:
        """The new container started alongside gets the old one's network aliases too: the
        service name now resolves to both (each network once; idempotent)."""
        ...

    async def promote(self, retained: RetainedContainer, stop_timeout: float) -> RetainedContainer:
        """The new container started alongside, once it shares the aliases, takes over: the
        old one is stopped, its restart policy set to ``no`` and renamed
        ``<name>.old-<run>``, then the new one takes the name. Idempotent."""
        ...

    async def restore_retained(
        self, retained: RetainedContainer, start: bool = True, stop_timeout: float = 10.0
    ) -> ServiceContainer:
        """Undo a recreate: remove the new container, put the old one back; return the
        container that now carries the service's name.

        Idempotent and convergent: each step checks the state first, so calling it
        twice, or after a crash half-way through (also a crash inside ``recreate``),
        ends in the same place. The new container is found by ``new_id`` or, when the
        journal did not get to record it, as the holder of the name carrying this
        run's label; a holder the run did not create raises EngineConflict. An old
        container still running under its ``.old-`` name is first brought to a
        settled stop (``stop_timeout``: a stop of a dead client may be in flight),
        then renamed back and its restart policy restored. If the old container was
        removed by hand, it is created again from ``old_spec`` and the old image the
        engine holds (pulled by ``old_repo_digest`` only if the image is gone too);
        the returned id then differs from ``old_id``. Raises RetainedContainerLost
        when that is impossible. With ``start`` it is running when this returns.
        """
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
        """Healthy (or running without a healthcheck), then stable for the window.

        Fails fast with HealthCheckFailed: as soon as Docker reports ``unhealthy``
        or the container exited, is restarting or restarted (restart count or start
        time changed), not after ``timeout``; only ``starting`` is waited for.
        """
        ...

    async def prepare_recreate(self, container_id: str, run_id: str) -> RetainedContainer:
        """What ``recreate(container_id, …, run_id)`` will keep aside, before it acts.

        Every field but ``new_id``: the names, the old restart policy, whether it
        ran, and the old image (``old_image``, ``old_image_id``,
        ``old_repo_digest``) and create spec (``old_spec``) that let
        ``restore_retained`` create the old container again if it is removed by
        hand. Only reads. Journal it, then call ``recreate``, which returns the
        same values plus ``new_id``. ``old_spec`` holds the container's
        environment: never log or serve it.
        """
        ...

    async def ensure_stopped(self, container_id: str, timeout: float) -> None:
        """Converge to stopped with no stop left in flight in the engine.

        Not running (or gone): nothing to do. Otherwise issue a stop with
        ``timeout`` seconds before SIGKILL; on a container that another client
        (possibly one that died) is already stopping, the engine's stop blocks
        until the process has exited, so returning means it settled. Transient
        engine errors are retried with backoff for ``timeout`` + a grace period;
        then EngineError.
        """
        ...

    async def ensure_running(
        self,
        container_id: str,
        timeout: float,
        *,
        stop_timeout: float | None = None,
        settle: float = 2.0,
    ) -> ServiceContainer:
        """Converge to running, and still running ``settle`` seconds after the start.

        Starts the container if it is not running, re-checks after ``settle``, and
        starts it again with backoff if it died, until ``timeout``; then EngineError
        (with the state and exit code). Inspect data cannot show a stop in flight
        (the container stays ``running`` until it exits), so a caller that cannot
        rule one out (recovering from a crash inside ``stop``, ``recreate`` or a
        rollback) passes ``stop_timeout``: the container is first brought to a
        settled stop with ``ensure_stopped(stop_timeout)``, i.e. restarted. A missing
        container raises EngineNotFound at once.
        """
        ...

    # --- the rehearsal sandbox (see supervisor.engine.sandbox) ----------------------

    async def create_sandbox(self, postgres_id: str, project: str, run_id: str) -> Sandbox:
        """A new internal network and, started on it, a server like ``postgres_id``
        (same image, env, command; empty data) under the live server's aliases. Nothing
        of the live stack joins the network. On failure nothing is left behind."""
        ...

    async def run_one_shot_in_sandbox(
        self,
        sandbox: Sandbox,
        template_id: str,
        image: str,
        run_id: str,
        timeout: float,
        command: Sequence[str] | None = None,
    ) -> OneShotResult:
        """:meth:`run_one_shot`, attached to the sandbox network only; always removed."""
        ...

    async def remove_sandboxes(self, project: str, run_id: str) -> list[str]:
        """Remove the run's sandbox containers and network, found by label (also after a
        crash); the names removed. Idempotent."""
        ...

    # --- the sibling of a database container (see supervisor.engine.sibling) --------

    async def start_sibling(self, of: str, source: str, tag: str, lifetime: float) -> str:
        """Start a container of ``of``'s image and user in ``of``'s PID namespace, with no
        network, holding the host file ``source`` read-only in ``sibling_target(tag)``,
        that ends by itself after ``lifetime`` seconds; its id. A leftover sibling with
        the same tag is removed first; on failure nothing is left."""
        ...

    async def remove_siblings(
        self, of: str, tag: str | None = None, wait: bool = True
    ) -> list[str]:
        """Remove the siblings of ``of`` (with ``tag``, or all), found by label (also
        after a crash); the names removed. Idempotent. Without ``wait`` a running one is
        only killed and the engine removes it on its own."""
        ...

    async def sweep_siblings(self, project: str) -> list[str]:
        """Remove the siblings of the Compose ``project`` that cannot be in use (not
        running, or their database container is not); the names removed."""
        ...

    async def host_path_of(self, path: PurePosixPath) -> str | None:
        """Where ``path`` of this process is on the engine's host: None unless this
        process runs in a container of this engine that mounts ``path`` from the host."""
        ...
