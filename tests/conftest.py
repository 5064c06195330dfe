"""Fixtures shared by the suite.

Tests under ``tests/unit`` need no engine and are marked ``unit``; tests under
``tests/docker`` run against the real engine, registry and databases that
``scripts/testenv`` brings up, and are marked ``docker``. When that
environment is missing, docker tests are skipped *with the reason printed*,
except when ``STACKSUP_REQUIRE_ENGINE=1`` (set by ``make test`` and CI), where
a missing environment is a failure: CI never counts a skipped real-engine
test as passing.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import aiodocker
import pytest

from supervisor.engine.docker_engine import DockerEngine
from tests.support.compose import ComposeProject, compose_project
from tests.support.databases import (
    InfluxHandle,
    PostgresHandle,
    influxdb_container,
    postgres_container,
)
from tests.support.dockercli import docker, engine_available, owner_labels, remove_leftovers
from tests.support.testenv import StackTestEnv, load_testenv

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

# The grants the sidecar gets in production (compose/docker-compose.yml).
SIDECAR_PROXY_GRANTS = {"CONTAINERS": "1", "IMAGES": "1", "EXEC": "1", "NETWORKS": "1", "POST": "1"}


# Fixtures that bring a whole stack up: a test asking for one takes a minute or more,
# most others seconds. ``stack`` is the shipped stack (tests/support/demo_stack.py),
# ``compose_stack`` the test stack (tests/support/compose.py), ``edge_stack`` its start-first
# variant behind a proxy (tests/docker/test_start_first.py).
STACK_FIXTURES = frozenset({"stack", "compose_stack", "edge_stack"})


def brings_up_a_stack(item: pytest.Item) -> bool:
    return bool(STACK_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "docker" in parts:
            item.add_marker(pytest.mark.docker)
        elif "unit" in parts:
            item.add_marker(pytest.mark.unit)
    # Longest first: parallel workers (scripts/testenv) take tests in this order, so the
    # minutes-long ones start at once and the quick ones fill the gaps, instead of one
    # worker starting a long update run when the others are already done. A stable sort
    # keeps file order otherwise, identical in every worker, as xdist requires.
    items.sort(key=lambda item: not brings_up_a_stack(item))


def pytest_sessionstart(session: pytest.Session) -> None:
    # Under pytest-xdist the controller cleans up before it starts the workers; a worker
    # doing it again would only race its siblings over the same dead leftovers. (Safe
    # either way: only objects whose owner pid is gone are removed, and every worker's
    # objects carry that worker's own, live pid.)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if engine_available():
        for leftover in remove_leftovers():
            print(f"removed leftover of a crashed test run: {leftover}")


@pytest.fixture(scope="session")
def testenv() -> StackTestEnv:
    """The built test environment; skip (or fail in CI) when it is not there."""
    env = load_testenv()
    problem = None
    if not engine_available():
        problem = "no Docker engine answers on /var/run/docker.sock"
    elif env is None:
        problem = "the test images are not built (.testenv/images.json missing)"
    if problem:
        message = f"{problem}; run `scripts/testenv up && scripts/testenv images`"
        if os.environ.get("STACKSUP_REQUIRE_ENGINE") == "1":
            pytest.fail(f"real-engine tests required but {message}", pytrace=False)
        pytest.skip(message)
    assert env is not None
    return env


def start_docker_proxy(testenv: StackTestEnv, grants: dict[str, str]) -> tuple[str, str]:
    """Run the docker-proxy image with the given grants; return (container id, tcp URL)."""
    args = ["run", "-d", "-p", "127.0.0.1::2375", "-v", "/var/run/docker.sock:/var/run/docker.sock"]
    for key, value in {**owner_labels(), "org.stacksup.test.role": "docker-proxy"}.items():
        args += ["--label", f"{key}={value}"]
    for key, value in grants.items():
        args += ["-e", f"{key}={value}"]
    cid = docker(*args, testenv.docker_proxy_image).strip()
    port = docker("port", cid, "2375/tcp").splitlines()[0].rsplit(":", 1)[1]
    url = f"tcp://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_ping", timeout=2) as r:
                if r.read() == b"OK":
                    return cid, url
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture(scope="session")
def docker_proxy_url(testenv: StackTestEnv) -> Iterator[str]:
    """A docker-proxy with the sidecar's production grants, for the whole session."""
    cid, url = start_docker_proxy(testenv, SIDECAR_PROXY_GRANTS)
    yield url
    docker("rm", "-f", cid, check=False)


@pytest.fixture
async def docker_client(docker_proxy_url: str) -> AsyncIterator[aiodocker.Docker]:
    """An aiodocker client that reaches the engine only through the proxy."""
    client = aiodocker.Docker(url=docker_proxy_url)
    yield client
    await client.close()


@pytest.fixture
def postgres(testenv: StackTestEnv) -> Iterator[PostgresHandle]:
    """A fresh, healthy PostgreSQL 15 container (database ``appdb``, user ``app``)."""
    with postgres_container(testenv.postgres_image) as handle:
        yield handle


@pytest.fixture
def influxdb(testenv: StackTestEnv) -> Iterator[InfluxHandle]:
    """A fresh, healthy InfluxDB 1.x container."""
    with influxdb_container(testenv.influxdb_image) as handle:
        yield handle


@pytest.fixture
def compose_stack(
    testenv: StackTestEnv,
) -> Callable[..., AbstractContextManager[ComposeProject]]:
    """Factory: ``with compose_stack("1.0.0") as project:`` brings up the test stack."""

    def factory(
        app_version: str = "1.0.0", backend_version: str | None = None
    ) -> AbstractContextManager[ComposeProject]:
        return compose_project(testenv, app_version, backend_version)

    return factory


@pytest.fixture
async def engine(docker_proxy_url: str) -> AsyncIterator[DockerEngine]:
    """The product's engine adapter, through the proxy with production grants."""
    async with DockerEngine(docker_proxy_url) as adapter:
        yield adapter
