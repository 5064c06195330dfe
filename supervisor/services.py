"""The object graph of a running sidecar, built once from the settings.

::

    Settings ─▶ DockerEngine (through DOCKER_HOST / the proxy)
             ─▶ DistributionClient (registry; endpoint mapping, credentials)
             ─▶ SignaturePolicyVerifier(registry)
             ─▶ SnapshotService(engine, store on backup_dir)
             ─▶ HttpProber, ManifestSource (one aiohttp session)
             ─▶ StateStore(state_dir)
             └─▶ UpdateManager(RunDeps(...), registry, manifest)

Everything is handed in through constructors; nothing looks anything up
globally, so tests build the same graph with their own settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from supervisor.config import Settings
from supervisor.engine.docker_engine import DockerEngine
from supervisor.http_probe import HttpProber, ManifestSource
from supervisor.registry.client import DistributionClient
from supervisor.registry.credentials import CredentialStore
from supervisor.signatures.verifier import SignaturePolicyVerifier
from supervisor.snapshots.options import SnapshotOptions, compose_locator
from supervisor.snapshots.service import SnapshotService
from supervisor.snapshots.store import SnapshotStore
from supervisor.statedir import StateStore
from supervisor.update.manager import UpdateManager
from supervisor.update.run import RunDeps

_LOGGER = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: DockerEngine
    registry: DistributionClient
    session: aiohttp.ClientSession
    verifier: SignaturePolicyVerifier
    snapshots: SnapshotService
    manager: UpdateManager

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Close the network clients at the end."""
        try:
            yield
        finally:
            await self.registry.close()
            await self.session.close()
            await self.engine.close()

    @contextlib.asynccontextmanager
    async def manager_lifespan(self) -> AsyncIterator[None]:
        """Recover an interrupted run first, then serve; leave a running run to recovery."""
        recovered = await self.manager.startup()
        if recovered is not None:
            _LOGGER.warning("recovered run %s: %s", recovered.update_id, recovered.state)
        checker = asyncio.create_task(self._periodic_check(), name="release-check")
        try:
            yield
        finally:
            checker.cancel()
            await asyncio.gather(checker, return_exceptions=True)
            await self.manager.shutdown()

    async def _periodic_check(self) -> None:
        await asyncio.sleep(self.settings.first_check_delay)
        while True:
            try:
                latest = await self.manager.check()
                _LOGGER.info("release check: latest %s", latest.get("version"))
            except Exception:
                _LOGGER.warning("release check failed", exc_info=True)
            await asyncio.sleep(self.settings.check_interval)


def registry_credentials(settings: Settings) -> CredentialStore:
    store = (
        CredentialStore.from_docker_config(settings.docker_config)
        if settings.docker_config is not None
        else CredentialStore()
    )
    username, password = settings.registry_username, settings.registry_password
    if username and password:
        for host in _managed_registry_hosts(settings):
            store.add(host, username, password.get_secret_value())
    return store


def _managed_registry_hosts(settings: Settings) -> set[str]:
    """Registry hosts the operator's credentials are meant for (mirrors' keys included)."""
    hosts = set(settings.registry_mirrors)
    hosts.update(settings.insecure_registries)
    return hosts or {"docker.io"}


def build_runtime(settings: Settings) -> Runtime:
    credentials = registry_credentials(settings)

    def engine_auth(host: str) -> dict[str, str] | None:
        found = credentials.get(host)
        if found is None:
            return None
        return {"username": found.username, "password": found.password, "serveraddress": host}

    engine = DockerEngine(settings.engine_url, registry_auth=engine_auth)
    registry = DistributionClient(
        mirrors=settings.registry_mirrors,
        insecure=settings.insecure_registries,
        credentials=credentials,
    )
    session = aiohttp.ClientSession()
    verifier = SignaturePolicyVerifier.from_settings(settings, registry)
    store = SnapshotStore(settings.backup_dir, settings.compose_project)
    snapshots = SnapshotService(
        engine,
        store,
        SnapshotOptions.from_settings(settings, settings.config_paths),
        compose_locator(engine, settings.compose_project, settings.services),
    )
    deps = RunDeps(
        settings=settings,
        engine=engine,
        snapshots=snapshots,
        signatures=verifier,
        prober=HttpProber(session),
        state=StateStore(settings.state_dir),
    )
    manifest = (
        ManifestSource(settings.release_manifest_url, session)
        if settings.release_manifest_url
        else None
    )
    manager = UpdateManager(deps, registry, manifest)
    return Runtime(settings, engine, registry, session, verifier, snapshots, manager)
