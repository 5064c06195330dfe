"""The rehearsal sandbox's create bodies (pure functions, inspect data shaped like Engine 1.41's).

What matters: the scratch server copies the live server's *program* (image id, env,
command, user) but none of its *access* (mounts, ports, networks, privileges), and a
one-shot ends up on the sandbox network and nowhere else, whatever its template had.
"""

from __future__ import annotations

from typing import Any

from supervisor.const import COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, ROLE_LABEL
from supervisor.engine.container_spec import CreateSpec
from supervisor.engine.sandbox import (
    INHIBIT_IPV4,
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

LIVE_ID = "ab12cd34ef56" + "0" * 52


def live_postgres() -> dict[str, Any]:
    return {
        "Id": LIVE_ID,
        "Name": "/demo_postgres_1",
        "Image": "sha256:" + "1" * 64,
        "Config": {
            "Image": "stacksup/postgres:15",
            "Env": ["POSTGRES_USER=app", "POSTGRES_PASSWORD=s3cret", "POSTGRES_DB=appdb"],
            "Entrypoint": ["docker-entrypoint.sh"],
            "Cmd": ["postgres", "-c", "max_connections=50"],
            "User": "",
            "Healthcheck": {"Test": ["CMD-SHELL", "pg_isready"]},
            "Labels": {
                COMPOSE_PROJECT_LABEL: "demo",
                COMPOSE_SERVICE_LABEL: "postgres",
                ROLE_LABEL: "postgres",
            },
        },
        "HostConfig": {
            "Binds": ["demo_pgdata:/var/lib/postgresql/data:rw", "/srv/run:/var/run/postgresql"],
            "NetworkMode": "demo_default",
            "PortBindings": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5432"}]},
            "Privileged": True,
            "RestartPolicy": {"Name": "unless-stopped"},
            "ShmSize": 268435456,
        },
        "Mounts": [
            {"Type": "volume", "Name": "demo_pgdata", "Source": "/var/lib/docker/volumes/x"},
            {"Type": "bind", "Source": "/srv/run", "Destination": "/var/run/postgresql"},
        ],
        "NetworkSettings": {
            "Networks": {
                "demo_default": {"Aliases": ["postgres", "ab12cd34ef56", "db"]},
                "demo_other": {"Aliases": ["postgres", "pg-primary"]},
            }
        },
    }


def sandbox() -> Sandbox:
    live = live_postgres()
    return Sandbox(
        run_id="r1", project="demo", network_id="n1", network_name="demo_rehearsal_r1",
        server_id="s1", server_name="demo_rehearsal_r1_postgres",
        aliases=server_aliases(live), live_sources=live_sources(live),
    )  # fmt: skip


def test_the_network_is_internal_and_labelled_with_the_run() -> None:
    body = network_body("demo", "r1")
    assert body["Name"] == "demo_rehearsal_r1"
    assert body["Internal"] is True
    assert body["Options"] == {INHIBIT_IPV4: "true"}  # and no host address to reach
    assert body["Labels"] == {SANDBOX_LABEL: "r1", SANDBOX_PROJECT_LABEL: "demo"}


def test_the_server_runs_the_live_program_with_none_of_its_access() -> None:
    live = live_postgres()
    name, body = server_spec(live, "demo", "r1")
    assert name == "demo_rehearsal_r1_postgres"
    assert body["Image"] == live["Image"]  # the very image, by id: no pull, same version
    assert body["Env"] == live["Config"]["Env"]  # same credentials and database name
    assert body["Cmd"] == ["postgres", "-c", "max_connections=50"]
    assert body["Entrypoint"] == ["docker-entrypoint.sh"]
    assert body["Healthcheck"] == live["Config"]["Healthcheck"]
    # No Compose labels: discovery and Compose never take it for a service container.
    assert body["Labels"] == {SANDBOX_LABEL: "r1", SANDBOX_PROJECT_LABEL: "demo"}
    assert body["HostConfig"] == {
        "ShmSize": 268435456,
        "NetworkMode": "demo_rehearsal_r1",
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
    }
    endpoints = body["NetworkingConfig"]["EndpointsConfig"]
    assert list(endpoints) == ["demo_rehearsal_r1"]
    aliases = endpoints["demo_rehearsal_r1"]["Aliases"]
    assert aliases == ["postgres", "db", "pg-primary", "demo_postgres_1"]
    assert LIVE_ID[:12] not in aliases


def template(host_config: dict[str, Any]) -> CreateSpec:
    return CreateSpec(
        body={
            "Image": "app@sha256:x",
            "Labels": {"supervisor.run": "r1-rehearsal"},
            "Hostname": "migrations",
            "HostConfig": host_config,
        },
        extra_networks={"demo_other": {"Aliases": ["migrations"]}},
    )


def test_a_one_shot_lands_on_the_sandbox_network_only() -> None:
    spec = template({
        "NetworkMode": "host",
        "Links": ["/demo_postgres_1:/x/postgres"],
        "ExtraHosts": ["postgres:172.18.0.2"],
        "PidMode": "container:" + LIVE_ID,
        "IpcMode": "shareable",
        "Binds": ["/srv/run:/var/run/postgresql", "/srv/config:/config:ro"],
        "Mounts": [{"Type": "volume", "Source": "demo_pgdata", "Target": "/data"}],
    })  # fmt: skip
    box = sandbox()
    assert dropped_mounts(spec, box) == ["/srv/run", "demo_pgdata"]
    isolated = isolate_one_shot(spec, box)
    host = isolated.body["HostConfig"]
    assert host["NetworkMode"] == "demo_rehearsal_r1"
    assert isolated.extra_networks == {}
    assert isolated.body["NetworkingConfig"] == {"EndpointsConfig": {"demo_rehearsal_r1": {}}}
    assert not {"Links", "ExtraHosts", "PidMode"} & set(host)
    assert host["IpcMode"] == "shareable"  # its own namespace, not another container's
    assert host["Binds"] == ["/srv/config:/config:ro"]  # not shared with the live server
    assert host["Mounts"] == []
    assert "Hostname" not in isolated.body
    assert isolated.body["Labels"][SANDBOX_LABEL] == "r1"
    assert isolated.body["Labels"]["supervisor.run"] == "r1-rehearsal"
    assert spec.body["HostConfig"]["NetworkMode"] == "host"  # the input is not modified
