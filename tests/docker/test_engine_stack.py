"""The engine adapter against a real Compose project, through the docker-proxy."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from supervisor.const import RUN_LABEL, Role
from supervisor.engine.docker_engine import DockerEngine
from supervisor.exceptions import HealthCheckFailed
from tests.support.compose import ComposeProject, StackFactory
from tests.support.dockercli import exec_in, inspect, pull_events_since
from tests.support.testenv import StackTestEnv


async def test_discovers_services_roles_digests_and_health(
    engine: DockerEngine, compose_stack: StackFactory, testenv: StackTestEnv
) -> None:
    with compose_stack("1.0.0") as project:
        services = await engine.discover(project.name, roles={"python_backend": Role.APP})
        assert sorted(services) == ["app", "influxdb", "migrations", "postgres", "python_backend"]
        roles = {name: service.role for name, service in services.items()}
        assert roles == {
            "app": Role.APP,
            "python_backend": Role.APP,
            "migrations": Role.MIGRATIONS,
            "postgres": Role.POSTGRES,
            "influxdb": Role.INFLUXDB,
        }
        expected = testenv.fakeapp["1.0.0"].digest
        for name in ("app", "python_backend", "migrations"):
            assert services[name].repo_digest == expected
        assert services["app"].containers[0].id == project.container("app")
        assert services["app"].containers[0].health == "healthy"
        assert services["postgres"].containers[0].health == "healthy"
        assert services["migrations"].containers[0].state == "exited"
        assert await engine.discover("no-such-project") == {}


# Fields allowed to differ between the old and the recreated container: those
# the engine assigns per container, and those derived from the image.
_PER_CONTAINER = {"Id", "Created", "State", "Image", "ResolvConfPath", "HostnamePath"}
_PER_CONTAINER |= {"HostsPath", "LogPath", "RestartCount", "GraphDriver", "NetworkSettings"}
_PER_CONTAINER |= {"Config", "Mounts", "Name"}


def _image_config(image: str) -> dict[str, Any]:
    config: dict[str, Any] = inspect("image", image)["Config"]
    return config


def _aliases(container: dict[str, Any]) -> dict[str, list[str]]:
    short = container["Id"][:12]
    return {
        name: sorted(a for a in (net.get("Aliases") or []) if a != short)
        for name, net in container["NetworkSettings"]["Networks"].items()
    }


def _compare_recreated(old: dict[str, Any], new: dict[str, Any], new_image: str) -> None:
    """Field by field: only image-derived and per-container fields may differ."""
    assert set(old) == set(new)
    for key in set(old) - _PER_CONTAINER:
        assert old[key] == new[key], f"{key} changed"
    assert new["Name"] == old["Name"]
    assert new["HostConfig"] == old["HostConfig"]
    assert _aliases(new) == _aliases(old)
    assert [(m["Type"], m["Destination"]) for m in new["Mounts"]] == [
        (m["Type"], m["Destination"]) for m in old["Mounts"]
    ]
    old_image, image = _image_config(old["Image"]), _image_config(new_image)
    for key in set(old["Config"]) | set(new["Config"]):
        before, after = old["Config"].get(key), new["Config"].get(key)
        if key == "Image":
            assert after == new_image
        elif key == "Hostname":
            assert (before, after) == (old["Id"][:12], new["Id"][:12])
        elif key == "Env":
            user_env = [e for e in before if e not in old_image["Env"]]
            assert sorted(after) == sorted(set(user_env) | set(image["Env"]))
        elif key == "Labels":
            user_labels = {k: v for k, v in before.items() if old_image["Labels"].get(k) != v}
            assert after == {**image["Labels"], **user_labels, RUN_LABEL: after[RUN_LABEL]}
        else:
            assert before == after, f"Config.{key} changed"


def _version_seen_by_alias(project: ComposeProject) -> str:
    """Ask ``http://app:8000/version`` from another container on the network."""
    out = exec_in(
        project.container("python_backend"),
        "python3", "-c",
        "import urllib.request;print(urllib.request.urlopen('http://app:8000/version').read().decode())",
    )  # fmt: skip
    version: str = json.loads(out)["version"]
    return version


async def test_recreate_is_faithful_and_restore_needs_no_pull(
    engine: DockerEngine, compose_stack: StackFactory, testenv: StackTestEnv
) -> None:
    target = testenv.fakeapp["1.1.0"].pinned
    with compose_stack("1.0.0", backend_version="1.1.0") as project:
        old_id = project.container("app")
        old = inspect("container", old_id)
        await engine.pull(target)

        retained = await engine.recreate(old_id, target, "run1", stop_timeout=5)
        await engine.wait_healthy(retained.new_id, timeout=60)
        new = inspect("container", retained.new_id)
        _compare_recreated(old, new, target)
        assert new["Config"]["Labels"][RUN_LABEL] == "run1"
        old_now = inspect("container", old_id)
        assert old_now["Name"] == old["Name"] + ".old-run1"
        assert old_now["State"]["Running"] is False
        assert old_now["HostConfig"]["RestartPolicy"]["Name"] == "no"
        assert _version_seen_by_alias(project) == "1.1.0"
        discovered = await engine.discover(project.name)
        assert [c.id for c in discovered["app"].containers] == [retained.new_id]

        since = time.time()
        await engine.restore_retained(retained)
        await engine.wait_healthy(old_id, timeout=60)
        assert retained.old_repo_digest is not None  # what a re-pull would fetch
        assert pull_events_since(since, retained.old_repo_digest.rsplit("@", 1)[-1]) == []
        restored = inspect("container", old_id)
        assert restored["Name"] == old["Name"]
        assert restored["HostConfig"] == old["HostConfig"]
        assert project.containers("app", all_states=True) == [old_id]
        assert _version_seen_by_alias(project) == "1.0.0"


async def test_health_gate_catches_crash_after_start_and_never_healthy(
    engine: DockerEngine, compose_stack: StackFactory, testenv: StackTestEnv
) -> None:
    with compose_stack("1.0.0", backend_version="1.1.0") as project:
        app = project.container("app")
        crashing = await engine.recreate(app, testenv.fakeapp["1.4.0"].pinned, "r14", 5)
        # Healthy at first: a gate without a stability window would pass it.
        await engine.wait_healthy(crashing.new_id, timeout=60)
        with pytest.raises(HealthCheckFailed, match=r"restarted|exited"):
            await engine.wait_healthy(crashing.new_id, timeout=60, stability_window=15)
        await engine.restore_retained(crashing)
        await engine.wait_healthy(app, timeout=60)

        broken = await engine.recreate(app, testenv.fakeapp["1.3.0"].pinned, "r13", 5)
        started = time.monotonic()
        with pytest.raises(HealthCheckFailed, match="is unhealthy after") as failed:
            await engine.wait_healthy(broken.new_id, timeout=120)
        # Fails at Docker's verdict (start period 5 s + 3 failed probes 2 s apart), not at 120 s.
        assert time.monotonic() - started < 25
        assert "503" in failed.value.message
        await engine.restore_retained(broken)
        await engine.wait_healthy(app, timeout=60, stability_window=2)
