"""From an old container's inspect data to the body that recreates it.

Compose does this from the compose file; the sidecar never reads that file, so
it works from what the engine reports. The rule that makes it faithful: a
container's ``Config`` is the image's defaults merged with what its creator
set, so everything that merely *equals the old image's default* is left out and
the new image's default applies (its ``APP_VERSION`` env, its healthcheck, its
command), while everything the creator set is carried over. ``HostConfig`` is
entirely the creator's and is copied, plus the anonymous volumes the old
container had, so data in them is not silently replaced by empty volumes.

Pure functions, no I/O: unit-tested with recorded inspect data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from supervisor.const import COMPOSE_IMAGE_LABEL, RUN_LABEL

JSON = dict[str, Any]

# Config keys the creator sets directly (no image default to compare with).
_CONTAINER_ONLY_KEYS = (
    "Domainname",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "NetworkDisabled",
    "StopTimeout",
)
# Config keys an image provides a default for: kept only when overridden.
_IMAGE_DEFAULT_KEYS = ("User", "WorkingDir", "StopSignal", "Healthcheck", "Shell")
_SPECIAL_NETWORK_MODES = ("host", "none", "default", "bridge")
# On a container recreated from a retained container's recorded spec: the id of
# the container it replaces (see restore_spec).
RESTORED_FROM_LABEL = "supervisor.restored-from"


@dataclass(frozen=True)
class CreateSpec:
    """The create body plus networks to connect before the first start.

    API 1.41 accepts one endpoint at create time; the others are connected
    afterwards, still before the container starts.
    """

    body: JSON
    extra_networks: dict[str, JSON]


def build_create_spec(
    old: JSON, old_image: JSON, new_image: str, new_image_id: str, run_id: str
) -> CreateSpec:
    """The create body for a container like ``old`` but running ``new_image``."""
    config: JSON = old.get("Config") or {}
    image_config: JSON = old_image.get("Config") or {}
    body: JSON = {"Image": new_image}

    hostname = config.get("Hostname")
    if hostname and hostname != old["Id"][:12]:
        body["Hostname"] = hostname
    for key in _CONTAINER_ONLY_KEYS:
        if config.get(key) is not None:
            body[key] = config[key]
    for key in _IMAGE_DEFAULT_KEYS:
        if config.get(key) != image_config.get(key) and config.get(key) is not None:
            body[key] = config[key]
    body.update(_command_overrides(config, image_config))

    image_env = set(image_config.get("Env") or [])
    body["Env"] = [e for e in config.get("Env") or [] if e not in image_env]
    body["Labels"] = _labels(config, image_config, new_image_id, run_id)
    body["ExposedPorts"] = _only_added(config.get("ExposedPorts"), image_config.get("ExposedPorts"))
    body["Volumes"] = _only_added(config.get("Volumes"), image_config.get("Volumes"))
    body["HostConfig"] = _host_config(old)

    endpoints = _endpoints(old)
    primary = (old.get("HostConfig") or {}).get("NetworkMode") or "default"
    extra: dict[str, JSON] = {}
    if primary in endpoints:
        body["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints.pop(primary)}}
    if primary not in ("host", "none") and not primary.startswith("container:"):
        extra = endpoints
    return CreateSpec(body=body, extra_networks=extra)


def one_shot_spec(
    template: JSON, template_image: JSON, new_image: str, new_image_id: str, run_id: str
) -> CreateSpec:
    """Like :func:`build_create_spec`, adjusted for a container that runs once.

    It must not look like a service container to Compose or to discovery
    (``oneoff``), must not restart, and publishes no ports.
    """
    spec = build_create_spec(template, template_image, new_image, new_image_id, run_id)
    host_config = spec.body["HostConfig"]
    host_config["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    host_config["AutoRemove"] = False
    host_config["PortBindings"] = {}
    spec.body["Labels"]["com.docker.compose.oneoff"] = "True"
    return spec


def restore_spec(old: JSON, old_image: JSON) -> CreateSpec:
    """The create body that brings ``old`` back as it was, from its own image.

    Recorded before a recreate touches anything, so a rollback can create the
    old container again if it was removed by hand. The same image supplies every
    default that :func:`build_create_spec` leaves out, so the result is the old
    container's configuration. Its labels are the old ones (no run label of the
    run that retires it) plus :data:`RESTORED_FROM_LABEL`, which lets a rollback
    interrupted after the create recognise its own container.
    """
    config: JSON = old.get("Config") or {}
    spec = build_create_spec(old, old_image, str(config.get("Image") or old["Image"]),
                             old["Image"], run_id="")  # fmt: skip
    labels: dict[str, str] = spec.body["Labels"]
    old_labels: dict[str, str] = config.get("Labels") or {}
    for key in (RUN_LABEL, COMPOSE_IMAGE_LABEL):
        if key in old_labels:
            labels[key] = old_labels[key]
        else:
            labels.pop(key, None)
    labels[RESTORED_FROM_LABEL] = old["Id"]
    return spec


def _command_overrides(config: JSON, image_config: JSON) -> JSON:
    entrypoint_overridden = config.get("Entrypoint") != image_config.get("Entrypoint")
    if entrypoint_overridden:
        # Docker drops the image's Cmd when Entrypoint is set, so keep both.
        return {"Entrypoint": config.get("Entrypoint") or [""], "Cmd": config.get("Cmd")}
    if config.get("Cmd") != image_config.get("Cmd"):
        return {"Cmd": config.get("Cmd")}
    return {}


def _labels(config: JSON, image_config: JSON, new_image_id: str, run_id: str) -> dict[str, str]:
    image_labels: dict[str, str] = image_config.get("Labels") or {}
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    if COMPOSE_IMAGE_LABEL in labels:
        labels[COMPOSE_IMAGE_LABEL] = new_image_id
    labels[RUN_LABEL] = run_id
    return labels


def _only_added(container: JSON | None, image: JSON | None) -> JSON:
    image = image or {}
    return {key: {} for key in (container or {}) if key not in image}


def _host_config(old: JSON) -> JSON:
    host_config: JSON = copy.deepcopy(old.get("HostConfig") or {})
    explicit = {_bind_target(b) for b in host_config.get("Binds") or []}
    explicit |= {m.get("Target") for m in host_config.get("Mounts") or []}
    carried = [
        {
            "Type": "volume",
            "Source": mount["Name"],
            "Target": mount["Destination"],
            "ReadOnly": not mount.get("RW", True),
        }
        for mount in old.get("Mounts") or []
        if mount.get("Type") == "volume" and mount.get("Destination") not in explicit
    ]
    if carried:
        host_config["Mounts"] = [*(host_config.get("Mounts") or []), *carried]
    return host_config


def _bind_target(bind: str) -> str:
    parts = bind.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _endpoints(old: JSON) -> dict[str, JSON]:
    """Endpoint settings per network, minus what the engine assigns by itself."""
    own_ids = {old["Id"], old["Id"][:12]}
    networks: JSON = (old.get("NetworkSettings") or {}).get("Networks") or {}
    endpoints: dict[str, JSON] = {}
    for name, settings in networks.items():
        if name in _SPECIAL_NETWORK_MODES:
            continue
        endpoint: JSON = {}
        aliases = [a for a in settings.get("Aliases") or [] if a not in own_ids]
        if aliases:
            endpoint["Aliases"] = aliases
        for key in ("IPAMConfig", "Links", "DriverOpts"):
            if settings.get(key):
                endpoint[key] = settings[key]
        endpoints[name] = endpoint
    return endpoints
