"""Recreate bodies are built from inspect data: creator's settings kept, image defaults not."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.const import COMPOSE_IMAGE_LABEL, RUN_LABEL
from supervisor.engine.container_spec import (
    RESTORED_FROM_LABEL,
    build_create_spec,
    one_shot_spec,
    restore_spec,
)

OLD_ID = "abcdef0123456789" * 4
OLD_IMAGE: dict[str, Any] = {
    "Config": {
        "Env": ["PATH=/usr/bin", "APP_VERSION=1.0.0"],
        "Cmd": ["serve"],
        "Entrypoint": ["python3", "/app/fakeapp.py"],
        "User": "fakeapp",
        "WorkingDir": "/app",
        "Labels": {"org.opencontainers.image.version": "1.0.0"},
        "ExposedPorts": {"8000/tcp": {}},
        "Volumes": {"/data": {}},
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 2000000000},
        "StopSignal": None,
    }
}


def old_container(**config_overrides: Any) -> dict[str, Any]:
    config = {
        "Hostname": OLD_ID[:12],
        "Env": ["PATH=/usr/bin", "APP_VERSION=1.0.0", "POSTGRES_HOST=postgres"],
        "Cmd": ["serve"],
        "Entrypoint": ["python3", "/app/fakeapp.py"],
        "User": "fakeapp",
        "WorkingDir": "/app",
        "Labels": {
            "org.opencontainers.image.version": "1.0.0",
            "com.docker.compose.service": "app",
            COMPOSE_IMAGE_LABEL: "sha256:old",
        },
        "ExposedPorts": {"8000/tcp": {}, "9000/tcp": {}},
        "Volumes": {"/data": {}},
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 2000000000},
        "Tty": False,
        "StopTimeout": 20,
        "Image": "reg/app@sha256:old",
    }
    config.update(config_overrides)
    return {
        "Id": OLD_ID,
        "Name": "/proj_app_1",
        "Config": config,
        "HostConfig": {
            "NetworkMode": "proj_default",
            "Binds": ["/srv/config:/config:ro"],
            "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
            "Memory": 268435456,
        },
        "Mounts": [
            {"Type": "bind", "Source": "/srv/config", "Destination": "/config", "RW": False},
            {"Type": "volume", "Name": "anon123", "Destination": "/data", "RW": True},
        ],
        "NetworkSettings": {
            "Networks": {
                "proj_default": {"Aliases": ["app", OLD_ID[:12]], "IPAMConfig": None},
                "proj_backend": {"Aliases": ["app", "api"], "IPAMConfig": {"IPv4Address": "10.9.0.5"}},
            }
        },
    }  # fmt: skip


def test_keeps_what_the_creator_set_and_drops_image_defaults() -> None:
    spec = build_create_spec(old_container(), OLD_IMAGE, "reg/app@sha256:new", "sha256:nid", "r1")
    body = spec.body
    assert body["Image"] == "reg/app@sha256:new"
    assert body["Env"] == ["POSTGRES_HOST=postgres"]  # APP_VERSION comes from the new image
    # Image defaults (and the engine-assigned hostname) are not carried over.
    assert not {"Cmd", "Entrypoint", "User", "WorkingDir", "Healthcheck", "Hostname"} & set(body)
    assert body["ExposedPorts"] == {"9000/tcp": {}}
    assert body["Volumes"] == {}
    assert body["StopTimeout"] == 20
    assert body["Labels"] == {
        "com.docker.compose.service": "app",
        COMPOSE_IMAGE_LABEL: "sha256:nid",
        RUN_LABEL: "r1",
    }


def test_host_config_copied_and_anonymous_volumes_carried() -> None:
    old = old_container()
    spec = build_create_spec(old, OLD_IMAGE, "reg/app@sha256:new", "sha256:nid", "r1")
    host = spec.body["HostConfig"]
    assert {k: v for k, v in host.items() if k != "Mounts"} == old["HostConfig"]
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "anon123", "Target": "/data", "ReadOnly": False}
    ]
    old["HostConfig"]["Memory"] = 1
    assert host["Memory"] == 268435456  # a copy, not a reference


def test_networks_primary_at_create_others_connected_with_aliases() -> None:
    spec = build_create_spec(old_container(), OLD_IMAGE, "i", "sha256:nid", "r1")
    assert spec.body["NetworkingConfig"] == {
        "EndpointsConfig": {"proj_default": {"Aliases": ["app"]}}
    }
    assert spec.extra_networks == {
        "proj_backend": {"Aliases": ["app", "api"], "IPAMConfig": {"IPv4Address": "10.9.0.5"}}
    }  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"Cmd": ["migrate"]}, {"Cmd": ["migrate"]}),
        ({"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"]}, {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"]}),
        # Entrypoint overridden, Cmd equal to the image's: Docker would drop it, so keep it.
        ({"Entrypoint": ["/bin/sh"]}, {"Entrypoint": ["/bin/sh"], "Cmd": ["serve"]}),
        ({"User": "root"}, {"User": "root"}),
        ({"WorkingDir": "/srv"}, {"WorkingDir": "/srv"}),
        ({"Hostname": "custom"}, {"Hostname": "custom"}),
        ({"Healthcheck": {"Test": ["NONE"]}}, {"Healthcheck": {"Test": ["NONE"]}}),
    ],
)  # fmt: skip
def test_overrides_of_image_defaults_are_kept(
    overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = build_create_spec(old_container(**overrides), OLD_IMAGE, "i", "sha256:n", "r")
    for key, value in expected.items():
        assert spec.body[key] == value


def test_one_shot_never_restarts_publishes_nothing_and_is_marked_oneoff() -> None:
    spec = one_shot_spec(old_container(), OLD_IMAGE, "i", "sha256:n", "r")
    host = spec.body["HostConfig"]
    assert host["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert host["PortBindings"] == {}
    assert spec.body["Labels"]["com.docker.compose.oneoff"] == "True"


def test_restore_spec_brings_the_old_container_back_from_its_own_image() -> None:
    old = {**old_container(), "Image": "sha256:oldid"}
    spec = restore_spec(old, OLD_IMAGE)
    body = spec.body
    assert body["Image"] == "reg/app@sha256:old"  # the reference it was created from
    assert body["Env"] == ["POSTGRES_HOST=postgres"]  # the rest comes from the same image
    assert body["Labels"] == {
        "com.docker.compose.service": "app",
        COMPOSE_IMAGE_LABEL: "sha256:old",  # its own, not rewritten
        RESTORED_FROM_LABEL: OLD_ID,
    }
    assert RUN_LABEL not in body["Labels"]  # not mistaken for a container of the run
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert body["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Source": "anon123", "Target": "/data", "ReadOnly": False}
    ]
    assert spec.body["NetworkingConfig"] == {
        "EndpointsConfig": {"proj_default": {"Aliases": ["app"]}}
    }
    assert set(spec.extra_networks) == {"proj_backend"}


def test_restore_spec_keeps_the_run_label_of_an_earlier_run() -> None:
    labels = {**old_container()["Config"]["Labels"], RUN_LABEL: "earlier"}
    old = {**old_container(Labels=labels), "Image": "sha256:oldid"}
    assert restore_spec(old, OLD_IMAGE).body["Labels"][RUN_LABEL] == "earlier"
