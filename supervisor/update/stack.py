"""What the managed stack looks like right now, read from the engine.

Services are found by Compose labels; the settings say which of them the
supervisor manages and in which role. The current version is, in order of
trust: the last-good record when the running digests match it, the image's
``org.opencontainers.image.version`` label, or the tag the container was
created from.

``/admin/version`` must answer while a run recreates a service (its container is briefly
gone) or a container restarts, so :func:`inspect_stack` has a lenient mode: a missing service
is reported in :attr:`StackView.status` instead of refusing the whole view. Starting a run
uses the strict mode: it needs every service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from supervisor.config import Settings
from supervisor.const import Role
from supervisor.engine.models import StackService
from supervisor.engine.protocol import Engine
from supervisor.exceptions import ServiceNotFound
from supervisor.reference import ImageReference
from supervisor.statedir import StateStore
from supervisor.update.models import RunRecord, ServiceTarget, StartRequest
from supervisor.update.release import Release
from supervisor.update.run import StackLayout
from supervisor.update.stages import Stage

VERSION_LABEL = "org.opencontainers.image.version"
MOVING_ROLES = (Role.APP, Role.MIGRATIONS)
MISSING = "missing"


@dataclass(frozen=True)
class ServiceStatus:
    """How a managed service's containers are doing, as a UI shows it."""

    state: str  # missing, or the engine's: running, restarting, created, exited, paused …
    health: str | None = None  # healthy / unhealthy / starting; None without a healthcheck
    containers: int = 0


@dataclass(frozen=True)
class StackView:
    layout: StackLayout
    services: dict[str, ServiceTarget]  # the services an update moves (app + migrations)
    repositories: dict[str, ImageReference]  # service → repository (no tag, no digest)
    version: str | None
    # every managed service (all roles): missing, restarting, running …
    status: dict[str, ServiceStatus] = field(default_factory=dict)
    # app service → the host ports its containers publish (start-first cannot run them twice)
    published: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return sorted(name for name, s in self.status.items() if s.state == MISSING)

    def new_record(
        self,
        update_id: str,
        request: StartRequest,
        release: Release,
        trigger: str,
        rehearse: bool,
        update_order: str = "stop-first",
    ) -> RunRecord:
        services = {
            name: target.model_copy(
                update={
                    "target_image": str(release.images[name].with_tag(release.version)),
                    "target_digest": release.images[name].by_digest(),
                }
            )
            for name, target in self.services.items()
        }
        from supervisor.update.steps import phase_text

        return RunRecord(
            update_id=update_id,
            state=Stage.PREFLIGHT,
            phase=phase_text(Stage.PREFLIGHT),
            trigger=trigger,
            request=request,
            from_version=self.version,
            target_version=release.version,
            services=services,
            rehearse=rehearse,
            update_order=update_order,
        )


async def inspect_stack(
    engine: Engine, settings: Settings, state: StateStore, *, strict: bool = True
) -> StackView:
    """The stack now; ``strict``: refuse (404 ``service_not_found``) when a service is missing."""
    discovered = await engine.discover(settings.compose_project, settings.services)
    discovered = {name: s for name, s in discovered.items() if s.containers}
    missing = sorted(set(settings.services) - set(discovered))
    if missing and strict:
        raise ServiceNotFound(
            f"managed services not found in compose project {settings.compose_project!r}: "
            f"{', '.join(missing)} (found: {', '.join(sorted(discovered)) or 'no containers'})"
        )
    moving = settings.services_with_role(*MOVING_ROLES)
    last_good = await asyncio.to_thread(state.read_last_good)
    targets: dict[str, ServiceTarget] = {}
    repositories: dict[str, ImageReference] = {}
    for name in moving:
        if name not in discovered:
            continue
        service = discovered[name]
        reference = ImageReference.parse(service.image or "")
        repositories[name] = ImageReference(reference.registry, reference.repository)
        digest = service.repo_digest
        current_digest = f"{repositories[name].name}@{digest}" if digest else None
        if settings.services[name] is Role.MIGRATIONS and last_good and name in last_good.images:
            # The migrations container only ever runs as a one-shot from the target
            # image; its own container keeps the image Compose created it with.
            current_digest = last_good.images[name]
        targets[name] = ServiceTarget(
            service=name,
            role=settings.services[name],
            container_ids=[c.id for c in service.containers],
            current_image=service.image,
            current_digest=current_digest,
        )
    version = await _current_version(engine, state, discovered, targets, settings.app_services)
    for target in targets.values():
        target.current_version = version
    layout = StackLayout(
        app_order=list(settings.app_services),
        containers={
            s: list(targets[s].container_ids) for s in settings.app_services if s in targets
        },
        migrations_container=_first_container(discovered, settings.service_for(Role.MIGRATIONS)),
        postgres_container=_first_container(discovered, settings.service_for(Role.POSTGRES)),
    )
    status = {name: _status(discovered.get(name)) for name in settings.services}
    published = {
        name: tuple(sorted({p for c in discovered[name].containers for p in c.published_ports}))
        for name in settings.app_services
        if name in discovered
    }
    return StackView(layout, targets, repositories, version, status, published)


def _status(service: StackService | None) -> ServiceStatus:
    if service is None or not service.containers:
        return ServiceStatus(MISSING)
    states = [c.state for c in service.containers]
    # The worst state wins: one restarting replica makes the service "restarting".
    state = next((s for s in ("restarting", "dead", "exited", "created", "paused") if s in states),
                 states[0])  # fmt: skip
    healths = [c.health for c in service.containers if c.health]
    health = next(
        (h for h in ("unhealthy", "starting") if h in healths), healths[0] if healths else None
    )
    return ServiceStatus(state, health, len(service.containers))


def _first_container(discovered: dict[str, StackService], service: str | None) -> str | None:
    if service is None or service not in discovered or not discovered[service].containers:
        return None
    return discovered[service].containers[0].id


async def _current_version(
    engine: Engine,
    state: StateStore,
    discovered: dict[str, StackService],
    targets: dict[str, ServiceTarget],
    app_services: list[str],
) -> str | None:
    last_good = await asyncio.to_thread(state.read_last_good)
    if (
        last_good is not None
        and targets
        and all(
            last_good.images.get(name) == target.current_digest for name, target in targets.items()
        )
    ):
        return last_good.version
    for name in app_services:
        if name not in discovered:
            continue
        containers = discovered[name].containers
        if containers:
            labels = await engine.image_labels(containers[0].image_id)
            if labels.get(VERSION_LABEL):
                return labels[VERSION_LABEL]
            tag = ImageReference.parse(containers[0].image).tag
            if tag:
                return tag
    return None
