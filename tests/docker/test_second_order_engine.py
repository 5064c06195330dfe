"""Second-order failures of what the sidecar depends on, on the real engine: the registry
goes away mid-pull, health flaps inside the stability window, the Docker engine restarts
while the run is in healthcheck.

Like test_second_order.py, each scenario runs ``supervisor serve`` as a real process
against a real Compose stack through a docker-proxy, and asserts the end state, the data
(rows and content checksum of ``items`` and the applied migrations, measured with psql
outside the product) and the version the stack answers with.

* registry: the stack's images are referenced through a throttling TCP proxy on their own
  port (tests/support/engine_faults.py), the target has a layer no engine has, and the
  proxy is cut once a megabyte of it went through;
* health flap: the new app container is paused once the gate has seen it healthy (Docker
  20.10 reports a paused container ``unhealthy`` at once), with a 20 s stability window;
* engine restart: ``dockerd`` is stopped with SIGTERM (as ``systemctl restart docker``)
  and started again as ``scripts/testenv`` starts it, while the new version is inside its
  stability window; the sidecar (a host process) reaches the engine through a docker-proxy
  with a fixed port and a restart policy, as deployed.

The engine restart disturbs every test that uses the engine, so it is marked
``engine_exclusive``: ``scripts/testenv test`` runs it alone, after the parallel phase.
(A session's shared docker-proxy is started again after it, but on a new host port.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SIDECAR_PROXY_GRANTS
from tests.support.compose import ComposeProject, StackFactory, compose_project
from tests.support.dockercli import docker, inspect, wait_healthy
from tests.support.engine_faults import (
    ThrottledProxy,
    delete_repository,
    persistent_docker_proxy,
    publish_with_fresh_layer,
    restart_engine,
    wait_answers,
)
from tests.support.scenarios import (
    ENDED,
    assert_listed_artifacts_exist,
    items_state,
    journal,
    running_sidecar,
    seed_rows,
    snapshots_of,
    start,
    wait_end,
    wait_for,
    write_artifact,
)
from tests.support.sidecar import app_version
from tests.support.sidecar_process import free_port
from tests.support.testenv import ImageRef, StackTestEnv

pytestmark = pytest.mark.docker

SERVICES = ("postgres", "influxdb", "python_backend", "app")


# --- helpers --------------------------------------------------------------------------------


def in_stage(state_dir: Path, stage: str) -> bool:
    """True while the run is in ``stage``; a run that ended before it fails the test."""
    record = journal(state_dir)
    assert record.get("state") not in ENDED, f"the run ended early: {record.get('error')}"
    return record.get("state") == stage


def running_ids(project: ComposeProject) -> dict[str, list[str]]:
    return {s: sorted(project.containers(s)) for s in SERVICES}


def version_answered(container: str) -> str | None:
    """The version one app container answers on its host port, or None if it does not."""
    try:
        port = docker("port", container, "8000/tcp", check=False).split(":")[-1].strip()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=1) as r:
            version: str = json.loads(r.read())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version


def health(container: str) -> str:
    state = inspect("container", container)["State"]
    return str((state.get("Health") or {}).get("Status") or state["Status"])


def image_version(container: str) -> str:
    """The fake app version a container runs (its image's ``APP_VERSION``)."""
    for entry in inspect("container", container)["Config"]["Env"]:
        key, _, value = str(entry).partition("=")
        if key == "APP_VERSION":
            return value
    return "?"


def stack_facts(project: ComposeProject) -> dict[str, list[str]]:
    """Every container of the stack: state, health, version (for a failure message)."""
    facts: dict[str, list[str]] = {}
    for service in (*SERVICES, "migrations"):
        for cid in project.containers(service, all_states=True):
            data = inspect("container", cid)
            health = (data["State"].get("Health") or {}).get("Status", "-")
            facts.setdefault(service, []).append(
                f"{data['Name'].lstrip('/')} {data['State']['Status']}/{health} "
                f"{image_version(cid)}"
            )
    return facts


def pins(state_dir: Path) -> dict[str, str]:
    """The pin file and last-good record as they are on disk (absent: not listed)."""
    return {
        p.name: p.read_text()
        for p in (state_dir / "versions.env", state_dir / "last-good.json")
        if p.exists()
    }


# --- 1. registry unreachable mid-pull -------------------------------------------------------

NOISE_BYTES = 8 * 1024 * 1024  # an incompressible layer the engine has never seen
PULL_RATE = 1024 * 1024  # bytes/s through the proxy once the run starts: the pull takes ~8 s
# After the cut, the engine itself retries the layer 5 more times, 5, 10, 15, 20 and 25 s
# apart (Docker 20.10's download manager): the run ends ~75 s after the cut, which is what
# an operator waits too. The test's time is mostly that.


@pytest.mark.timeout(300)
def test_registry_unreachable_mid_pull_fails_and_changes_nothing(
    testenv: StackTestEnv, docker_proxy_url: str, tmp_path: Path
) -> None:
    repo = f"stacksup-test/pullcut-{secrets.token_hex(4)}"
    source = testenv.fakeapp["1.0.0"].repository.removeprefix(f"{testenv.registry}/")
    try:
        # 1.0.0 as it is; 1.1.0 with one extra layer of random bytes that no engine has.
        digests = asyncio.run(publish_with_fresh_layer(
            testenv.registry, source, repo,
            {v: testenv.fakeapp[v].digest for v in ("1.0.0", "1.1.0")},
            secrets.token_bytes(NOISE_BYTES),
        ))  # fmt: skip
        digest_old, digest_new = digests["1.0.0"], digests["1.1.0"]
        with ThrottledProxy("127.0.0.1", int(testenv.registry.rsplit(":", 1)[1])) as proxy:
            via = f"127.0.0.1:{proxy.port}/{repo}"  # the stack's image references name the proxy
            stack_env = dataclasses.replace(testenv, fakeapp={
                "1.0.0": ImageRef("1.0.0", f"{via}:1.0.0", digest_old),
                "1.1.0": ImageRef("1.1.0", f"{via}:1.1.0", digest_new),
            })  # fmt: skip
            try:
                with compose_project(stack_env, "1.0.0") as project, running_sidecar(
                    project, docker_proxy_url, tmp_path, SUPERVISOR_REHEARSE="false",
                    # The sidecar resolves tags at the registry itself; only the engine's
                    # pull goes through the proxy that is cut.
                    SUPERVISOR_REGISTRY_MIRRORS=f"127.0.0.1:{proxy.port}=http://{testenv.registry}",
                ) as sc:  # fmt: skip
                    seed_rows(project)
                    before, containers = items_state(project), running_ids(project)
                    state_dir = Path(sc.env["SUPERVISOR_STATE_DIR"])
                    pins_before = pins(state_dir)
                    sc.start()
                    proxy.rate = PULL_RATE
                    update_id = start(sc, "1.1.0")
                    wait_for(lambda: in_stage(state_dir, "pull"), "pull", 60)
                    floor = proxy.bytes_down
                    wait_for(
                        lambda: in_stage(state_dir, "pull") and proxy.bytes_down > floor + 1024**2,
                        "a megabyte of the new layer",
                        60,
                    )
                    proxy.cut()
                    cut_at, cut_bytes = time.monotonic(), proxy.bytes_down
                    record = wait_end(sc, update_id, 180)
                    ended_after = time.monotonic() - cut_at
                    assert record["state"] == "failed", record.get("error")
                    assert record["error"]["stage"] == "pull", record["error"]
                    assert running_ids(project) == containers  # the very same containers
                    assert app_version(project) == "1.0.0"
                    assert items_state(project) == before
                    assert pins(state_dir) == pins_before
                    assert snapshots_of(sc, update_id) == []
                    assert not record["retained"]
                    assert not record["stopped"]
                    leftover = docker("image", "inspect", f"{via}@{digest_new}", check=False)
                    assert json.loads(leftover or "[]") == [], "a half-pulled image was left"
                    # Last, so a run shows the rest holds: the operator must be told it was the
                    # registry, not the engine (the engine's text says "connection refused").
                    assert record["error"]["error_key"] == "registry_unreachable", record["error"]
            finally:
                for ref in (f"{via}@{digest_old}", f"{via}@{digest_new}"):
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        docker("rmi", ref, check=False, timeout=60)  # only untags: shared layers
    finally:
        delete_repository(testenv.registry, repo)
    print(f"cut after {cut_bytes} bytes; the run ended failed {ended_after:.1f} s later")
    write_artifact(
        "registry unreachable mid-pull",
        "| cut after | end | stage | error | ended after the cut | containers | data | pins |",
        [f"| {cut_bytes / 1e6:.1f} MB of {NOISE_BYTES / 1e6:.1f} MB | {record['state']} "
         f"| pull | {record['error']['error_key']} | {ended_after:.1f} s | same ids, 1.0.0 "
         f"| equal | unchanged |"],
    )  # fmt: skip


# --- 2. health flaps inside the stability window --------------------------------------------

GATE_MARGIN = 3.0  # seconds healthy before the flap: the gate has seen it and is in its window


@pytest.mark.timeout(300)
def test_health_flap_inside_the_stability_window_rolls_back(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        seed_rows(project)
        before, old_app = items_state(project), project.container("app")
        with running_sidecar(
            project, docker_proxy_url, tmp_path, SUPERVISOR_REHEARSE="false",
            SUPERVISOR_STABILITY_WINDOW="20",
        ) as sc:  # fmt: skip
            state_dir = Path(sc.env["SUPERVISOR_STATE_DIR"])
            sc.start()
            update_id = start(sc, "1.1.0")  # a good release: healthy, then it is not
            new: list[str] = []

            def new_app_healthy() -> bool:
                if not in_stage(state_dir, "healthcheck"):
                    return False
                new[:] = [c for c in project.containers("app") if c != old_app]
                return len(new) == 1 and health(new[0]) == "healthy"

            wait_for(new_app_healthy, "the new app container healthy", 120)
            # The gate polls every 0.5 s: give it time to see "healthy" and enter the window.
            time.sleep(GATE_MARGIN)
            assert new_app_healthy(), "the new app did not stay healthy on its own"
            assert version_answered(new[0]) == "1.1.0"
            # Docker stops the health monitor of a paused container and reports it
            # "unhealthy" at once (20.10); the container itself keeps "running".
            docker("pause", new[0])
            paused = time.monotonic()
            unhealthy_after = answered_after = None
            try:
                while answered_after is None and time.monotonic() - paused < 120:
                    if unhealthy_after is None and health(new[0]) == "unhealthy":
                        unhealthy_after = time.monotonic() - paused
                    if any(version_answered(c) == "1.0.0" for c in project.containers("app")):
                        answered_after = time.monotonic() - paused
                    time.sleep(0.2)
                record = wait_end(sc, update_id, 120)
                ended_after = time.monotonic() - paused
            finally:
                docker("unpause", new[0], check=False)
            assert record["state"] == "rolled_back", record.get("error")
            assert record["error"]["stage"] == "healthcheck", record["error"]
            assert "stability window" in record["error"]["message"], record["error"]
            assert answered_after is not None, "the old version never answered again"
            assert project.container("app") == old_app  # the retained container is back
            assert app_version(project) == "1.0.0"
            assert items_state(project) == before
            assert new[0] not in project.containers("app")
            version = sc.call("GET", "/admin/version")
            assert version["version"] == "1.0.0", version
            assert version["last_result"]["state"] == "rolled_back", version
            assert_listed_artifacts_exist(record, sc, project)
    print(f"unhealthy {unhealthy_after} s after the pause; 1.0.0 answered after "
          f"{answered_after:.1f} s; rolled_back after {ended_after:.1f} s")  # fmt: skip
    write_artifact(
        "health flaps inside the stability window (20 s; app paused once healthy)",
        "| end | Docker says unhealthy | old version answers | run ended | data |",
        [f"| {record['state']} | {unhealthy_after or 0:.1f} s after the pause "
         f"| {answered_after:.1f} s after the pause | {ended_after:.1f} s | equal |"],
    )  # fmt: skip


# --- 3. the Docker engine restarts while the run is in healthcheck --------------------------


@pytest.mark.engine_exclusive
@pytest.mark.timeout(480)
def test_engine_restart_during_healthcheck_ends_known_good(
    testenv: StackTestEnv, compose_stack: StackFactory, tmp_path: Path
) -> None:
    port = free_port()
    proxy = persistent_docker_proxy(testenv.docker_proxy_image, SIDECAR_PROXY_GRANTS, port)
    restarts = 0
    try:
        with compose_stack("1.0.0") as project:
            seed_rows(project)
            before, old_app = items_state(project), project.container("app")
            with running_sidecar(
                project, f"tcp://127.0.0.1:{port}", tmp_path, SUPERVISOR_REHEARSE="false",
                SUPERVISOR_STABILITY_WINDOW="30", SUPERVISOR_HEALTH_TIMEOUT="60",
            ) as sc:  # fmt: skip
                state_dir = Path(sc.env["SUPERVISOR_STATE_DIR"])
                sc.start()
                update_id = start(sc, "1.1.0")

                def new_app_healthy() -> bool:
                    if not in_stage(state_dir, "healthcheck"):
                        return False
                    new = [c for c in project.containers("app") if c != old_app]
                    return len(new) == 1 and health(new[0]) == "healthy"

                wait_for(new_app_healthy, "the new app container healthy", 120)
                mine = {*docker("ps", "-aq", "--no-trunc", "--filter",
                                f"label=com.docker.compose.project={project.name}").split(), proxy}  # fmt: skip
                restart = restart_engine(testenv.state_dir, keep_down=mine)
                back = time.monotonic()
                wait_answers(f"{testenv.registry_url}/v2/")
                wait_answers(f"http://127.0.0.1:{port}/_ping", b"OK")
                # The sidecar must end in a good state, restarted if it died.
                deadline = time.monotonic() + 240
                while True:
                    assert sc.proc is not None
                    if sc.proc.poll() is not None:
                        restarts += 1
                        sc.start()
                    try:
                        record = wait_end(sc, update_id, 5)
                        break
                    except (AssertionError, OSError):
                        assert time.monotonic() < deadline, "the run did not end"
                ended_after = time.monotonic() - back
                state = record["state"]
                # What is there, printed before any assertion: this test runs once per suite.
                facts = stack_facts(project)
                print(
                    f"run {state} ({record.get('error')}; warnings {record.get('warnings')}); stack: {facts}"
                )
                assert state in ("completed", "rolled_back"), (record.get("error"), facts)
                for service in SERVICES:  # one running container each, healthy
                    wait_healthy(project.container(service), timeout=120)
                expected = "1.1.0" if state == "completed" else "1.0.0"
                assert app_version(project) == expected
                assert image_version(project.container("python_backend")) == expected
                now = items_state(project)
                if state == "completed":
                    assert now[:2] == before[:2], (before, now)  # rows and content kept
                    assert now[2] == "001,002", now  # and migrated
                else:
                    assert now == before
                version = sc.call("GET", "/admin/version")
                assert version["version"] == expected, version
                assert version["last_result"]["state"] == state, version
                assert_listed_artifacts_exist(record, sc, project)
    finally:
        docker("rm", "-f", proxy, check=False)
    print(f"engine: stopped in {restart.stopped_after:.1f} s, answering again after "
          f"{restart.down_for:.1f} s; started by hand: {restart.restarted_by_hand}; run "
          f"ended {state} {ended_after:.1f} s after the engine was back; sidecar restarts "
          f"{restarts}")  # fmt: skip
    write_artifact(
        "Docker engine restarted (SIGTERM, as systemctl restart) during healthcheck",
        "| engine down | end | running | data | sidecar restarts | ended after the engine was back |",
        [f"| {restart.down_for:.1f} s | {state} | {expected} | equal | {restarts} "
         f"| {ended_after:.1f} s |"],
    )  # fmt: skip
