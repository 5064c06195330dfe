"""The rehearsal sandbox: a throwaway database server that the live database cannot be reached from.

::

    compose network(s) ── postgres (live) ── app, python_backend …      never joined
    <project>_rehearsal_<run>  (bridge, internal, no address on the host: no way out)
        ├── <project>_rehearsal_<run>_postgres   the live server's image, env, command and
        │     user; no mounts, empty data (its own anonymous volume); the live server's
        │     network aliases (``postgres``, its container name), so an unmodified
        │     ``DATABASE_URL`` resolves here
        └── the migrations one-shot (target image), attached to this network only

Why by construction: a migrations image may read ``DATABASE_URL`` or any other
variable; whatever it reads, the only PostgreSQL it can resolve and route to is
the scratch copy. Nothing of the live server is shared with the sandbox: no
mounts (not even read-only ones: a unix socket in a read-only mount still
connects, and the restore's own ``psql`` would reach the live server through
it), no ports, no network. A one-shot mount that the live server also has (a
socket directory, its data volume) is left out, and ``host`` / ``container:``
network, PID and IPC modes are replaced. A live server whose command needs a
mounted config file therefore cannot be copied: the rehearsal then fails
clearly (``rehearse`` ends ``failed``, nothing changed); turn it off for such
a stack (``SUPERVISOR_REHEARSE=false``).

Every object carries :data:`SANDBOX_LABEL` = run id and :data:`SANDBOX_PROJECT_LABEL`,
so clean-up (and start-up recovery after a crash) finds them without a record.
Pure functions, no I/O; the engine calls live in :mod:`.docker_scratch`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from supervisor.const import COMPOSE_SERVICE_LABEL
from supervisor.engine.container_spec import CreateSpec

JSON = dict[str, Any]

SANDBOX_LABEL = "supervisor.sandbox"  # value: the run id
SANDBOX_PROJECT_LABEL = "supervisor.sandbox.project"
INHIBIT_IPV4 = "com.docker.network.bridge.inhibit_ipv4"
_SHARED_MODES = ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")
# HostConfig keys a scratch server may inherit: resources, never access to anything.
_SERVER_HOST_KEYS = ("ShmSize", "Ulimits", "Init", "Memory", "NanoCpus", "CpuShares", "Tmpfs")
_SERVER_CONFIG_KEYS = ("Env", "Entrypoint", "Cmd", "User", "WorkingDir", "StopSignal")


@dataclass(frozen=True)
class Sandbox:
    """A run's isolated network and the scratch database server on it."""

    run_id: str
    project: str
    network_id: str
    network_name: str
    server_id: str
    server_name: str
    aliases: tuple[str, ...]
    # Volume names and bind sources the live server mounts: never given to a one-shot.
    live_sources: tuple[str, ...] = ()


def sandbox_labels(project: str, run_id: str) -> dict[str, str]:
    return {SANDBOX_LABEL: run_id, SANDBOX_PROJECT_LABEL: project}


def network_name(project: str, run_id: str) -> str:
    return f"{project}_rehearsal_{run_id}"


def network_body(project: str, run_id: str) -> JSON:
    """A bridge on which containers reach each other and nothing else.

    ``Internal`` alone is not enough: it removes the route out, but the host keeps an
    address on the bridge (the gateway), and through it every port the host listens on,
    a live database's published port included, stays reachable (checked on Engine
    20.10: the gateway, the host's own address and docker0's all answered).
    ``inhibit_ipv4`` leaves the bridge without an address, so there is nothing to reach.
    """
    return {
        "Name": network_name(project, run_id),
        "Driver": "bridge",
        "Internal": True,
        "Attachable": False,
        "CheckDuplicate": True,
        "Options": {INHIBIT_IPV4: "true"},
        "Labels": sandbox_labels(project, run_id),
    }


def server_aliases(live: JSON) -> tuple[str, ...]:
    """Every name the live server answers to on its networks: aliases, container name,
    Compose service name (never its container id, which the scratch copy cannot carry)."""
    own_ids = {live["Id"], live["Id"][:12]}
    names: list[str] = []
    for settings in ((live.get("NetworkSettings") or {}).get("Networks") or {}).values():
        names += [a for a in (settings or {}).get("Aliases") or [] if a not in own_ids]
    labels = (live.get("Config") or {}).get("Labels") or {}
    names += [labels.get(COMPOSE_SERVICE_LABEL, ""), str(live.get("Name", "")).lstrip("/")]
    return tuple(dict.fromkeys(n for n in names if n))


def live_sources(live: JSON) -> tuple[str, ...]:
    """Volume names and host paths mounted into the live server."""
    sources = []
    for mount in live.get("Mounts") or []:
        sources.append(str(mount.get("Name") or mount.get("Source") or ""))
    return tuple(s for s in dict.fromkeys(sources) if s)


def server_spec(live: JSON, project: str, run_id: str) -> tuple[str, JSON]:
    """(name, create body) of a server like ``live`` (same image id, env, command, user),
    with empty data and the live server's aliases on the sandbox network only."""
    config: JSON = live.get("Config") or {}
    body: JSON = {"Image": live["Image"]}
    for key in _SERVER_CONFIG_KEYS:
        if config.get(key) is not None:
            body[key] = copy.deepcopy(config[key])
    if config.get("Healthcheck"):
        body["Healthcheck"] = copy.deepcopy(config["Healthcheck"])
    body["Labels"] = sandbox_labels(project, run_id)
    live_host: JSON = live.get("HostConfig") or {}
    host: JSON = {key: live_host[key] for key in _SERVER_HOST_KEYS if live_host.get(key)}
    net = network_name(project, run_id)
    host.update(
        NetworkMode=net, RestartPolicy={"Name": "no", "MaximumRetryCount": 0}, AutoRemove=False
    )
    body["HostConfig"] = host
    body["NetworkingConfig"] = {"EndpointsConfig": {net: {"Aliases": list(server_aliases(live))}}}
    return f"{net}_postgres", body


def isolate_one_shot(spec: CreateSpec, sandbox: Sandbox) -> CreateSpec:
    """A one-shot create spec moved onto the sandbox network and nowhere else.

    Mounts the live server also has are dropped (a shared socket directory would be a
    way around the network), and so are links, extra hosts and shared namespaces.
    """
    body = copy.deepcopy(spec.body)
    host: JSON = body.setdefault("HostConfig", {})
    host["NetworkMode"] = sandbox.network_name
    for key in ("Links", "ExtraHosts", "PortBindings", "PublishAllPorts", "VolumesFrom"):
        host.pop(key, None)
    for key in _SHARED_MODES:
        if str(host.get(key) or "").startswith(("host", "container:")):
            host.pop(key)
    shared = set(sandbox.live_sources)
    host["Binds"] = [b for b in host.get("Binds") or [] if b.split(":", 1)[0] not in shared]
    host["Mounts"] = [m for m in host.get("Mounts") or [] if m.get("Source") not in shared]
    body["NetworkingConfig"] = {"EndpointsConfig": {sandbox.network_name: {}}}
    body.pop("Hostname", None)
    labels = sandbox_labels(sandbox.project, sandbox.run_id)
    body["Labels"] = {**(body.get("Labels") or {}), **labels}
    return CreateSpec(body=body, extra_networks={})


def dropped_mounts(spec: CreateSpec, sandbox: Sandbox) -> list[str]:
    """What :func:`isolate_one_shot` leaves out of the one-shot, for the run's log."""
    host: JSON = spec.body.get("HostConfig") or {}
    shared = set(sandbox.live_sources)
    found = [b.split(":", 1)[0] for b in host.get("Binds") or [] if b.split(":", 1)[0] in shared]
    found += [str(m.get("Source")) for m in host.get("Mounts") or [] if m.get("Source") in shared]
    return found
