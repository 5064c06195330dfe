"""The object graph of a sidecar, built once from the settings: the one place to wire.

::

    Settings ─▶ Engine        DockerEngine through DOCKER_HOST / the proxy
             ─▶ RegistryClient DistributionClient (endpoint mapping, credentials)
             ─▶ Signatures     SignaturePolicyVerifier(registry)
             ─▶ Snapshots      SnapshotService(engine, store on backup_dir)
             ─▶ Prober         HttpProber ┐ one aiohttp session
             ─▶ ManifestSource            ┘ (when a release manifest is configured)
             ─▶ StateStore(state_dir)    ┐ one DamageReport: damaged state files, counted
             ─▶ StackLock(state_dir)     │ the cross-process lock of every stack writer
             └─▶ UpdateManager(RunDeps(...), registry, manifest)

:func:`build_runtime` is an async context manager: every network client is created inside it
(an :class:`~contextlib.AsyncExitStack`) and closed when it is left, so no client exists
before the lifespan that closes it, and a failure half-way through wiring (a bad signing key,
say) still closes what was opened. ``serve`` runs the API inside it; the local commands
(``restore``, ``verify``) use the same graph for one call. Tests hand in fakes of the adapter
Protocols (``engine=``, ``registry=`` …) and get the real manager, views and snapshot layer
around them: a fake stands in for an adapter, never for the domain.

:meth:`Runtime.serving` is the lifetime of a *serving* sidecar on top: start-up recovery
before the first request, the release check at start-up and periodically, and leaving a
running run to recovery at shutdown. A local command must not enter it (a second manager
must not recover or auto-update).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import aiohttp

from supervisor.config import Settings
from supervisor.damage import DamageReport
from supervisor.engine.docker_engine import DockerEngine, RegistryAuthProvider
from supervisor.engine.protocol import Engine
from supervisor.http_probe import HttpProber, ManifestSource
from supervisor.notify.config import NotificationSettings
from supervisor.notify.dispatch import Notifier
from supervisor.oplock import StackLock
from supervisor.policy.autopilot import Autopilot
from supervisor.policy.effective import EffectivePolicy
from supervisor.policy.maturity import image_created
from supervisor.policy.state import PolicyStore
from supervisor.registry.client import DistributionClient
from supervisor.registry.credentials import CredentialStore
from supervisor.registry.protocol import RegistryClient
from supervisor.signatures.models import Policy, SignatureVerdict
from supervisor.signatures.signers import TrustedSigners
from supervisor.signatures.verifier import SignaturePolicyVerifier
from supervisor.snapshots.options import SnapshotOptions, compose_locator
from supervisor.snapshots.service import SnapshotService
from supervisor.snapshots.store import SnapshotStore
from supervisor.statedir import StateStore
from supervisor.update.freshness import check_periodically
from supervisor.update.manager import UpdateManager
from supervisor.update.ports import Prober, SignatureVerifier, Snapshots
from supervisor.update.run import RunDeps

_LOGGER = logging.getLogger(__name__)


class Signatures(SignatureVerifier, Protocol):
    """The run's per-service verdicts, plus ``supervisor verify IMAGE`` under any policy."""

    async def verify_image(self, image: str, policy: Policy) -> SignatureVerdict:
        """The verdict for ``image`` (``name@sha256:…``) under ``policy``; never raises for a
        refusal (the verdict says why)."""
        ...


@dataclass
class Runtime:
    """The wired sidecar: adapters, the state directory and the update manager over them."""

    settings: Settings
    engine: Engine
    registry: RegistryClient  # the image registry (OCI distribution), not a metrics registry
    snapshots: Snapshots
    signatures: Signatures
    prober: Prober
    state: StateStore
    manager: UpdateManager
    stack_lock: StackLock  # one per process; every writer of the stack holds it (oplock.py)
    damage: DamageReport  # damaged state files met so far (for /metrics)
    policy: EffectivePolicy  # env, policy file and labels merged; reloadable
    autopilot: Autopilot  # unattended updates
    notifier: Notifier

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Recover an interrupted run first, then serve; leave a running run to recovery."""
        recovered = await self.manager.startup()
        if recovered is not None:
            _LOGGER.warning("recovered run %s: %s", recovered.update_id, recovered.state)
        await self.notifier.start()
        checker = asyncio.create_task(self._periodic_check(), name="release-check")
        autopilot = asyncio.create_task(self.autopilot.run_forever(), name="auto-apply")
        try:
            yield
        finally:
            for task in (autopilot, checker):
                task.cancel()
            await asyncio.gather(autopilot, checker, return_exceptions=True)
            await self.manager.shutdown()
            await self.autopilot.settle()
            await self.notifier.stop()

    async def _periodic_check(self) -> None:
        """The interval is read anew each time: a policy reload may change it."""
        await check_periodically(
            self.manager.check,
            self.settings.first_check_delay,
            lambda: self.policy.settings.check_interval,
        )


def registry_credentials(settings: Settings) -> CredentialStore:
    return CredentialStore.from_settings(settings)


@contextlib.asynccontextmanager
async def build_runtime(
    settings: Settings,
    *,
    engine: Engine | None = None,
    registry: RegistryClient | None = None,
    snapshots: Snapshots | None = None,
    signatures: Signatures | None = None,
    prober: Prober | None = None,
) -> AsyncIterator[Runtime]:
    """The sidecar's object graph for the duration of the ``async with``; call in the loop.

    An adapter given here is used as it is (and left open: its owner closes it); one not
    given is built from ``settings`` and closed on the way out, in reverse order.
    """
    async with AsyncExitStack() as stack:
        sessions: list[aiohttp.ClientSession] = []

        async def http_session() -> aiohttp.ClientSession:
            """One session for the probes and the release manifest, opened on demand."""
            if not sessions:
                sessions.append(await stack.enter_async_context(aiohttp.ClientSession()))
            return sessions[0]

        damage, stack_lock = DamageReport(), StackLock(settings.state_dir)
        policy = EffectivePolicy(settings)
        policy.load()  # a bad policy file refuses the start, like a bad variable
        env, settings = settings, policy.settings
        credentials = registry_credentials(settings)
        if engine is None:
            engine = await stack.enter_async_context(
                DockerEngine(settings.engine_url, registry_auth=_engine_auth(credentials))
            )
        if registry is None:
            registry = await stack.enter_async_context(
                DistributionClient(
                    mirrors=settings.registry_mirrors,
                    insecure=settings.insecure_registries,
                    credentials=credentials,
                )
            )
        if signatures is None:
            signatures = SignaturePolicyVerifier(
                registry,
                TrustedSigners.from_settings(settings),
                lambda service: policy.settings.policy_for(service),  # reloadable
            )
        if snapshots is None:
            snapshots = SnapshotService(
                engine,
                SnapshotStore(settings.backup_dir, settings.compose_project, damage),
                SnapshotOptions.from_settings(settings, settings.config_paths),
                compose_locator(engine, settings.compose_project, settings.services),
            )
        if prober is None:
            prober = HttpProber(await http_session())
        manifest = (
            ManifestSource(settings.release_manifest_url, await http_session())
            if settings.release_manifest_url
            else None
        )
        state = StateStore(settings.state_dir, damage)
        deps = RunDeps(
            settings=settings,
            engine=engine,
            snapshots=snapshots,
            signatures=signatures,
            prober=prober,
            state=state,
        )
        manager = UpdateManager(deps, registry, manifest, stack_lock=stack_lock)
        notifier = Notifier(policy.notifications)

        channels = [policy.notifications]

        def policy_changed(new: Settings, notices: NotificationSettings | None) -> None:
            manager.use_settings(new)
            # A reload reads the file anew (its url/secret files too); a label change keeps
            # the same document, and the channels as they are.
            if notices is not channels[0]:
                channels[0] = notices
                notifier.reconfigure(notices or NotificationSettings())

        policy.listeners.append(policy_changed)
        autopilot = Autopilot(
            manager,
            PolicyStore(settings.state_dir, damage),
            policy,
            notifier,
            created=_created(manager, registry),
        )
        yield Runtime(
            env, engine, registry, snapshots, signatures, prober, state, manager,
            stack_lock, damage, policy, autopilot, notifier,
        )  # fmt: skip


def _created(
    manager: UpdateManager, registry: RegistryClient
) -> Callable[[str], Awaitable[datetime | None]]:
    """The creation time of a release's first app image (``maturity_from = image_created``),
    remembered per version."""
    known: dict[str, datetime | None] = {}

    async def created(version: str) -> datetime | None:
        if version not in known:
            stack = await manager.current_stack()
            name = next(iter(stack.repositories))
            known[version] = await image_created(registry, stack.repositories[name], version)
        return known[version]

    return created


def _engine_auth(credentials: CredentialStore) -> RegistryAuthProvider:
    def engine_auth(host: str) -> dict[str, str] | None:
        found = credentials.get(host)
        if found is None:
            return None
        return {"username": found.username, "password": found.password, "serveraddress": host}

    return engine_auth


if TYPE_CHECKING:  # mypy proves the real adapters fit the seams above

    def _fits(snapshots: SnapshotService, verifier: SignaturePolicyVerifier) -> tuple[
        Snapshots, Signatures
    ]:  # fmt: skip
        return snapshots, verifier
