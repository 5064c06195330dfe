"""The real sidecar behind the API, CLI and client unit tests, over fakes of the adapters only.

:func:`api_world` opens :func:`supervisor.services.build_runtime` with the fakes of
:mod:`tests.support.fakes` in place of the engine, the image registry, the snapshot store,
the signature verifier and the prober: the :class:`~supervisor.update.manager.UpdateManager`,
its views, the badge, the history and the API are the production code. A test steers a run
through the adapters, as the real world would: ``world.hold("pull")`` keeps a run in ``pull``
(the engine's pull waits), ``world.engine.unhealthy_versions`` makes a health check fail,
``world.snapshots.fail[...]`` makes a snapshot fail.

The stack: project ``demo`` with ``app`` and ``python_backend`` (role app), ``migrations`` and
``postgres``, running :data:`CURRENT`; the registry holds :data:`VERSIONS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from supervisor.api import ApiOptions, create_app
from supervisor.config import Settings, load_settings
from supervisor.services import Runtime, build_runtime
from supervisor.signatures.models import Policy
from supervisor.update.manager import UpdateManager
from supervisor.update.models import RunEvent, RunRecord, StartRequest
from tests.support.fakes import (
    FakeEngine,
    FakeProber,
    FakeRegistry,
    FakeSignatures,
    FakeSnapshots,
)

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
VERSIONS = ("1.4.0", "1.4.1", "1.4.2", "1.5.0b1")
CURRENT = "1.4.1"
LATEST = "1.4.2"  # the newest stable release (1.5.0b1 is a beta)
PROJECT = "demo"


def auth(token: str | None = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def sidecar_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The sidecar's environment for the fake stack (``overrides``: ``name=value`` without the
    ``SUPERVISOR_`` prefix); tokens come from files, as in production."""
    for name in ("state", "backups"):
        (tmp_path / name).mkdir(exist_ok=True)
    for name, token in (("admin", ADMIN), ("read", READ)):
        (tmp_path / f"{name}.token").write_text(token + "\n")
    env = {
        "SUPERVISOR_COMPOSE_PROJECT": PROJECT,
        "SUPERVISOR_SERVICES": "app=app,python_backend=app,migrations=migrations,postgres=postgres",
        "SUPERVISOR_START_ORDER": "python_backend,app",
        "SUPERVISOR_STATE_DIR": str(tmp_path / "state"),
        "SUPERVISOR_BACKUP_DIR": str(tmp_path / "backups"),
        "SUPERVISOR_SIGNATURE_POLICY": "off",
        "SUPERVISOR_REHEARSE": "false",
        "SUPERVISOR_ADMIN_TOKEN_FILE": str(tmp_path / "admin.token"),
        "SUPERVISOR_READ_TOKEN_FILE": str(tmp_path / "read.token"),
        "SUPERVISOR_MAX_BODY_BYTES": "4096",
    }
    env.update({f"SUPERVISOR_{key.upper()}": value for key, value in overrides.items()})
    return {key: value for key, value in env.items() if value != ""}


@dataclass
class Adapters:
    """The fakes a world is built over; also what ``supervisor serve`` gets in CLI tests."""

    engine: FakeEngine
    registry: FakeRegistry
    snapshots: FakeSnapshots
    signatures: FakeSignatures
    prober: FakeProber

    @classmethod
    def fresh(cls) -> Adapters:
        return cls(
            engine=FakeEngine(CURRENT, PROJECT),
            registry=FakeRegistry(VERSIONS),
            snapshots=FakeSnapshots(PROJECT),
            signatures=FakeSignatures(Policy.OFF),
            prober=FakeProber(),
        )

    def open_runtime(self, settings: Settings) -> AbstractAsyncContextManager[Runtime]:
        """:func:`build_runtime` over these fakes (the CLI's ``open_runtime`` seam)."""
        return build_runtime(
            settings,
            engine=self.engine,
            registry=self.registry,
            snapshots=self.snapshots,
            signatures=self.signatures,
            prober=self.prober,
        )


@dataclass
class ApiWorld:
    settings: Settings
    adapters: Adapters
    runtime: Runtime

    @property
    def engine(self) -> FakeEngine:
        return self.adapters.engine

    @property
    def registry(self) -> FakeRegistry:
        return self.adapters.registry

    @property
    def snapshots(self) -> FakeSnapshots:
        return self.adapters.snapshots

    @property
    def manager(self) -> UpdateManager:
        return self.runtime.manager

    def app(self, keepalive: float = 0.05, **options: Any) -> web.Application:
        """The production app around this world's manager, with its serving lifetime."""
        return create_app(
            self.settings,
            self.runtime.manager,
            self.runtime.snapshots,
            options=ApiOptions(sse_keepalive=keepalive, **options),
            lifespans=[self.runtime.serving],
            policy=self.runtime.autopilot,
        )

    # --- steering a run through the adapters --------------------------------------------

    def hold(self, operation: str) -> None:
        """The engine's ``operation`` (pull, stop, recreate, wait_healthy …) waits from now."""
        self.engine.gates[operation] = asyncio.Event()

    def release(self, *operations: str) -> None:
        """Let held operations go (all of them when none are named)."""
        for name in operations or tuple(self.engine.gates):
            self.engine.gates.pop(name).set()

    async def reach(self, update_id: str, state: str, timeout: float = 5.0) -> RunRecord:
        """Wait until the run is in ``state`` (journaled and announced)."""
        for _ in range(int(timeout / 0.005)):
            record = self.manager.status(update_id)
            if record.state == state:
                return record
            await asyncio.sleep(0.005)
        raise AssertionError(f"run {update_id} never reached {state}; it is in {record.state}")

    async def start(self, target: str | None = None, **request: Any) -> RunRecord:
        return await self.manager.start(
            StartRequest.model_validate({"target_version": target, **request})
        )

    async def events(self, update_id: str) -> list[RunEvent]:
        """Every event of an ended run, as the manager replays them to a new subscriber."""
        return [event async for event in self.manager.events(update_id)]


def load_world_settings(tmp_path: Path, **overrides: str) -> Settings:
    return load_settings(sidecar_env(tmp_path, **overrides))


@asynccontextmanager
async def api_world(tmp_path: Path, **overrides: str) -> AsyncIterator[ApiWorld]:
    """A fresh world; ``overrides`` are settings (``restore_over_http="true"`` …)."""
    settings = load_world_settings(tmp_path, **overrides)
    adapters = Adapters.fresh()
    async with adapters.open_runtime(settings) as runtime:
        try:
            yield ApiWorld(settings, adapters, runtime)
        finally:
            await runtime.manager.shutdown()  # a run a test left held is cancelled
