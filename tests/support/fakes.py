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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from supervisor.const import RUN_LABEL, Role, is_next_container, next_name
from supervisor.engine.container_spec import RESTORED_FROM_LABEL
from supervisor.engine.models import (
    ExecResult,
    OneShotResult,
    PullProgress,
    RetainedContainer,
    ServiceContainer,
    StackService,
)
from supervisor.engine.protocol import OutputSink, ProgressCallback
from supervisor.engine.sandbox import Sandbox
from supervisor.exceptions import (
    EngineConflict,
    EngineError,
    EngineNotFound,
    HealthCheckFailed,
    ManifestNotFound,
    RestoreFailed,
    RetainedContainerLost,
    SnapshotNotFound,
    SupervisorError,
)
from supervisor.reference import ImageReference
from supervisor.registry.protocol import MANIFEST_MEDIA_TYPES, Manifest
from supervisor.signatures.models import Policy, SignatureVerdict
from supervisor.snapshots.const import SnapshotReason
from supervisor.snapshots.models import (
    FileEntry,
    InfluxBackup,
    PostgresDump,
    SnapshotManifest,
    check_snapshot_id,
    new_snapshot_id,
)
from supervisor.snapshots.protocol import (
    CopySwap,
    RunDatabases,
    SnapshotProgress,
    SnapshotProgressCallback,
)
from tests.support.inmemory import NothingToClose

REPO = "reg.test/acme/app"
FAKE_DATABASE = "appdb"  # the live database the fake snapshots were dumped from
PULL_BYTES = 6_000_000  # what a fake pull reports moving, in four steps
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
    # A stop whose client died (a "kill -9" inside ``stop``): the engine still
    # finishes it. It lands right after the next plain start (the worst timing),
    # which is why recovery must use ensure_running(stop_timeout=…).
    stop_pending: bool = False
    stop_lands: bool = False
    published_ports: tuple[str, ...] = ()


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
        # operation → event it waits for (hold a run in a stage until the test sets it)
        self.gates: dict[str, asyncio.Event] = {}
        self.sandboxes: dict[str, Sandbox] = {}  # run id → its rehearsal sandbox
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
        gate = self.gates.get(operation)
        if gate is not None:
            await gate.wait()

    def _land_stale_stops(self) -> None:
        for c in self.containers.values():
            if c.stop_lands:
                c.running, c.stop_pending, c.stop_lands = False, False, False
                self.calls.append(("stale_stop_landed", c.service))

    def remove_retained_by_hand(self) -> list[str]:
        """``docker rm -f`` of every retained ``.old-`` container; their ids."""
        gone = [c.id for c in self.containers.values() if ".old-" in c.name]
        for container_id in gone:
            del self.containers[container_id]
        return gone

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
            published_ports=c.published_ports,
        )  # fmt: skip

    # --- Engine protocol ------------------------------------------------------------

    async def ping(self) -> str:
        self._maybe_fail("ping")
        return "fake"

    async def discover(
        self, project: str, roles: Mapping[str, Role] | None = None
    ) -> dict[str, StackService]:
        self._maybe_fail("discover")
        self._land_stale_stops()
        services: dict[str, list[ServiceContainer]] = {}
        for c in self.containers.values():
            beside = is_next_container(c.name, c.labels)
            if ".old-" not in c.name and "oneoff" not in c.labels and not beside:
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
        self._land_stale_stops()
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
        if on_progress is not None:  # two layers of 3 MB each, reported as the engine does
            for done in range(0, PULL_BYTES + 1, PULL_BYTES // 4):
                status = "Downloading" if done < PULL_BYTES else "Pull complete"
                layers = 2 * done // PULL_BYTES
                on_progress(PullProgress(image, 2, layers, done, PULL_BYTES, status))
        self.present.add(image)
        return "id-" + image

    async def stop(self, container_id: str, timeout: float) -> None:
        self._maybe_fail("stop")
        container = self.containers[container_id]
        container.stop_pending = container.running
        await self._hang_if("stop")
        self.calls.append(("stopped", container.service))
        container.running, container.stop_pending = False, False

    async def start(self, container_id: str) -> None:
        self._maybe_fail("start")
        container = self.containers[container_id]
        self.calls.append(("started", container.service))
        if container.stop_pending:
            container.stop_lands = True  # still "running": a no-op, killed right after
        container.running = True

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
        return RetainedContainer(
            old.service, name, new.id, old.id, old.name, policy, was_running,
            **self._old_image_and_spec(old, policy),
        )  # fmt: skip

    async def start_alongside(
        self, container_id: str, image: str, run_id: str
    ) -> RetainedContainer:
        self._maybe_fail("start_alongside")
        old = self.containers[container_id]
        if old.published_ports:
            raise EngineConflict(f"{old.name} publishes host ports: it cannot run twice")
        new = self._add(old.service, image)
        new.name, new.labels = next_name(old.name, run_id), {RUN_LABEL: run_id}
        self.calls.append(("started_alongside", old.service))
        await self._hang_if("start_alongside")
        policy = dict(old.restart_policy)
        return RetainedContainer(
            old.service, old.name, new.id, old.id, f"{old.name}.old-{run_id}", policy,
            old.running, **self._old_image_and_spec(old, policy),
        )  # fmt: skip

    async def share_aliases(self, retained: RetainedContainer) -> None:
        self._maybe_fail("share_aliases")
        self.calls.append(("shared_aliases", retained.service))

    async def promote(self, retained: RetainedContainer, stop_timeout: float) -> RetainedContainer:
        self._maybe_fail("promote")
        old, new = self.containers[retained.old_id], self.containers[retained.new_id]
        old.restart_policy = {"Name": "no"}
        await self.ensure_stopped(old.id, stop_timeout)
        await self._hang_if("promote")  # killed half-way: old stopped, names not swapped
        old.name, new.name = retained.old_name, retained.name
        self.calls.append(("promoted", retained.service))
        return retained

    def _old_image_and_spec(self, old: FakeContainer, policy: dict[str, Any]) -> dict[str, Any]:
        body = {"Image": old.image, "Labels": dict(old.labels), "RestartPolicy": dict(policy)}
        return {
            "old_image": old.image, "old_image_id": "id-" + old.image,
            "old_repo_digest": old.image if "@" in old.image else None,
            "old_spec": {"body": body, "extra_networks": {}},
        }  # fmt: skip

    async def restore_retained(
        self, retained: RetainedContainer, start: bool = True, stop_timeout: float = 10.0
    ) -> ServiceContainer:
        """Converges like the real one: every step checks first; a removed old
        container is created again from ``old_spec`` (pulled only if its image is gone)."""
        self._maybe_fail("restore_retained")
        run_id = retained.old_name.removeprefix(f"{retained.name}.old-")
        self.containers.pop(retained.new_id, None)
        for c in list(self.containers.values()):
            if c.name == retained.name and c.id != retained.old_id:
                if c.labels.get(RESTORED_FROM_LABEL) == retained.old_id:
                    continue
                if c.labels.get(RUN_LABEL) != run_id:
                    raise EngineConflict(f"{c.id} holds {retained.name}; not created by the run")
                del self.containers[c.id]
        old = self.containers.get(retained.old_id) or next(
            (c for c in self.containers.values()
             if c.labels.get(RESTORED_FROM_LABEL) == retained.old_id), None,
        )  # fmt: skip
        if old is None:
            old = await self._recreate_old(retained)
        elif old.running and old.name != retained.name:
            await self.ensure_stopped(old.id, stop_timeout)
        old.name, old.restart_policy = retained.name, dict(retained.old_restart_policy)
        if start:
            return await self.ensure_running(old.id, stop_timeout, settle=0)
        return self._view(old)

    async def _recreate_old(self, retained: RetainedContainer) -> FakeContainer:
        if not retained.old_spec:
            raise RetainedContainerLost(f"old {retained.service} container gone, no spec")
        body = retained.old_spec["body"]
        if body["Image"] not in self.present:
            if not retained.old_repo_digest:
                raise RetainedContainerLost(f"old {retained.service} image gone")
            await self.pull(retained.old_repo_digest)
        old = self._add(retained.service, body["Image"], running=False)
        old.name = retained.name
        old.labels = {**body["Labels"], RESTORED_FROM_LABEL: retained.old_id}
        self.calls.append(("recreated_old", retained.service))
        return old

    async def discard_retained(self, retained: RetainedContainer) -> None:
        self._maybe_fail("discard_retained")
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

    async def container_env(self, container_id: str) -> dict[str, str]:
        if container_id not in self.containers:
            raise EngineNotFound(f"no container {container_id}")
        return {}

    async def put_file(
        self, container_id: str, local_path: Path, container_dir: str, *,
        name: str | None = None, uid: int = 0, gid: int = 0, mode: int = 0o600,
        timeout: float | None = None,
    ) -> str:  # fmt: skip
        self._maybe_fail("put_file")
        data = await asyncio.to_thread(local_path.read_bytes)
        return hashlib.sha256(data).hexdigest()

    async def wait_healthy(
        self, container_id: str, timeout: float, stability_window: float = 0
    ) -> ServiceContainer:
        self._maybe_fail("wait_healthy")
        await self._hang_if("wait_healthy")
        self._land_stale_stops()
        container = self.containers[container_id]
        if not container.running:
            raise HealthCheckFailed(f"{container.name} is exited (exit code 137)")
        if version_of(container.image) in self.unhealthy_versions:
            raise HealthCheckFailed(f"{container.name} not healthy after {timeout:g} s")
        return self._view(container)

    async def prepare_recreate(self, container_id: str, run_id: str) -> RetainedContainer:
        old = self.containers[container_id]
        policy = dict(old.restart_policy)
        return RetainedContainer(
            old.service, old.name, "", old.id, f"{old.name}.old-{run_id}", policy, old.running,
            **self._old_image_and_spec(old, policy),
        )  # fmt: skip

    async def ensure_stopped(self, container_id: str, timeout: float) -> None:
        self._maybe_fail("ensure_stopped")
        container = self.containers.get(container_id)
        if container is None:
            return
        self.calls.append(("ensure_stopped", container.service))
        container.running, container.stop_pending, container.stop_lands = False, False, False

    async def ensure_running(
        self, container_id: str, timeout: float, *, stop_timeout: float | None = None,
        settle: float = 2.0,
    ) -> ServiceContainer:  # fmt: skip
        """Without ``stop_timeout`` a pending stale stop is *not* caught (it lands
        after the settle period): the worst case the real engine allows."""
        self._maybe_fail("ensure_running")
        if container_id not in self.containers:
            raise EngineNotFound(f"no container {container_id}")
        if stop_timeout is not None:
            await self.ensure_stopped(container_id, stop_timeout)
        container = self.containers[container_id]
        self.calls.append(("ensure_running", container.service))
        if not container.running or container.stop_pending:
            await self.start(container_id)
        return self._view(container)

    # --- the rehearsal sandbox: kept apart from the stack's containers ------------------

    async def create_sandbox(self, postgres_id: str, project: str, run_id: str) -> Sandbox:
        self._maybe_fail("create_sandbox")
        live = self.containers[postgres_id]
        name = f"{project}_rehearsal_{run_id}"
        self.sandboxes[run_id] = Sandbox(
            run_id, project, f"net-{run_id}", name, f"s{next(_ids):011d}", f"{name}_postgres",
            ("postgres", live.name),
        )  # fmt: skip
        await self._hang_if("create_sandbox")
        return self.sandboxes[run_id]

    async def run_one_shot_in_sandbox(
        self, sandbox: Sandbox, template_id: str, image: str, run_id: str, timeout: float,
        command: Sequence[str] | None = None,
    ) -> OneShotResult:  # fmt: skip
        self._maybe_fail("run_one_shot_in_sandbox")
        if self.sandboxes.get(sandbox.run_id) != sandbox:
            raise EngineNotFound(f"no network {sandbox.network_name}")
        await self._hang_if("run_one_shot_in_sandbox")
        self.calls.append(("sandbox_one_shot", f"{image} {sandbox.network_name}"))
        if version_of(image) in self.failing_migrations:
            return OneShotResult(1, "migration 003: applying\nERROR: division by zero", 0.1)
        return OneShotResult(0, "migration 002: applying\nmigration 002: done", 0.1)

    async def remove_sandboxes(self, project: str, run_id: str) -> list[str]:
        self._maybe_fail("remove_sandboxes")
        sandbox = self.sandboxes.pop(run_id, None)
        return [sandbox.server_name, sandbox.network_name] if sandbox else []

    # The snapshot adapter is faked as a whole here (FakeSnapshots): nothing reads in place.
    async def start_sibling(self, of: str, source: str, tag: str, lifetime: float) -> str:
        raise EngineError("the fake engine starts no siblings")

    async def remove_siblings(
        self, of: str, tag: str | None = None, wait: bool = True
    ) -> list[str]:
        return []

    async def sweep_siblings(self, project: str) -> list[str]:
        return []

    async def host_path_of(self, path: PurePosixPath) -> str | None:
        return None


class FakeRegistry(NothingToClose):
    def __init__(self, versions: Sequence[str]) -> None:
        self.tags = {v: digest_of(v) for v in versions}
        self.fail: dict[str, Exception] = {}  # operation → error to raise

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.fail:
            raise self.fail[operation]

    async def resolve_digest(self, ref: ImageReference | str) -> str:
        self._maybe_fail("resolve_digest")
        reference = ImageReference.parse(ref) if isinstance(ref, str) else ref
        if reference.digest:
            return reference.digest
        if reference.tag not in self.tags:
            raise ManifestNotFound(f"{reference} not found")
        return self.tags[reference.tag]

    async def list_tags(self, ref: ImageReference | str) -> list[str]:
        self._maybe_fail("list_tags")
        return [*self.tags, "latest", "not-a-version"]

    async def get_manifest(
        self, ref: ImageReference | str, reference: str,
        accept: Sequence[str] = MANIFEST_MEDIA_TYPES,
    ) -> Manifest:  # fmt: skip
        raise ManifestNotFound(f"{ref}: no manifest {reference} (the fake holds tags only)")

    async def get_blob(self, ref: ImageReference | str, digest: str, max_bytes: int = 0) -> bytes:
        raise ManifestNotFound(f"{ref}: no blob {digest} (the fake holds tags only)")

    async def get_referrers(
        self, ref: ImageReference | str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        return None


class FakeSnapshots:
    """The snapshot adapter without databases: manifests in memory, ids in the real format.

    Ids are checked like the real store checks them (400 ``invalid_snapshot_id``, 404
    ``snapshot_not_found``); ``gates`` hold an operation (``create``, ``restore``) until the
    test sets the event.
    """

    def __init__(self, project: str = "demo") -> None:
        self.project = project
        self.manifests: dict[str, SnapshotManifest] = {}
        self.created: list[tuple[str, str | None]] = []
        self.restored: list[str] = []
        self.scratch: list[tuple[str, str]] = []
        self.sandbox_restores: list[tuple[str, str]] = []  # (snapshot id, server container)
        self.dropped: list[str] = []
        self.fail: dict[str, SupervisorError] = {}
        self.hang: set[str] = set()
        self.gates: dict[str, asyncio.Event] = {}
        self.checked: list[str] = []
        self.kept: list[str] = []  # databases a restore kept (keep_replaced_as), in order
        self.dropped_kept: list[str] = []
        self.influx_restored: list[bool] = []  # the ``influxdb`` flag of each restore call
        self.postgres_restored: list[bool] = []  # the ``postgres`` flag of each restore call
        self.create_parts: list[tuple[bool, bool, str | None]] = []  # postgres, influx, source
        self.copies: set[str] = set()  # rollback copies that exist
        self.dropped_copies: list[str] = []
        self.added_postgres: list[tuple[str, str]] = []  # (snapshot id, source database)
        self.live_missing = False  # the live database was dropped behind our back

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.fail:
            raise self.fail[operation]

    async def _held(self, operation: str) -> None:
        if operation in self.hang:
            await asyncio.Event().wait()
        gate = self.gates.get(operation)
        if gate is not None:
            await gate.wait()

    def add(
        self, reason: SnapshotReason = SnapshotReason.PRE_UPDATE, run_id: str | None = None,
        images: Mapping[str, str] | None = None, created_at: datetime | None = None,
        *, postgres: bool = True, influxdb: bool = True,
    ) -> SnapshotManifest:  # fmt: skip
        """A complete snapshot, as if taken earlier (no call is recorded)."""
        moment = created_at or datetime.now(UTC)
        manifest = SnapshotManifest(
            id=new_snapshot_id(moment), project=self.project, reason=reason, run_id=run_id,
            created_at=moment, images=dict(images or {}),
            files=[FileEntry(name="postgres.dump", size=1000, sha256="a" * 64),
                   FileEntry(name="postgres-globals.sql", size=10, sha256="c" * 64),
                   FileEntry(name="influxdb.tar", size=234, sha256="b" * 64)],
            postgres=PostgresDump(
                database=FAKE_DATABASE, owner="app", encoding="UTF8", collate="C", ctype="C",
                server_version="15.14", size_bytes=1000, dump_file="postgres.dump",
                globals_file="postgres-globals.sql",
            ),
            influxdb=InfluxBackup(major_version=1, server_version="1.6.7",
                                  archive_file="influxdb.tar", databases=["metrics"]),
        )  # fmt: skip
        if not postgres or not influxdb:
            manifest = manifest.model_copy(update={
                "postgres": manifest.postgres if postgres else None,
                "influxdb": manifest.influxdb if influxdb else None,
                "files": [f for f in manifest.files
                          if (postgres or "postgres" not in f.name)
                          and (influxdb or "influx" not in f.name)],
            })  # fmt: skip
        self.manifests[manifest.id] = manifest
        return manifest

    async def estimate_size(self) -> int:
        self._maybe_fail("estimate_size")
        return 1_000_000

    async def preflight(self) -> int:
        """``fail["preflight"]`` stands for a full or unwritable backups disk."""
        self._maybe_fail("preflight")
        return await self.estimate_size()

    async def check(self, snapshot_id: str) -> SnapshotManifest:
        """``fail["check"]`` (e.g. SnapshotCorrupt) stands for a damaged snapshot."""
        manifest = await self.get(snapshot_id)
        self._maybe_fail("check")
        self.checked.append(snapshot_id)
        return manifest

    async def create(
        self, reason: SnapshotReason, run_id: str | None = None,
        images: Mapping[str, str] | None = None, progress: SnapshotProgressCallback | None = None,
        *, postgres: bool = True, influxdb: bool = True, postgres_source: str | None = None,
    ) -> SnapshotManifest:  # fmt: skip
        self._maybe_fail(f"create:{reason}")
        await self._held(f"create:{reason}")
        await self._held("create")
        self.created.append((str(reason), run_id))
        self.create_parts.append((postgres, influxdb, postgres_source))
        if progress is not None:
            progress(SnapshotProgress("done", "fake snapshot written", 100))
        return self.add(
            SnapshotReason(reason), run_id, images, postgres=postgres, influxdb=influxdb
        )

    async def restore(
        self, snapshot_id: str, progress: SnapshotProgressCallback | None = None, *,
        keep_replaced_as: str | None = None, influxdb: bool = True, postgres: bool = True,
    ) -> SnapshotManifest:  # fmt: skip
        manifest = await self.get(snapshot_id)
        self.influx_restored.append(influxdb)
        self.postgres_restored.append(postgres)
        if not postgres:
            self._maybe_fail("restore")
            await self._held("restore")
            self.restored.append(snapshot_id)
            return manifest
        if keep_replaced_as is not None and keep_replaced_as in self.kept:
            return manifest  # like the real one: the swap happened already, nothing to do
        self._maybe_fail("restore")
        await self._held("restore")
        self.restored.append(snapshot_id)
        if keep_replaced_as is not None and not self.live_missing:
            self.kept.append(keep_replaced_as)
        self.live_missing = False  # the restore created it
        return manifest

    async def add_postgres(
        self, snapshot_id: str, source: str, progress: SnapshotProgressCallback | None = None
    ) -> SnapshotManifest:
        manifest = await self.get(snapshot_id)
        if manifest.postgres is not None:
            return manifest
        self._maybe_fail("add_postgres")
        await self._held("add_postgres")
        self.added_postgres.append((snapshot_id, source))
        full = self.add()
        amended = manifest.model_copy(
            update={"postgres": full.postgres, "files": [*manifest.files, *full.files[:2]]}
        )
        del self.manifests[full.id]
        self.manifests[snapshot_id] = amended
        return amended

    async def copy_database(self, tag: str) -> str | None:
        """``fail["copy_database"]`` stands for a full database volume or a refusal;
        ``fail["copy_database:after"]`` for a call that failed after the server made it."""
        self._maybe_fail("copy_database")
        await self._held("copy_database")
        name = f"{FAKE_DATABASE}__copy_{tag}"
        self.copies.add(name)
        self._maybe_fail("copy_database:after")  # the server made it, the call failed
        return name

    async def swap_in_copy(self, tag: str) -> CopySwap:
        copy, kept = f"{FAKE_DATABASE}__copy_{tag}", f"{FAKE_DATABASE}__old_{tag}"
        if copy not in self.copies:  # like the real one: done before, or gone
            return CopySwap(swapped=True, kept=kept) if kept in self.kept else CopySwap(False)
        if kept in self.kept:  # like the real one: both are kept, nothing is renamed
            raise RestoreFailed(f"database {kept} exists already; {copy} was not swapped in")
        self._maybe_fail("swap_in_copy")
        await self._held("swap_in_copy")
        self.copies.remove(copy)
        if self.live_missing:
            self.live_missing = False  # the copy is the live database now
            return CopySwap(swapped=True)
        self.kept.append(kept)
        return CopySwap(swapped=True, kept=kept)

    async def run_databases(self, tag: str) -> RunDatabases:
        self._maybe_fail("run_databases")
        copy, kept = f"{FAKE_DATABASE}__copy_{tag}", f"{FAKE_DATABASE}__old_{tag}"
        return RunDatabases(
            copy=copy if copy in self.copies else None, kept=kept if kept in self.kept else None
        )

    async def drop_copy(self, tag: str) -> None:
        name = f"{FAKE_DATABASE}__copy_{tag}"
        self._maybe_fail("drop_copy")
        self.copies.discard(name)
        self.dropped_copies.append(name)

    async def restore_postgres_into(self, snapshot_id: str, database: str) -> None:
        self._maybe_fail("restore_postgres_into")
        self.scratch.append((snapshot_id, database))

    async def restore_postgres_into_sandbox(self, snapshot_id: str, container_id: str) -> None:
        self._maybe_fail("restore_postgres_into_sandbox")
        await self._held("restore_postgres_into_sandbox")
        self.sandbox_restores.append((snapshot_id, container_id))

    async def drop_database(self, database: str) -> None:
        self.dropped.append(database)

    async def drop_kept_database(self, name: str) -> None:
        self._maybe_fail("drop_kept_database")
        if name in self.kept:
            self.kept.remove(name)
        self.dropped_kept.append(name)

    async def get(self, snapshot_id: str) -> SnapshotManifest:
        check_snapshot_id(snapshot_id)
        try:
            return self.manifests[snapshot_id]
        except KeyError:
            raise SnapshotNotFound(f"no snapshot {snapshot_id}", snapshot_id=snapshot_id) from None

    async def verify(self, snapshot_id: str) -> SnapshotManifest:
        return await self.get(snapshot_id)

    async def delete(self, snapshot_id: str) -> None:
        await self.get(snapshot_id)
        del self.manifests[snapshot_id]

    async def apply_retention(self, protected: set[str]) -> list[str]:
        self._maybe_fail("apply_retention")
        return []

    async def list(self) -> list[SnapshotManifest]:  # last: shadows the builtin
        return sorted(self.manifests.values(), key=lambda m: m.created_at, reverse=True)


class FakeSignatures:
    def __init__(self, policy: Policy = Policy.ENFORCE) -> None:
        self.policy = policy
        self.unsigned: set[str] = set()  # digests without a valid signature

    async def verify_image(self, image: str, policy: Policy) -> SignatureVerdict:
        """``supervisor verify IMAGE``: any image not listed in ``unsigned`` is signed."""
        ok = image not in self.unsigned
        return SignatureVerdict(
            service="-", image=image, policy=policy, verified=ok,
            reason="signed by the test key" if ok else "no signature found",
        )  # fmt: skip

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


if TYPE_CHECKING:  # mypy --strict on tests/support proves every fake fits its Protocol
    from supervisor.engine.protocol import Engine
    from supervisor.registry.protocol import RegistryClient
    from supervisor.update.ports import Prober, SignatureVerifier, Snapshots

    def _fits(
        engine: FakeEngine, registry: FakeRegistry, snapshots: FakeSnapshots,
        signatures: FakeSignatures, prober: FakeProber,
    ) -> tuple[Engine, RegistryClient, Snapshots, SignatureVerifier, Prober]:  # fmt: skip
        return engine, registry, snapshots, signatures, prober
