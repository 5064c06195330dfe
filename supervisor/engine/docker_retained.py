"""Recreate with the old container kept aside, and every way of putting it back.

::

    prepare_recreate ─▶ (domain journals the RetainedContainer) ─▶ recreate
                                                                     │ fails / rollback
                                                                     ▼
                                                              restore_retained

``prepare_recreate`` records, before anything changes, all that is needed to
undo: the names, the old restart policy, and the old container's image and
create spec. ``restore_retained`` converges from *any* state a crash or an
operator can leave behind, checking before each step:

1. the new container (by id, or by the run's label on whatever holds the
   service's name) is removed, so the name and ports are free;
2. the old container, if it still exists, is brought to a settled stop when it
   was being retired (a stop may still be in flight), renamed back, and its
   restart policy restored;
3. if it no longer exists (``docker rm -f`` by hand), it is created again from
   the recorded spec and image, which the engine still holds (no pull; only if
   the image is gone too is it pulled by its recorded digest); only when that is
   impossible does it raise :class:`RetainedContainerLost`;
4. it is started when asked (see :mod:`~supervisor.engine.docker_lifecycle`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from supervisor.const import (
    COMPOSE_SERVICE_LABEL,
    RETAINED_SUFFIX,
    RUN_LABEL,
    next_name,
)
from supervisor.engine import docker_lifecycle
from supervisor.engine.container_spec import RESTORED_FROM_LABEL, build_create_spec, restore_spec
from supervisor.engine.models import RetainedContainer, ServiceContainer
from supervisor.exceptions import EngineConflict, EngineNotFound, RetainedContainerLost

if TYPE_CHECKING:
    from supervisor.engine.docker_engine import DockerEngine

_LOGGER = logging.getLogger(__name__)
JSON = dict[str, Any]


async def prepare_recreate(
    engine: DockerEngine, container_id: str, run_id: str
) -> RetainedContainer:
    old = await engine.inspect_container(container_id)
    return _retained_from(old, await engine.inspect_image(old["Image"]), run_id)


def _retained_from(old: JSON, old_image: JSON, run_id: str) -> RetainedContainer:
    spec = restore_spec(old, old_image)
    name = old["Name"].lstrip("/")
    return RetainedContainer(
        service=old["Config"]["Labels"].get(COMPOSE_SERVICE_LABEL, name),
        name=name,
        new_id="",
        old_id=old["Id"],
        old_name=f"{name}{RETAINED_SUFFIX}{run_id}",
        old_restart_policy=dict(old["HostConfig"].get("RestartPolicy") or {"Name": "no"}),
        old_was_running=bool(old["State"]["Running"]),
        old_image=str(old["Config"].get("Image") or old["Image"]),
        old_image_id=str(old["Image"]),
        old_repo_digest=_repo_digest(old, old_image),
        old_spec={"body": spec.body, "extra_networks": spec.extra_networks},
    )


async def recreate(
    engine: DockerEngine, container_id: str, image: str, run_id: str, stop_timeout: float
) -> RetainedContainer:
    old = await engine.inspect_container(container_id)
    old_image = await engine.inspect_image(old["Image"])
    new_image = await engine.inspect_image(image)
    spec = build_create_spec(old, old_image, image, new_image["Id"], run_id)
    retained = _retained_from(old, old_image, run_id)
    await engine.rename(retained.old_id, retained.old_name)
    new_id = ""
    try:
        await engine.set_restart_policy(retained.old_id, {"Name": "no"})
        if retained.old_was_running:
            await engine.stop(retained.old_id, stop_timeout)
        new_id = await engine.create_container(spec.body, retained.name, spec.extra_networks)
        await engine.start(new_id)
    except BaseException:
        _LOGGER.warning("recreating %s failed; putting the old container back", retained.name)
        undo = _with(retained, new_id=new_id)
        await asyncio.shield(restore_retained(engine, undo, retained.old_was_running, stop_timeout))
        raise
    _LOGGER.info("recreated %s from %s (old kept as %s)", retained.name, image, retained.old_name)
    return _with(retained, new_id=new_id)


async def start_alongside(
    engine: DockerEngine, container_id: str, image: str, run_id: str
) -> RetainedContainer:
    """Start the new version next to the running old one (start-first).

    Same configuration, networks and volumes, but its own name and no network aliases: it
    is reachable by its name only (the health gate, probes), never by the service's name,
    until :func:`promote` gives it the aliases. The old container is not touched.
    """
    old = await engine.inspect_container(container_id)
    old_image = await engine.inspect_image(old["Image"])
    new_image = await engine.inspect_image(image)
    spec = build_create_spec(old, old_image, image, new_image["Id"], run_id)
    if spec.body["HostConfig"].get("PortBindings"):
        raise EngineConflict(
            f"{old['Name'].lstrip('/')} publishes host ports: it cannot run twice (start-first)"
        )
    for endpoint in [
        *(spec.body.get("NetworkingConfig") or {}).get("EndpointsConfig", {}).values(),
        *spec.extra_networks.values(),
    ]:
        endpoint.pop("Aliases", None)
    retained = _retained_from(old, old_image, run_id)
    name = next_name(retained.name, run_id)
    new_id = await engine.create_container(spec.body, name, spec.extra_networks)
    try:
        await engine.start(new_id)
    except BaseException:
        await asyncio.shield(engine.remove_container(new_id))
        raise
    _LOGGER.info("started %s next to %s (start-first)", name, retained.name)
    return _with(retained, new_id=new_id)


async def share_aliases(engine: DockerEngine, retained: RetainedContainer) -> None:
    """Give the new container started alongside the old one's network aliases, so the
    service name resolves to both. Networks where it already has them are left alone (a
    reconnect would cut what it serves)."""
    old = await engine.inspect_container(retained.old_id)
    new = await engine.inspect_container(retained.new_id)
    have = (new.get("NetworkSettings") or {}).get("Networks") or {}
    own = {retained.old_id, retained.old_id[:12]}
    for network, endpoint in ((old.get("NetworkSettings") or {}).get("Networks") or {}).items():
        aliases = [a for a in endpoint.get("Aliases") or [] if a not in own]
        if aliases and not set(aliases) <= set((have.get(network) or {}).get("Aliases") or []):
            await engine.join_with_aliases(retained.new_id, network, aliases)


async def promote(
    engine: DockerEngine, retained: RetainedContainer, stop_timeout: float
) -> RetainedContainer:
    """The new container, already sharing the aliases, takes over: the old one is retired
    (restart policy ``no``, stopped, renamed ``.old-<run>``), then the new one takes the
    name. Idempotent: a crash half-way is finished by a second call (or undone by
    ``restore_retained``)."""
    old = await engine.inspect_container(retained.old_id)
    await engine.set_restart_policy(retained.old_id, {"Name": "no"})
    await docker_lifecycle.ensure_stopped(engine, retained.old_id, stop_timeout)
    if old["Name"].lstrip("/") != retained.old_name:
        await engine.rename(retained.old_id, retained.old_name)
    new = await engine.inspect_container(retained.new_id)
    if new["Name"].lstrip("/") != retained.name:
        await engine.rename(retained.new_id, retained.name)
    _LOGGER.info("%s now runs the new version (old kept as %s)", retained.name, retained.old_name)
    return retained


async def restore_retained(
    engine: DockerEngine, retained: RetainedContainer, start: bool, stop_timeout: float
) -> ServiceContainer:
    run_id = retained.old_name.removeprefix(f"{retained.name}{RETAINED_SUFFIX}")
    await _remove_new(engine, retained, run_id)
    old = await _find_old(engine, retained)
    if old is None:
        old_id = await _recreate_old(engine, retained)
        old = await engine.inspect_container(old_id)
    elif old["Name"].lstrip("/") != retained.name:
        if old["State"].get("Running"):
            # Still being retired: a dead client's stop may be in flight.
            await docker_lifecycle.ensure_stopped(engine, old["Id"], stop_timeout)
        await engine.rename(old["Id"], retained.name)
    policy = (old.get("HostConfig") or {}).get("RestartPolicy") or {}
    if not _same_policy(policy, retained.old_restart_policy):
        await engine.set_restart_policy(old["Id"], retained.old_restart_policy)
    if start:
        return await docker_lifecycle.ensure_running(
            engine, old["Id"], stop_timeout + docker_lifecycle.STOP_GRACE_SECONDS,
            stop_timeout=None, settle=0,
        )  # fmt: skip
    return await engine.container(old["Id"])


async def _remove_new(engine: DockerEngine, retained: RetainedContainer, run_id: str) -> None:
    """Free the name: remove the run's new container, found by id or holding the name (a
    start-first one not journaled before a crash is found by recovery's reconcile)."""
    if retained.new_id and retained.new_id != retained.old_id:
        await engine.remove_container(retained.new_id)
    try:
        holder = await engine.inspect_container(retained.name)
    except EngineNotFound:
        return
    if holder["Id"] == retained.old_id:
        return
    labels = holder["Config"].get("Labels") or {}
    if labels.get(RESTORED_FROM_LABEL) == retained.old_id:
        return  # our own re-creation of the old container, from an earlier attempt
    if labels.get(RUN_LABEL) != run_id:
        raise EngineConflict(
            f"container {holder['Id'][:12]} holds the name {retained.name} but was not "
            f"created by run {run_id}; not touching it"
        )
    # Created by this run but not journaled before a crash.
    await engine.remove_container(holder["Id"])


async def _find_old(engine: DockerEngine, retained: RetainedContainer) -> JSON | None:
    """The old container (or an earlier attempt's re-creation of it), if it exists."""
    try:
        return await engine.inspect_container(retained.old_id)
    except EngineNotFound:
        pass
    try:
        holder = await engine.inspect_container(retained.name)
    except EngineNotFound:
        return None
    labels = holder["Config"].get("Labels") or {}
    return holder if labels.get(RESTORED_FROM_LABEL) == retained.old_id else None


async def _recreate_old(engine: DockerEngine, retained: RetainedContainer) -> str:
    if not retained.old_spec:
        raise RetainedContainerLost(
            f"the old {retained.service} container {retained.old_id[:12]} ({retained.old_name}) "
            "no longer exists and no create spec was recorded for it"
        )
    image = await _local_old_image(engine, retained)
    body: JSON = {**retained.old_spec["body"], "Image": image}
    _LOGGER.warning(
        "the old %s container %s was removed; creating it again from its recorded spec (%s)",
        retained.service, retained.old_id[:12], image,
    )  # fmt: skip
    try:
        return await engine.create_container(
            body, retained.name, retained.old_spec.get("extra_networks") or {}
        )
    except (EngineNotFound, EngineConflict) as err:
        raise RetainedContainerLost(
            f"the old {retained.service} container {retained.old_id[:12]} was removed and "
            f"could not be created again from its recorded spec: {err.message}"
        ) from err


async def _local_old_image(engine: DockerEngine, retained: RetainedContainer) -> str:
    """The old image as the engine holds it: the recorded reference if it still means
    the same image, else the image id; pulled by digest only when it is gone."""
    for candidate in (retained.old_image, retained.old_repo_digest):
        if candidate and await _image_id(engine, candidate) == retained.old_image_id:
            return candidate
    if retained.old_image_id and await _image_id(engine, retained.old_image_id):
        return retained.old_image_id
    if not retained.old_repo_digest:
        raise RetainedContainerLost(
            f"the old {retained.service} container {retained.old_id[:12]} was removed and "
            f"its image {retained.old_image_id or retained.old_image} is gone too"
        )
    _LOGGER.warning("the old image is gone too; pulling %s", retained.old_repo_digest)
    await engine.pull(retained.old_repo_digest)
    return retained.old_repo_digest


async def _image_id(engine: DockerEngine, image: str) -> str | None:
    try:
        data = await engine.inspect_image(image)
    except EngineNotFound:
        return None
    return str(data["Id"])


def _repo_digest(old: JSON, old_image: JSON) -> str | None:
    configured = str(old["Config"].get("Image") or "")
    if "@" in configured:
        return configured
    name = configured.rsplit(":", 1)[0] if ":" in configured.rsplit("/", 1)[-1] else configured
    for repo_digest in old_image.get("RepoDigests") or []:
        if str(repo_digest).partition("@")[0] == name:
            return str(repo_digest)
    digests = old_image.get("RepoDigests") or []
    return str(digests[0]) if digests else None


def _same_policy(current: JSON, wanted: JSON) -> bool:
    def norm(policy: JSON) -> tuple[str, int]:
        return (policy.get("Name") or "no", int(policy.get("MaximumRetryCount") or 0))

    return norm(current) == norm(wanted)


def _with(retained: RetainedContainer, **changes: Any) -> RetainedContainer:
    return RetainedContainer(**{**retained.__dict__, **changes})
