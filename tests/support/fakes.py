"""In-memory fakes of our own adapter protocols, for unit tests of the update run.

They implement :class:`supervisor.engine.protocol.Engine`, the registry
protocol and the ports in :mod:`supervisor.update.ports` with just enough
behaviour to drive every transition: images have versions, versions decide how
migrations and health checks go, and any operation can be made to fail.
Integration tests use the real adapters instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from supervisor.const import RUN_LABEL, Role
from supervisor.engine.models import (
    ExecResult,
    OneShotResult,
    RetainedContainer,
    ServiceContainer,
    StackService,
)
from supervisor.engine.protocol import OutputSink, ProgressCallback
from supervisor.exceptions import (
    EngineNotFound,
    HealthCheckFailed,
    ManifestNotFound,
    SupervisorError,
)
from supervisor.reference import ImageReference
from supervisor.signatures.models import Policy, SignatureVerdict

REPO = "reg.test/acme/app"
_ids = itertools.count(1)


_VERSIONS: dict[str, str] = {}


def digest_of(version: str) -> str:
    digest = "sha256:" + hashlib.sha256(version.encode()).hexdigest()
    _VERSIONS[digest] = version
    return digest


def version_of(image: str) -> str:
    """The version an image reference (or fake image id) stands for."""
    return _VERSIONS[image.rsplit("@", 1)[-1]]


def image_of(version: str) -> str:
    return f"{REPO}@{digest_of(version)}"


@dataclass
class FakeContainer:
    id: str
    name: str
    service: str
    image: str
    running: bool = True
    restart_policy: dict[str, Any] = field(default_factory=lambda: {"Name": "unless-stopped"})
    labels: dict[str, str] = field(default_factory=dict)


class FakeEngine:
    """A stack of ``app``, ``python_backend``, ``migrations`` and ``postgres``."""

    def __init__(self, version: str = "1.0.0", project: str = "demo") -> None:
        self.project = project
        self.containers: dict[str, FakeContainer] = {}
        self.present: set[str] = {image_of(version)}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, SupervisorError] = {}  # operation → error to raise
        self.unhealthy_versions: set[str] = set()
        self.failing_migrations: set[str] = set()
        self.pull_gate: asyncio.Event | None = None  # blocks pulls until set
        self.hang: set[str] = set()  # operations that never return (a "kill -9" point)
        for service in ("postgres", "python_backend", "app"):
            self._add(service, image_of(version) if service != "postgres" else "postgres:15")
        self._add("migrations", image_of(version), running=False)

    def _add(self, service: str, image: str, running: bool = True) -> FakeContainer:
        container = FakeContainer(
            f"c{next(_ids):011d}", f"{self.project}_{service}_1", service, image, running
        )
        self.containers[container.id] = container
        return container

    def _maybe_fail(self, operation: str) -> None:
        self.calls.append((operation, ""))
        if operation in self.fail:
            raise self.fail[operation]

    async def _hang_if(self, operation: str) -> None:
        if operation in self.hang:
            await asyncio.Event().wait()

    def by_service(self, service: str) -> list[FakeContainer]:
        return [
            c for c in self.containers.values() if c.service == service and ".old-" not in c.name
        ]

    def version_running(self, service: str = "app") -> str:
        (container,) = self.by_service(service)
        return version_of(container.image)

    def _view(self, c: FakeContainer) -> ServiceContainer:
        return ServiceContainer(
            id=c.id, name=c.name, project=self.project, service=c.service, image=c.image,
            image_id="id-" + c.image, repo_digest=c.image.split("@")[1] if "@" in c.image else None,
            state="running" if c.running else "exited", health="healthy" if c.running else None,
            restart_count=0, labels=dict(c.labels), restart_policy=dict(c.restart_policy),
        )  # fmt: skip

    # --- Engine protocol ------------------------------------------------------------

    async def ping(self) -> str:
        self._maybe_fail("ping")
        return "fake"

    async def discover(
        self, project: str, roles: Mapping[str, Role] | None = None
    ) -> dict[str, StackService]:
        services: dict[str, list[ServiceContainer]] = {}
        for c in self.containers.values():
            if ".old-" not in c.name and "oneoff" not in c.labels:
                services.setdefault(c.service, []).append(self._view(c))
        roles = roles or {}
        return {n: StackService(n, roles.get(n), tuple(cs)) for n, cs in services.items()}

    async def run_containers(self, project: str, run_id: str) -> list[ServiceContainer]:
        return [
            self._view(c) for c in self.containers.values() if c.labels.get(RUN_LABEL) == run_id
        ]

    async def remove_container(self, container_id: str) -> None:
        self.containers.pop(container_id, None)

    async def container(self, container_id: str) -> ServiceContainer:
        if container_id not in self.containers:
            raise EngineNotFound(f"no container {container_id}")
        return self._view(self.containers[container_id])

    async def image_labels(self, image: str) -> dict[str, str]:
        return {"org.opencontainers.image.version": version_of(image.removeprefix("id-"))}

    async def image_present(self, image: str) -> bool:
        return image in self.present

    async def pull(self, image: str, on_progress: ProgressCallback | None = None) -> str:
        self._maybe_fail("pull")
        await self._hang_if("pull")
        if self.pull_gate is not None:
            await self.pull_gate.wait()
        self.present.add(image)
        return "id-" + image

    async def stop(self, container_id: str, timeout: float) -> None:
        self._maybe_fail("stop")
        await self._hang_if("stop")
        self.calls.append(("stopped", self.containers[container_id].service))
        self.containers[container_id].running = False

    async def start(self, container_id: str) -> None:
        self._maybe_fail("start")
        self.calls.append(("started", self.containers[container_id].service))
        self.containers[container_id].running = True

    async def recreate(
        self, container_id: str, image: str, run_id: str, stop_timeout: float
    ) -> RetainedContainer:
        self._maybe_fail("recreate")
        old = self.containers[container_id]
        name, was_running, policy = old.name, old.running, dict(old.restart_policy)
        old.name, old.running, old.restart_policy = f"{name}.old-{run_id}", False, {"Name": "no"}
        new = self._add(old.service, image)
        new.name, new.labels = name, {RUN_LABEL: run_id}
        await self._hang_if("recreate")  # killed half-way: old renamed, new created
        return RetainedContainer(old.service, name, new.id, old.id, old.name, policy, was_running)

    async def restore_retained(self, retained: RetainedContainer, start: bool = True) -> None:
        self._maybe_fail("restore_retained")
        self.containers.pop(retained.new_id, None)
        old = self.containers[retained.old_id]
        old.name, old.restart_policy = retained.name, dict(retained.old_restart_policy)
        if start:
            old.running = True

    async def discard_retained(self, retained: RetainedContainer) -> None:
        self.containers.pop(retained.old_id, None)

    async def run_one_shot(
        self, template_id: str, image: str, run_id: str, timeout: float,
        command: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
    ) -> OneShotResult:  # fmt: skip
        self._maybe_fail("run_one_shot")
        await self._hang_if("run_one_shot")
        self.calls.append(("one_shot", f"{image} {dict(env or {})}"))
        if version_of(image) in self.failing_migrations:
            return OneShotResult(1, "migration 003: applying\nERROR: division by zero", 0.1)
        return OneShotResult(0, "migration 002: applying\nmigration 002: done", 0.1)

    async def exec(
        self, container_id: str, argv: Sequence[str], stdout: OutputSink | None = None,
        timeout: float | None = None, env: Mapping[str, str] | None = None, check: bool = True,
    ) -> ExecResult:  # fmt: skip
        return ExecResult(0, 0, "", 0.0)

    async def wait_healthy(
        self, container_id: str, timeout: float, stability_window: float = 0
    ) -> ServiceContainer:
        self._maybe_fail("wait_healthy")
        await self._hang_if("wait_healthy")
        container = self.containers[container_id]
        if version_of(container.image) in self.unhealthy_versions:
            raise HealthCheckFailed(f"{container.name} not healthy after {timeout:g} s")
        return self._view(container)


class FakeRegistry:
    def __init__(self, versions: Sequence[str]) -> None:
        self.tags = {v: digest_of(v) for v in versions}

    async def resolve_digest(self, ref: ImageReference | str) -> str:
        reference = ImageReference.parse(ref) if isinstance(ref, str) else ref
        if reference.digest:
            return reference.digest
        if reference.tag not in self.tags:
            raise ManifestNotFound(f"{reference} not found")
        return self.tags[reference.tag]

    async def list_tags(self, ref: ImageReference | str) -> list[str]:
        return [*self.tags, "latest", "not-a-version"]


@dataclass
class FakeSnapshot:
    id: str


class FakeSnapshots:
    def __init__(self) -> None:
        self.created: list[tuple[str, str | None]] = []
        self.restored: list[str] = []
        self.scratch: list[tuple[str, str]] = []
        self.dropped: list[str] = []
        self.fail: dict[str, SupervisorError] = {}
        self.hang: set[str] = set()

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.fail:
            raise self.fail[operation]

    async def estimate_size(self) -> int:
        self._maybe_fail("estimate_size")
        return 1_000_000

    async def create(self, reason: str, run_id: str | None, images: Mapping[str, str],
                     progress: Callable[[str], None] | None = None) -> FakeSnapshot:  # fmt: skip
        self._maybe_fail(f"create:{reason}")
        if f"create:{reason}" in self.hang:
            await asyncio.Event().wait()
        self.created.append((reason, run_id))
        return FakeSnapshot(f"20260101T000000Z_{len(self.created):08x}")

    async def restore(
        self, snapshot_id: str, progress: Callable[[str], None] | None = None
    ) -> None:
        self._maybe_fail("restore")
        self.restored.append(snapshot_id)

    async def restore_postgres_into(self, snapshot_id: str, database: str) -> None:
        self._maybe_fail("restore_postgres_into")
        self.scratch.append((snapshot_id, database))

    async def drop_database(self, database: str) -> None:
        self.dropped.append(database)

    async def apply_retention(self, protected: set[str]) -> list[str]:
        return []


class FakeSignatures:
    def __init__(self, policy: Policy = Policy.ENFORCE) -> None:
        self.policy = policy
        self.unsigned: set[str] = set()  # digests without a valid signature

    async def verify(self, service: str, image: str) -> SignatureVerdict:
        ok = image not in self.unsigned
        return SignatureVerdict(
            service=service, image=image, policy=self.policy, verified=ok,
            reason="signed by the test key" if ok else "no signature found",
        )  # fmt: skip


class FakeProber:
    async def check(self, url: str, expect_status: int, timeout: float) -> None:
        return None

    async def version(self, url: str, json_field: str, timeout: float) -> str:
        return "unused"
