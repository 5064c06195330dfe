"""What the engine adapter reports, as plain values the domain can use.

Nothing here imports aiodocker: the update run and its unit tests see only
these dataclasses and the :class:`~supervisor.engine.protocol.Engine` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from supervisor.const import Role


@dataclass(frozen=True)
class ServiceContainer:
    """One container of a Compose service, as the engine sees it now."""

    id: str
    name: str
    project: str
    service: str
    image: str  # Config.Image: the reference the container was created from
    image_id: str
    repo_digest: str | None  # sha256:… of the manifest it was pulled by, if known
    state: str  # created / running / exited / …
    health: str | None  # healthy / unhealthy / starting, None without a healthcheck
    restart_count: int
    labels: dict[str, str] = field(repr=False)
    restart_policy: dict[str, Any] = field(default_factory=dict, repr=False)
    # Host ports it publishes (``8000/tcp`` …): such a service cannot run twice (start-first).
    published_ports: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class StackService:
    """A Compose service of the managed project, with its role and containers."""

    name: str
    role: Role | None
    containers: tuple[ServiceContainer, ...]
    depends_on: tuple[str, ...] = ()

    @property
    def image(self) -> str | None:
        return self.containers[0].image if self.containers else None

    @property
    def repo_digest(self) -> str | None:
        digests = {c.repo_digest for c in self.containers}
        return digests.pop() if len(digests) == 1 else None


@dataclass(frozen=True)
class PullProgress:
    """Aggregated progress of one pull: layers and bytes seen so far."""

    image: str
    layers_total: int
    layers_done: int
    bytes_done: int
    bytes_total: int
    status: str

    @property
    def percent(self) -> float:
        if self.bytes_total:
            return min(100.0, 100.0 * self.bytes_done / self.bytes_total)
        return 100.0 * self.layers_done / self.layers_total if self.layers_total else 0.0


@dataclass(frozen=True)
class RetainedContainer:
    """The outcome of a recreate: the new container and the old one kept aside.

    Holding this is enough to roll back without the network: the old container
    still exists (renamed, stopped) with its image, so restoring it is a rename
    and a start. If someone removed the old container by hand, the ``old_*``
    image and spec fields are enough to create it again from the image the
    engine still holds (no pull when the image is present). The domain
    journals this *before* the recreate acts (see ``Engine.prepare_recreate``).
    """

    service: str
    name: str  # the original container name, now carried by the new container
    new_id: str
    old_id: str
    old_name: str  # <name>.old-<run>
    old_restart_policy: dict[str, Any]
    old_was_running: bool
    old_image: str = ""  # Config.Image of the old container: the reference it was created from
    old_image_id: str = ""  # sha256:… image id the old container ran
    old_repo_digest: str | None = None  # name@sha256:… to pull by if the image is gone too
    # The create body and extra networks that recreate the old container as it
    # was (container_spec.restore_spec). Holds its environment: never log or serve it.
    old_spec: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class OneShotResult:
    exit_code: int
    logs: str  # the tail of combined stdout/stderr
    seconds: float


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout_bytes: int
    stderr: str  # the tail of stderr
    seconds: float
