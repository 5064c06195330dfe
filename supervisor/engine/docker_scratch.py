"""The rehearsal sandbox on the engine: create it, run the migrations in it, remove it.

What the sandbox is and why it cannot reach the live database is drawn in
:mod:`.sandbox`; this module only makes the engine calls (networks and
containers, both granted to the sidecar by the docker-proxy). Everything it
creates is labelled with the run id, and :func:`remove_sandboxes` finds it by
those labels alone: it is what the rehearsal's ``finally`` and start-up
recovery call, any number of times.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from supervisor.const import JOB_LABEL
from supervisor.engine.container_spec import one_shot_spec
from supervisor.engine.docker_errors import engine_call
from supervisor.engine.docker_jobs import run_to_completion
from supervisor.engine.docker_lifecycle import REMOVE_ATTEMPTS, remove_with_volumes
from supervisor.engine.models import OneShotResult
from supervisor.engine.sandbox import (
    SANDBOX_LABEL,
    SANDBOX_PROJECT_LABEL,
    Sandbox,
    dropped_mounts,
    isolate_one_shot,
    live_sources,
    network_body,
    server_aliases,
    server_spec,
)
from supervisor.exceptions import EngineConflict, EngineNotFound

if TYPE_CHECKING:
    from supervisor.engine.docker_engine import DockerEngine

_LOGGER = logging.getLogger(__name__)
LOG_TAIL_LINES = 200


async def create_sandbox(
    engine: DockerEngine, postgres_id: str, project: str, run_id: str
) -> Sandbox:
    """The network and the started scratch server; on any failure nothing is left."""
    live = await engine.inspect_container(postgres_id)
    body = network_body(project, run_id)
    try:
        async with engine_call(f"creating network {body['Name']}", engine.url):
            created = await engine.client.networks.create(body)
        name, spec = server_spec(live, project, run_id)
        server_id = await engine.create_container(spec, name, {})
        await engine.start(server_id)
    except BaseException:
        await asyncio.shield(remove_sandboxes(engine, project, run_id))
        raise
    sandbox = Sandbox(
        run_id=run_id,
        project=project,
        network_id=str(created.id),
        network_name=str(body["Name"]),
        server_id=server_id,
        server_name=name,
        aliases=server_aliases(live),
        live_sources=live_sources(live),
    )
    _LOGGER.info("sandbox %s: server %s as %s", sandbox.network_name, name, sandbox.aliases)
    return sandbox


async def run_one_shot_in_sandbox(
    engine: DockerEngine,
    sandbox: Sandbox,
    template_id: str,
    image: str,
    run_id: str,
    timeout: float,
    command: Sequence[str] | None,
) -> OneShotResult:
    """Like :func:`.docker_jobs.run_one_shot`, on the sandbox network only; always removed."""
    template = await engine.inspect_container(template_id)
    template_image = await engine.inspect_image(template["Image"])
    new_image = await engine.inspect_image(image)
    spec = one_shot_spec(template, template_image, image, new_image["Id"], run_id)
    if command is not None:
        spec.body["Cmd"] = list(command)
    spec.body["Labels"][JOB_LABEL] = "rehearsal"
    for source in dropped_mounts(spec, sandbox):
        _LOGGER.warning("rehearsal: not mounting %s, which the live database also mounts", source)
    spec = isolate_one_shot(spec, sandbox)
    name = f"{template['Name'].lstrip('/')}.run-{run_id}"
    return await run_to_completion(
        engine, spec.body, name, {}, timeout, lambda cid: remove_with_volumes(engine, cid)
    )


async def remove_sandboxes(engine: DockerEngine, project: str, run_id: str) -> list[str]:
    """Remove the run's sandbox containers (with their anonymous volumes), then its
    network; what was removed, by name. Idempotent."""
    labels = [f"{SANDBOX_LABEL}={run_id}", f"{SANDBOX_PROJECT_LABEL}={project}"]
    removed: list[str] = []
    async with engine_call(f"listing the rehearsal containers of run {run_id}", engine.url):
        containers = await engine.client.containers.list(
            all=True, filters=json.dumps({"label": labels})
        )
    for entry in containers:
        await remove_with_volumes(engine, entry.id)
        removed.append(str((entry["Names"] or [entry.id])[0]).lstrip("/"))
    async with engine_call(f"listing the rehearsal networks of run {run_id}", engine.url):
        networks: list[dict[str, Any]] = await engine.client.networks.list(
            filters={"label": labels}
        )
    for network in networks:
        await _remove_network(engine, str(network["Id"]), str(network.get("Name", "")))
        removed.append(str(network.get("Name") or network["Id"]))
    return removed


async def _remove_network(engine: DockerEngine, network_id: str, name: str) -> None:
    for attempt in range(REMOVE_ATTEMPTS):
        try:
            async with engine_call(f"removing network {name or network_id[:12]}", engine.url):
                network = await engine.client.networks.get(network_id)
                await network.delete()
            return
        except EngineNotFound:
            return
        except EngineConflict:  # an endpoint is still being released
            if attempt == REMOVE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
