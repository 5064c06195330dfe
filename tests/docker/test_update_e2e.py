"""End-to-end update runs against a real Compose stack, through the docker-proxy.

S1 success, S2 bad migration (rehearsed, then unrehearsed), S3 unhealthy and
crashing releases: each ends on a known-good version with the data intact.
"""

from __future__ import annotations

import time
from pathlib import Path

from supervisor.update.models import StartRequest
from supervisor.update.stages import Stage
from tests.support.compose import ComposeProject, StackFactory
from tests.support.dockercli import docker, inspect, pull_events_since
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

SEED = "INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 5000) g"


def running_digest(project: ComposeProject, service: str) -> str:
    image = inspect("container", project.container(service))["Config"]["Image"]
    return str(image).split("@", 1)[1]


async def test_s1_update_succeeds_and_pins(
    compose_stack: StackFactory, docker_proxy_url: str, testenv: StackTestEnv, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        pg = stack_postgres(project)
        pg.psql(SEED)
        settings = stack_settings(project, docker_proxy_url, tmp_path)
        async with sidecar(settings) as runtime:
            started = await runtime.manager.start(StartRequest(target_version="1.1.0"))
            record = await runtime.manager.wait(started.update_id)
            assert record.result is Stage.COMPLETED, record.error
            assert record.from_version == "1.0.0"
            target = testenv.fakeapp["1.1.0"].digest
            assert running_digest(project, "app") == target
            assert running_digest(project, "python_backend") == target
            assert app_version(project) == "1.1.0"
            assert (
                pg.psql("SELECT count(*), count(*) FILTER (WHERE category = 'general') FROM items")
                == "5000|5000"
            )
            pins = runtime.manager.deps.state.read_pins()
            assert pins["APP_IMAGE"] == testenv.fakeapp["1.1.0"].pinned
            last_good = runtime.manager.deps.state.read_last_good()
            assert last_good is not None
            assert last_good.version == "1.1.0"
            assert last_good.snapshot_id == record.snapshot_id
            assert [r.update_id for r in runtime.manager.history()] == [record.update_id]
            assert not docker("ps", "-aq", "--filter", f"name={project.name}_app_1.old-").split()
            snapshots = await runtime.snapshots.list()
            assert [s.id for s in snapshots if s.reason == "pre-update"] == [record.snapshot_id]
            info = await runtime.manager.version_info()
            assert info["current"]["app"]["digest"] == target
            assert info["last_result"]["state"] == "completed"


async def test_s2_bad_migration_fails_in_rehearsal_then_rolls_back_without_it(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        pg = stack_postgres(project)
        pg.psql(SEED)
        before = state(pg)
        app_before = project.container("app")
        settings = stack_settings(project, docker_proxy_url, tmp_path / "a", rehearse="true")
        async with sidecar(settings) as runtime:
            with HealthPoller(app_port(project)) as poller:
                started = await runtime.manager.start(StartRequest(target_version="1.2.0"))
                record = await runtime.manager.wait(started.update_id)
            assert record.result is Stage.FAILED, record.error
            assert record.error is not None
            assert record.error.stage is Stage.REHEARSE
            assert "division by zero" in "\n".join(record.log_tail)
            assert poller.misses == []
            assert poller.ok > 10
            assert project.container("app") == app_before
            assert state(pg) == before  # byte for byte: schema, per-table checksums, sequences
            assert f"rehearsal_{record.update_id}" not in pg.psql(
                "SELECT string_agg(datname, ',') FROM pg_database"
            )

        settings = stack_settings(project, docker_proxy_url, tmp_path / "b", rehearse="false")
        async with sidecar(settings) as runtime:
            started = await runtime.manager.start(StartRequest(target_version="1.2.0"))
            record = await runtime.manager.wait(started.update_id)
            assert record.result is Stage.ROLLED_BACK, record.error
            assert record.error is not None
            assert record.error.stage is Stage.MIGRATE
            assert state(pg) == before
            assert app_version(project) == "1.0.0"
            assert record.pre_rollback_snapshot_id is not None


async def test_s3_unhealthy_and_crashing_releases_roll_back_without_pull(
    compose_stack: StackFactory, docker_proxy_url: str, testenv: StackTestEnv, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        pg = stack_postgres(project)
        pg.psql(SEED)
        settings = stack_settings(project, docker_proxy_url, tmp_path, rehearse="false")
        old_digest = testenv.fakeapp["1.0.0"].digest
        async with sidecar(settings) as runtime:
            for version, failed_in in (("1.3.0", Stage.HEALTHCHECK), ("1.4.0", Stage.HEALTHCHECK)):
                before = state(pg)
                since = time.time()
                started = await runtime.manager.start(StartRequest(target_version=version))
                record = await runtime.manager.wait(started.update_id)
                assert record.result is Stage.ROLLED_BACK, (version, record.error)
                assert record.error is not None
                assert record.error.stage is failed_in
                assert running_digest(project, "app") == old_digest
                assert running_digest(project, "python_backend") == old_digest
                assert app_version(project) == "1.0.0"
                # The old version came back from the retained containers: never pulled again.
                # (Matched by repository and digest: a demo stack's own repository holds
                # the same image, and tests run in parallel.)
                assert not pull_events_since(since, testenv.fakeapp["1.0.0"].pinned)
                assert state(pg) == before  # equal to the pre-update snapshot
                pre_rollback = await runtime.snapshots.get(record.pre_rollback_snapshot_id or "")
                assert pre_rollback.reason == "pre-rollback"
                pins = runtime.manager.deps.state.read_pins()
                assert pins["APP_IMAGE"] == testenv.fakeapp["1.0.0"].pinned
