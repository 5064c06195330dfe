"""The rehearsal cannot touch the live database, whatever the migrations image reads.

The stack's ``migrations`` service here gets ``DATABASE_URL=postgresql://…@postgres/appdb``,
and the fake app, like most frameworks, lets that URL win over every ``POSTGRES_*``
variable: an image that no override variable can redirect, aimed at the live database's
host name. (A control at the end of the failure test shows that pointing
``POSTGRES_DB`` elsewhere, what the rehearsal used to do, migrates the live database
with this image.) The rehearsal must run it against the scratch copy anyway: the live
database byte for byte unchanged (schema, per-table checksums, sequences), nothing of
the sandbox left after success, failure, cancel or shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from supervisor.config import Settings
from supervisor.engine.docker_engine import DockerEngine
from supervisor.engine.sandbox import SANDBOX_LABEL, SANDBOX_PROJECT_LABEL
from supervisor.services import Runtime
from supervisor.update.models import RunRecord, StartRequest
from supervisor.update.stages import Stage
from tests.support.compose import ComposeProject, StackFactory
from tests.support.dockercli import docker, inspect
from tests.support.pg_state import state
from tests.support.sidecar import (
    HealthPoller,
    app_port,
    app_version,
    sidecar,
    stack_postgres,
    stack_settings,
)
from tests.support.testenv import StackTestEnv

ROWS = 5000
SEED = f"INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g"  # noqa: S608 (a constant)


def use_database_url(project: ComposeProject, tmp_path: Path, url: str) -> None:
    """Recreate the stack's migrations container with ``DATABASE_URL=url``; seed the data."""
    override = tmp_path / "database-url.yml"
    override.write_text(f"services:\n  migrations:\n    environment:\n      DATABASE_URL: {url}\n")
    proc = subprocess.run(
        ["docker-compose", "-p", project.name, "-f", str(project.file), "-f", str(override),
         "up", "-d", "--no-deps", "--force-recreate", "migrations"],
        env=project.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (migrations,) = project.containers("migrations", all_states=True)
    assert f"DATABASE_URL={url}" in inspect("container", migrations)["Config"]["Env"]
    stack_postgres(project).psql(SEED)


@contextmanager
def url_stack(compose_stack: StackFactory, tmp_path: Path) -> Iterator[ComposeProject]:
    """The test stack at 1.0.0, its migrations aimed at the live server by DATABASE_URL."""
    with compose_stack("1.0.0") as project:
        try:
            url = f"postgresql://app:{project.postgres_password}@postgres:5432/appdb"
            use_database_url(project, tmp_path, url)
            yield project
        finally:
            remove_sandboxes_by_hand(project.name)


def settings_for(project: ComposeProject, proxy_url: str, tmp_path: Path) -> Settings:
    """Rehearsing; InfluxDB left out (nothing to do with the rehearsal, and faster)."""
    return stack_settings(
        project, proxy_url, tmp_path / "run", rehearse="true",
        services="app=app,python_backend=app,migrations=migrations,postgres=postgres",
    )  # fmt: skip


def sandbox_objects(project: str, run_id: str | None = None) -> list[str]:
    """Containers, networks and volumes of the project's rehearsal sandboxes still there."""
    label = f"label={SANDBOX_PROJECT_LABEL}={project}"
    if run_id is not None:
        label = f"label={SANDBOX_LABEL}={run_id}"
    found = docker("ps", "-aq", "--filter", label).split()
    found += docker("network", "ls", "-q", "--filter", label).split()
    return found


def remove_sandboxes_by_hand(project: str) -> None:
    """Test teardown only: whatever a failed test left (the product's clean-up is under test)."""
    label = f"label={SANDBOX_PROJECT_LABEL}={project}"
    for container in docker("ps", "-aq", "--filter", label).split():
        docker("rm", "-f", "-v", container, check=False)
    for network in docker("network", "ls", "-q", "--filter", label).split():
        docker("network", "rm", network, check=False)


def rehearsal_log(record: RunRecord) -> str:
    return "\n".join(line for line in record.log_tail if "rehearsal" in line)


async def wait_for_state(runtime: Runtime, update_id: str, stage: Stage, timeout: float) -> None:
    for _ in range(int(timeout / 0.1)):
        if runtime.manager.status(update_id).state is stage:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {update_id} never reached {stage}")


async def wait_for_sandbox(project: str, timeout: float = 60) -> list[str]:
    """The sandbox server's container ids once it exists (the rehearsal is under way)."""
    for _ in range(int(timeout / 0.2)):
        label = f"label={SANDBOX_PROJECT_LABEL}={project}"
        if servers := docker("ps", "-q", "--filter", label).split():
            return servers
        await asyncio.sleep(0.2)
    raise AssertionError("no rehearsal sandbox appeared")


@pytest.mark.timeout(600)
async def test_rehearsal_migrates_the_copy_and_the_live_database_stays_unchanged(
    compose_stack: StackFactory,
    docker_proxy_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hold the run right after the rehearsal (stop journaled, nothing stopped yet), long
    # enough to measure the live database before the real migration changes it.
    monkeypatch.setenv("STACKSUP_FAULT_HOLD", "stop:12")
    with url_stack(compose_stack, tmp_path) as project:
        pg = stack_postgres(project)
        before = state(pg)
        settings = settings_for(project, docker_proxy_url, tmp_path)
        async with sidecar(settings) as runtime:
            started = await runtime.manager.start(StartRequest(target_version="1.1.0"))
            await wait_for_state(runtime, started.update_id, Stage.STOP, timeout=300)
            assert state(pg) == before  # after the rehearsal: byte for byte
            assert sandbox_objects(project.name) == []
            record = await runtime.manager.wait(started.update_id)

        assert record.result is Stage.COMPLETED, record.error
        log = rehearsal_log(record)
        # It ran on a copy of *this* data: 001 already there, every row, 002 applied there.
        assert f"rehearsal: database appdb on postgres: {ROWS} items" in log
        assert "rehearsal: migration 001: already applied" in log
        assert "rehearsal: migration 002: done" in log
        assert f"isolated network {project.name}_rehearsal_{record.update_id}" in log
        # The real migration, in `migrate`, then changed the live database as it should.
        assert pg.psql(
            "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"
        ) == ("001,002")
        assert app_version(project) == "1.1.0"
        assert sandbox_objects(project.name) == []


@pytest.mark.timeout(600)
async def test_a_failing_rehearsal_leaves_the_live_database_and_nothing_else_behind(
    compose_stack: StackFactory,
    docker_proxy_url: str,
    engine: DockerEngine,
    testenv: StackTestEnv,
    tmp_path: Path,
) -> None:
    with url_stack(compose_stack, tmp_path) as project:
        pg = stack_postgres(project)
        before = state(pg)
        settings = settings_for(project, docker_proxy_url, tmp_path)
        async with sidecar(settings) as runtime:
            with HealthPoller(app_port(project)) as poller:
                started = await runtime.manager.start(StartRequest(target_version="1.2.0"))
                record = await runtime.manager.wait(started.update_id)
        assert record.result is Stage.FAILED, record.error
        assert record.error is not None
        assert record.error.stage is Stage.REHEARSE
        assert record.error.error_key == "migration_failed"
        log = rehearsal_log(record)
        assert f"rehearsal: database appdb on postgres: {ROWS} items" in log
        assert "division by zero" in log
        assert state(pg) == before  # 003 commits damage half-way: none of it here
        assert poller.misses == []
        assert app_version(project) == "1.0.0"
        assert sandbox_objects(project.name) == []

        # Control: this image with the old trick (POSTGRES_DB pointed at a scratch name, on
        # the stack's network) migrates the live database. That is what the sandbox stops.
        (template,) = project.containers("migrations", all_states=True)
        result = await engine.run_one_shot(
            template, testenv.fakeapp["1.1.0"].pinned, "control", 120,
            env={"POSTGRES_DB": "rehearsal_control"},
        )  # fmt: skip
        assert result.exit_code == 0, result.logs
        assert "database appdb on postgres" in result.logs
        assert state(pg) != before
        assert pg.psql("SELECT max(version) FROM schema_migrations") == "002"


@pytest.mark.timeout(600)
async def test_cancel_and_shutdown_mid_rehearsal_remove_the_sandbox(
    compose_stack: StackFactory, docker_proxy_url: str, engine: DockerEngine, tmp_path: Path
) -> None:
    with url_stack(compose_stack, tmp_path) as project:
        pg = stack_postgres(project)
        before = state(pg)
        settings = settings_for(project, docker_proxy_url, tmp_path)
        async with sidecar(settings) as runtime:
            started = await runtime.manager.start(StartRequest(target_version="1.1.0"))
            (server,) = await wait_for_sandbox(project.name)
            volumes = [m["Name"] for m in inspect("container", server)["Mounts"] if m.get("Name")]
            assert volumes  # the server's data lives in its own anonymous volume
            await runtime.manager.cancel(started.update_id)
            record = await runtime.manager.wait(started.update_id)
            assert record.result is Stage.CANCELLED, record.error
            assert sandbox_objects(project.name) == []
            for volume in volumes:
                assert docker("volume", "ls", "-q", "--filter", f"name={volume}").split() == []

            second = await runtime.manager.start(StartRequest(target_version="1.1.0"))
            await wait_for_sandbox(project.name)
        # Leaving the context shut the sidecar down mid-rehearsal (the task is cancelled).
        assert sandbox_objects(project.name, second.update_id) == []
        assert state(pg) == before
        assert app_version(project) == "1.0.0"

        # A crash leaves the sandbox; recovery finds it by its labels alone.
        (postgres,) = project.containers("postgres")
        await engine.create_sandbox(postgres, project.name, "crashed0run")
        assert len(sandbox_objects(project.name, "crashed0run")) == 2
        removed = await engine.remove_sandboxes(project.name, "crashed0run")
        assert sorted(removed) == sorted(
            [
                f"{project.name}_rehearsal_crashed0run_postgres",
                f"{project.name}_rehearsal_crashed0run",
            ]
        )
        assert sandbox_objects(project.name) == []
        assert await engine.remove_sandboxes(project.name, "crashed0run") == []


def host_address(project: ComposeProject) -> str:
    """The stack network's gateway: an address of the host's, every container could route
    to it, and nothing sent there leaves the machine."""
    network = f"{project.name}_default"
    gateway = docker("network", "inspect", network, "--format",
                     "{{(index .IPAM.Config 0).Gateway}}").strip()  # fmt: skip
    assert gateway, f"{network} has no gateway address"
    return gateway


class HostRelay(socketserver.ThreadingTCPServer):
    """A TCP relay on the host to the live server, as a host-network pgbouncer, an SSH
    tunnel or a natively installed database would offer it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: str, target: tuple[str, int]) -> None:
        self.target = target
        super().__init__((listen, 0), _Relay)
        self.port: int = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Relay(socketserver.BaseRequestHandler):
    server: HostRelay

    def handle(self) -> None:
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            pipes = [
                threading.Thread(target=_pipe, args=(self.request, upstream), daemon=True),
                threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True),
            ]
            for pipe in pipes:
                pipe.start()
            for pipe in pipes:
                pipe.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextmanager
def relay_to_live(project: ComposeProject) -> Iterator[HostRelay]:
    live = inspect("container", project.container("postgres"))
    live_ip = live["NetworkSettings"]["Networks"][f"{project.name}_default"]["IPAddress"]
    relay = HostRelay(host_address(project), (live_ip, 5432))
    try:
        yield relay
    finally:
        relay.shutdown()
        relay.server_close()


@pytest.mark.timeout(600)
async def test_the_live_server_is_out_of_reach_through_the_host_too(
    compose_stack: StackFactory,
    docker_proxy_url: str,
    engine: DockerEngine,
    testenv: StackTestEnv,
    tmp_path: Path,
) -> None:
    """``internal: true`` alone still lets a container reach every port the *host* listens
    on, through the bridge's gateway address (checked: the gateway, the host's own address
    and docker0's all answered). The sandbox network leaves the host no address on it.
    The live server is offered on the host here and the migrations aimed at it."""
    with compose_stack("1.0.0") as project, relay_to_live(project) as relay:
        address = host_address(project)
        url = f"postgresql://app:{project.postgres_password}@{address}:{relay.port}/appdb"
        use_database_url(project, tmp_path, url)
        try:
            pg = stack_postgres(project)
            before = state(pg)
            settings = settings_for(project, docker_proxy_url, tmp_path)
            async with sidecar(settings) as runtime:
                started = await runtime.manager.start(StartRequest(target_version="1.1.0"))
                record = await runtime.manager.wait(started.update_id)
            assert record.result is Stage.FAILED, record.error
            assert record.error is not None
            assert record.error.stage is Stage.REHEARSE
            assert "psycopg2.OperationalError" in rehearsal_log(record)  # nowhere to connect
            assert state(pg) == before
            assert sandbox_objects(project.name) == []

            # Control: from the stack's own network the same URL reaches the live server.
            (template,) = project.containers("migrations", all_states=True)
            result = await engine.run_one_shot(
                template, testenv.fakeapp["1.1.0"].pinned, "control", 120
            )
            assert result.exit_code == 0, result.logs
            assert f"database appdb on {address}: {ROWS} items" in result.logs
            assert state(pg) != before
        finally:
            remove_sandboxes_by_hand(project.name)
