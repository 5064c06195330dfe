"""Putting retained old containers back converges, whatever a crash or an operator left.

Against a real Compose project, through the docker-proxy: restore twice, restore
after a crash half-way (new container not journaled, old one still being
stopped), and restore after the old container was ``docker rm -f``'d by hand,
which recreates it from the spec recorded before the recreate, with no pull.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from supervisor.const import RUN_LABEL
from supervisor.engine.container_spec import RESTORED_FROM_LABEL
from supervisor.engine.docker_engine import DockerEngine
from supervisor.exceptions import EngineConflict, RetainedContainerLost
from tests.docker.test_engine_converge import stop_in_background
from tests.docker.test_engine_stack import _aliases, _version_seen_by_alias
from tests.support.compose import StackFactory
from tests.support.dockercli import (
    docker,
    inspect,
    owner_labels,
    pull_events_since,
)
from tests.support.testenv import StackTestEnv

# Fields the engine assigns per container (or derives from them).
_ASSIGNED = {"Id", "Created", "State", "ResolvConfPath", "HostnamePath", "HostsPath", "LogPath"}
_ASSIGNED |= {"RestartCount", "GraphDriver", "NetworkSettings", "Config", "Mounts"}


def _same_container_config(old: dict[str, Any], new: dict[str, Any]) -> None:
    """The recreated old container is the old one, but for engine-assigned fields."""
    for key in set(old) - _ASSIGNED:
        assert new[key] == old[key], key
    assert _aliases(new) == _aliases(old)
    old_config, new_config = dict(old["Config"]), dict(new["Config"])
    assert new_config.pop("Hostname") == new["Id"][:12]
    old_config.pop("Hostname")
    new_labels = new_config.pop("Labels")
    assert new_labels == {**old_config.pop("Labels"), RESTORED_FROM_LABEL: old["Id"]}
    assert sorted(new_config.pop("Env")) == sorted(old_config.pop("Env"))
    assert new_config == old_config


async def test_restore_twice_and_after_a_crash_half_way_converges(
    engine: DockerEngine, compose_stack: StackFactory, testenv: StackTestEnv
) -> None:
    target = testenv.fakeapp["1.1.0"].pinned
    with compose_stack("1.0.0", backend_version="1.1.0") as project:
        old_id = project.container("app")
        name = inspect("container", old_id)["Name"]
        await engine.pull(target)

        retained = await engine.recreate(old_id, target, "twice", stop_timeout=5)
        first = await engine.restore_retained(retained)
        started_at = inspect("container", old_id)["State"]["StartedAt"]
        second = await engine.restore_retained(retained)
        assert first.id == second.id == old_id
        assert second.running
        assert inspect("container", old_id)["State"]["StartedAt"] == started_at  # no restart
        assert project.containers("app", all_states=True) == [old_id]

        # A crash inside recreate: the new container was created but not journaled
        # (new_id empty) and the old one, renamed aside, is still being stopped by
        # the dead client when the restore begins.
        retained = await engine.recreate(old_id, target, "crash", stop_timeout=5)
        new_id = retained.new_id
        docker("start", old_id)
        # The app stops at once on SIGTERM; a stopped (SIGSTOP) process cannot, so the
        # dead client's stop stays in flight until its SIGKILL, however fast the machine.
        docker("kill", "--signal=SIGSTOP", old_id)
        stale = stop_in_background(old_id)
        unjournaled = dataclasses.replace(retained, new_id="")
        restored = await engine.restore_retained(unjournaled, stop_timeout=5)
        assert restored.id == old_id
        assert await asyncio.to_thread(stale.wait, 15) == 0
        await engine.wait_healthy(old_id, timeout=60, stability_window=2)
        after = inspect("container", old_id)
        assert after["Name"] == name
        assert after["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert project.containers("app", all_states=True) == [old_id]
        assert docker("ps", "-aq", "--filter", f"id={new_id}").strip() == ""
        assert _version_seen_by_alias(project) == "1.0.0"
        assert (await engine.restore_retained(unjournaled)).id == old_id


async def test_restore_recreates_an_old_container_removed_by_hand_without_pulling(
    engine: DockerEngine, compose_stack: StackFactory, testenv: StackTestEnv
) -> None:
    target = testenv.fakeapp["1.1.0"].pinned
    with compose_stack("1.0.0", backend_version="1.1.0") as project:
        old_id = project.container("app")
        old = inspect("container", old_id)
        await engine.pull(target)

        intent = await engine.prepare_recreate(old_id, "byhand")
        assert intent.new_id == ""
        assert intent.old_image == testenv.fakeapp["1.0.0"].pinned
        assert intent.old_image_id == old["Image"]
        assert intent.old_repo_digest == testenv.fakeapp["1.0.0"].pinned
        assert intent.old_spec["body"]["HostConfig"] == old["HostConfig"]
        retained = await engine.recreate(old_id, target, "byhand", stop_timeout=5)
        assert dataclasses.replace(retained, new_id="") == intent  # journaled == what it did

        docker("rm", "-f", old_id)
        since = time.time()
        restored = await engine.restore_retained(retained)
        assert restored.id != old_id
        old_digest = intent.old_image.rsplit("@", 1)[-1]
        assert pull_events_since(since, old_digest) == []
        await engine.wait_healthy(restored.id, timeout=60)
        _same_container_config(old, inspect("container", restored.id))
        assert _version_seen_by_alias(project) == "1.0.0"
        assert project.containers("app", all_states=True) == [restored.id]
        services = await engine.discover(project.name)
        assert services["app"].repo_digest == testenv.fakeapp["1.0.0"].digest
        assert RUN_LABEL not in services["app"].containers[0].labels

        # Idempotent: a second restore adopts its own re-creation instead of making another.
        again = await engine.restore_retained(retained)
        assert again.id == restored.id
        assert project.containers("app", all_states=True) == [restored.id]

        # Nothing recorded to recreate it from: a clear error, nothing touched.
        retained = await engine.recreate(restored.id, target, "nospec", stop_timeout=5)
        docker("rm", "-f", restored.id)
        bare = dataclasses.replace(retained, old_spec={})
        with pytest.raises(RetainedContainerLost, match="no create spec was recorded"):
            await engine.restore_retained(bare)


async def test_restore_refuses_to_remove_a_name_holder_the_run_did_not_create(
    engine: DockerEngine, compose_stack: StackFactory, testenv: StackTestEnv
) -> None:
    target = testenv.fakeapp["1.1.0"].pinned
    with compose_stack("1.0.0", backend_version="1.1.0") as project:
        old_id = project.container("app")
        await engine.pull(target)
        retained = await engine.recreate(old_id, target, "mine", stop_timeout=5)
        docker("rm", "-f", retained.new_id)
        labels = [f"--label={k}={v}" for k, v in owner_labels().items()]
        foreign = docker("create", "--name", retained.name, *labels, testenv.base_image, "true")
        try:
            with pytest.raises(EngineConflict, match="was not created by run mine"):
                await engine.restore_retained(dataclasses.replace(retained, new_id=""))
            assert inspect("container", foreign.strip())["Name"] == "/" + retained.name
            assert inspect("container", old_id)["Name"] == "/" + retained.old_name
        finally:
            docker("rm", "-f", foreign.strip(), check=False)
