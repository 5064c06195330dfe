"""What the managed stack looks like right now, read from the engine.

Services are found by Compose labels; the settings say which of them the
supervisor manages and in which role. The current version is, in order of
trust: the last-good record when the running digests match it, the image's
``org.opencontainers.image.version`` label, or the tag the container was
created from.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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
from supervisor.update.stages import PHASE_TEXT, Stage

VERSION_LABEL = "org.opencontainers.image.version"
MOVING_ROLES = (Role.APP, Role.MIGRATIONS)


@dataclass(frozen=True)
class StackView:
    layout: StackLayout
    services: dict[str, ServiceTarget]  # the services an update moves (app + migrations)
    repositories: dict[str, ImageReference]  # service → repository (no tag, no digest)
    version: str | None

    def new_record(
        self,
        update_id: str,
        request: StartRequest,
        release: Release,
        trigger: str,
        rehearse: bool,
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
        return RunRecord(
            update_id=update_id,
            state=Stage.PREFLIGHT,
            phase=PHASE_TEXT[Stage.PREFLIGHT],
            trigger=trigger,
            request=request,
            from_version=self.version,
            target_version=release.version,
            services=services,
            rehearse=rehearse,
        )


async def inspect_stack(engine: Engine, settings: Settings, state: StateStore) -> StackView:
    discovered = await engine.discover(settings.compose_project, settings.services)
    missing = sorted(set(settings.services) - set(discovered))
    if missing:
        raise ServiceNotFound(
            f"managed services not found in compose project {settings.compose_project!r}: "
            f"{', '.join(missing)} (found: {', '.join(sorted(discovered)) or 'no containers'})"
        )
    moving = settings.services_with_role(*MOVING_ROLES)
    last_good = await asyncio.to_thread(state.read_last_good)
    targets: dict[str, ServiceTarget] = {}
    repositories: dict[str, ImageReference] = {}
    for name in moving:
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
        containers={s: list(targets[s].container_ids) for s in settings.app_services},
        migrations_container=_first_container(discovered, settings.service_for(Role.MIGRATIONS)),
        postgres_container=_first_container(discovered, settings.service_for(Role.POSTGRES)),
    )
    return StackView(layout, targets, repositories, version)


def _first_container(discovered: dict[str, StackService], service: str | None) -> str | None:
    if service is None or not discovered[service].containers:
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
    if last_good is not None and all(
        last_good.images.get(name) == target.current_digest for name, target in targets.items()
    ):
        return last_good.version
    for name in app_services:
        containers = discovered[name].containers
        if containers:
            labels = await engine.image_labels(containers[0].image_id)
            if labels.get(VERSION_LABEL):
                return labels[VERSION_LABEL]
            tag = ImageReference.parse(containers[0].image).tag
            if tag:
                return tag
    return None
