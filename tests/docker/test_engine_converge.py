"""Convergent lifecycle steps and the fail-fast health gate, against the real engine.

The in-flight stop is made the way a killed sidecar leaves it: the docker CLI
(on the socket, a separate client) stops a container that ignores SIGTERM, and
the product acts while that stop is still running inside the engine.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from supervisor.engine.docker_engine import DockerEngine
from supervisor.exceptions import EngineNotFound, HealthCheckFailed
from tests.support.dockercli import ENGINE_SOCKET, docker, inspect, owner_labels
from tests.support.testenv import StackTestEnv

# PID 1 of a container has no default SIGTERM action: ``sleep`` ignores it, so
# every stop waits the full timeout and ends in SIGKILL (exit code 137).
STOP_SECONDS = 5
RunContainer = Callable[..., str]


@pytest.fixture
def run_container(testenv: StackTestEnv) -> Iterator[RunContainer]:
    """Factory: ``run_container(*docker_run_args, command=[...])``; always removed."""
    created: list[str] = []

    def factory(*args: str, command: tuple[str, ...] = ("sleep", "infinity")) -> str:
        labels = [f"--label={k}={v}" for k, v in owner_labels().items()]
        cid = docker("run", "-d", *labels, *args, testenv.base_image, *command).strip()
        created.append(cid)
        return cid

    yield factory
    for cid in created:
        docker("rm", "-f", cid, check=False)


def stop_in_background(cid: str) -> subprocess.Popen[bytes]:
    """Another client's stop, left running in the engine (like a killed sidecar's)."""
    proc = subprocess.Popen(
        ["docker", "-H", ENGINE_SOCKET, "stop", "-t", str(STOP_SECONDS), cid],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    state = inspect("container", cid)["State"]
    if not (state["Running"] and state["Status"] == "running"):
        proc.kill()  # reaped here, not left to warn in whichever test runs next
        proc.wait()
        raise AssertionError(f"the stop landed at once, so none is in flight: {state}")
    return proc


async def test_a_plain_start_during_an_in_flight_stop_is_undone_by_it(
    engine: DockerEngine, run_container: RunContainer
) -> None:
    """The issue's premise on this engine: why ensure_running needs ``stop_timeout``."""
    cid = run_container(f"--stop-timeout={STOP_SECONDS}")
    proc = stop_in_background(cid)
    await engine.start(cid)  # 304: "already running", a no-op
    await asyncio.to_thread(proc.wait, 30)
    state = inspect("container", cid)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)


async def test_ensure_stopped_blocks_until_an_in_flight_stop_settles(
    engine: DockerEngine, run_container: RunContainer
) -> None:
    cid = run_container(f"--stop-timeout={STOP_SECONDS}")
    issued = time.monotonic()
    proc = stop_in_background(cid)
    # Our own timeout is longer: returning early means the other client's kill ended it.
    await engine.ensure_stopped(cid, timeout=30)
    settled = time.monotonic() - issued
    state = inspect("container", cid)["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 137)
    assert STOP_SECONDS - 0.5 <= settled < STOP_SECONDS + 5, settled
    assert await asyncio.to_thread(proc.wait, 5) == 0
    # Already stopped (304) and gone: both are "stopped", quickly and without error.
    started = time.monotonic()
    await engine.ensure_stopped(cid, timeout=30)
    docker("rm", "-f", cid)
    await engine.ensure_stopped(cid, timeout=30)
    assert time.monotonic() - started < 3


async def test_ensure_running_waits_out_an_in_flight_stop_and_stays_running(
    engine: DockerEngine, run_container: RunContainer
) -> None:
    cid = run_container(f"--stop-timeout={STOP_SECONDS}")
    first_start = inspect("container", cid)["State"]["StartedAt"]
    proc = stop_in_background(cid)
    view = await engine.ensure_running(cid, timeout=60, stop_timeout=STOP_SECONDS)
    assert view.running
    assert await asyncio.to_thread(proc.wait, 10) == 0  # the stale stop is over...
    await asyncio.sleep(2)
    state = inspect("container", cid)["State"]
    assert state["Running"] is True  # ...and did not take the container with it
    assert state["StartedAt"] != first_start  # started again after the stale stop ended it
    assert state["ExitCode"] == 0
    assert not state["FinishedAt"].startswith("0001")
    # Running already: a no-op, no restart.
    again = await engine.ensure_running(cid, timeout=60, settle=0.5)
    assert again.running
    assert inspect("container", cid)["State"]["StartedAt"] == state["StartedAt"]


async def test_ensure_running_starts_an_exited_container_and_reports_one_that_will_not_run(
    engine: DockerEngine, run_container: RunContainer
) -> None:
    cid = run_container()
    docker("stop", "-t", "0", cid)
    assert (await engine.ensure_running(cid, timeout=30, settle=1)).running
    dying = run_container("--restart=no", command=("sh", "-c", "sleep 0.2; exit 3"))
    started = time.monotonic()
    with pytest.raises(Exception, match=r"did not stay running within 6 s: exited \(exit code 3\)"):
        await engine.ensure_running(dying, timeout=6, settle=1)
    assert time.monotonic() - started < 20
    with pytest.raises(EngineNotFound):
        await engine.ensure_running("0" * 64, timeout=5)


async def test_health_gate_fails_fast_when_docker_says_unhealthy(
    engine: DockerEngine, run_container: RunContainer
) -> None:
    cid = run_container(
        "--health-cmd=echo broken; exit 1", "--health-interval=1s", "--health-retries=2",
        "--health-start-period=0s",
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(HealthCheckFailed, match=r"is unhealthy after \d+ s .*broken") as failed:
        await engine.wait_healthy(cid, timeout=120)
    elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # Docker's verdict comes after ~2 probes, not 120 s
    assert inspect("container", cid)["State"]["Health"]["Status"] == "unhealthy"
    assert failed.value.error_key == "health_check_failed"


async def test_health_gate_fails_fast_when_the_container_exits_or_restarts(
    engine: DockerEngine, run_container: RunContainer
) -> None:
    # Health stays "starting" for 60 s: only the exit can end the wait early.
    slow_check = ("--health-cmd=exit 1", "--health-interval=60s", "--health-start-period=60s")
    exiting = run_container(*slow_check, "--restart=no", command=("sh", "-c", "sleep 2; exit 3"))
    started = time.monotonic()
    with pytest.raises(HealthCheckFailed, match=r"is exited \(exit code 3\)"):
        await engine.wait_healthy(exiting, timeout=120)
    assert time.monotonic() - started < 6

    restarting = run_container(
        *slow_check, "--restart=always", command=("sh", "-c", "sleep 2; exit 4")
    )
    started = time.monotonic()
    with pytest.raises(HealthCheckFailed, match=r"restarted|is restarting"):
        await engine.wait_healthy(restarting, timeout=120)
    assert time.monotonic() - started < 8
