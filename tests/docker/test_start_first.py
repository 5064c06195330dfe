"""The zero-downtime mode on the real engine (issue 15, section 3): a compatible release
updated start-first, and one that never becomes healthy rolled back, with a poller going
through a reverse proxy the whole time and not one request failing.

The stack (tests/env/compose/start-first.yml) has ``app`` and ``python_backend`` opted in
with ``supervisor.update_order: start-first`` and publishing no host port; ``edge``, nginx
resolving ``app`` per request through Docker's DNS, is the only way in. The release comes
from a CanopyOS manifest file with ``"compatible_migrations": true`` (1.1.0's migration 002
only adds a column with a default, so 1.0.0 keeps working on it). ``supervisor serve`` runs
as a real process through the docker-proxy. Everything asserted is measured outside the
product: the poller's requests, the database over ``psql``, the containers over the CLI.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.compose import ComposeProject
from tests.support.dockercli import docker, inspect
from tests.support.edge_stack import EdgePoller, PollerStats, edge_get, edge_url, start_first_stack
from tests.support.scenarios import (
    assert_listed_artifacts_exist,
    running_sidecar,
    seed_rows,
    snapshots_of,
    start,
    wait_end,
    wait_for,
)
from tests.support.sidecar import stack_postgres
from tests.support.sidecar_process import Sidecar
from tests.support.testenv import StackTestEnv

pytestmark = pytest.mark.docker

APP_SERVICES = ("python_backend", "app")
WRITTEN = "written through the proxy during the run"
# Kept polling after the run ends: a failure right after the swap counts too.
SETTLE = 2.0


def write_manifest(
    testenv: StackTestEnv, workdir: Path, version: str, compatible: bool = True
) -> Path:
    """The CanopyOS release manifest as a file the sidecar reads (an absolute path)."""
    ref = testenv.fakeapp[version].ref
    path = workdir / f"release-{version}.json"
    path.write_text(
        json.dumps(
            {
                "version": version,
                "services": {"app": ref, "python_backend": ref, "migrations": ref},
                "compatible_migrations": compatible,
            }
        )
    )
    return path


def data_state(project: ComposeProject) -> tuple[str, str, str]:
    """(rows, checksum, migrations) of the rows the test seeded (not the one it writes)."""
    pg = stack_postgres(project)
    rows = f"FROM items WHERE name <> '{WRITTEN}'"
    return (
        pg.psql(f"SELECT count(*) {rows}"),
        pg.psql(f"SELECT md5(string_agg(id || ':' || name, ',' ORDER BY id)) {rows}"),
        pg.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"),
    )


def has_category_column(project: ComposeProject) -> bool:
    """Migration 002 has run on the live database (it adds ``items.category``)."""
    found = stack_postgres(project).psql(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'items' AND column_name = 'category'"
    )
    return found == "1"


def write_once_migrated(project: ComposeProject) -> dict[str, Any]:
    """Once the new schema is live (the old version still serving), a user writes a row
    through the proxy: what a start-first rollback must not throw away."""
    wait_for(lambda: has_category_column(project), "migration 002 on the live database", 180)
    request = urllib.request.Request(
        edge_url(project) + "/items",
        data=json.dumps({"name": WRITTEN}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201
        written: dict[str, Any] = json.loads(answer.read())
    return written


def written_rows(project: ComposeProject) -> str:
    return stack_postgres(project).psql(
        f"SELECT count(*) FROM items WHERE name = '{WRITTEN}'"  # noqa: S608
    )


def next_containers(project: ComposeProject) -> list[str]:
    """Containers a start-first run started next to the old ones, still present."""
    names = docker(
        "ps", "-a", "--filter", f"label=com.docker.compose.project={project.name}",
        "--format", "{{.Names}}",
    ).split()  # fmt: skip
    return [n for n in names if "-next-" in n]


def report(name: str, stats: PollerStats) -> None:
    print(f"\n[start-first] {name}: {stats.summary()}")
    for failure in stats.failures[:20]:
        print(f"  failed: {failure}")


def assert_no_failures(stats: PollerStats) -> None:
    assert stats.requests > 0
    # One request sent every 50 ms (a little slack for a loaded machine's scheduling).
    assert stats.duration / stats.requests < 0.06, "the poller did not poll every 50 ms"
    assert stats.failures == [], (
        f"{len(stats.failures)} failed requests through the proxy, downtime "
        f"{stats.downtime:.2f} s: {stats.failures[:10]}"
    )


@contextmanager
def update_through_proxy(
    project: ComposeProject, proxy_url: str, workdir: Path, manifest: Path, target: str
) -> Iterator[tuple[Sidecar, str, EdgePoller]]:
    """A sidecar reading ``manifest``; the poller runs from before the start until
    :data:`SETTLE` seconds after the caller is done (waiting for the end inside)."""
    with running_sidecar(
        project, proxy_url, workdir, SUPERVISOR_RELEASE_MANIFEST_URL=str(manifest)
    ) as sc:
        sc.start()
        with EdgePoller(edge_url(project)) as poller:
            update_id = start(sc, target)
            yield sc, update_id, poller
            time.sleep(SETTLE)


EdgeStackFactory = Callable[..., AbstractContextManager[ComposeProject]]


@pytest.fixture
def edge_stack(testenv: StackTestEnv) -> EdgeStackFactory:
    """Factory: ``with edge_stack() as project:`` (see tests/support/edge_stack.py)."""

    def factory(publish_app: bool = False) -> AbstractContextManager[ComposeProject]:
        return start_first_stack(testenv, publish_app=publish_app)

    return factory


@pytest.mark.timeout(900)
@pytest.mark.engine_exclusive  # zero failed requests: measured alone, not under 4 workers
def test_compatible_release_updates_start_first_without_a_failed_request(
    edge_stack: EdgeStackFactory, testenv: StackTestEnv, docker_proxy_url: str, tmp_path: Path
) -> None:
    manifest = write_manifest(testenv, tmp_path, "1.1.0")
    with edge_stack() as project:
        seed_rows(project)
        before = data_state(project)
        old = {s: inspect("container", project.container(s)) for s in APP_SERVICES}
        with update_through_proxy(project, docker_proxy_url, tmp_path, manifest, "1.1.0") as (
            sc,
            update_id,
            poller,
        ):
            written = write_once_migrated(project)
            record = wait_end(sc, update_id)
        report("update 1.0.0 -> 1.1.0", poller.stats)

        assert record["state"] == "completed", (record.get("error"), record.get("warnings"))
        assert record["update_order"] == "start-first", record.get("warnings")
        stages = [s["stage"] for s in record["stages"]]
        assert "stop" not in stages, stages
        assert_no_failures(poller.stats)
        # Both versions answered through the proxy: the old one until the swap, then the new.
        assert poller.stats.versions["1.0.0"] > 0, poller.stats.versions
        assert poller.stats.versions["1.1.0"] > 0, poller.stats.versions
        assert set(poller.stats.versions) == {"1.0.0", "1.1.0"}, poller.stats.versions
        assert edge_get(project, "/version")["version"] == "1.1.0"
        # The old version took the write after the migration, on the new schema.
        assert written["version"] == "1.0.0", written
        assert written_rows(project) == "1"
        assert data_state(project) == (before[0], before[1], "001,002")
        running = docker("ps", "-q", "--no-trunc").split()
        for service, was in old.items():
            now = inspect("container", project.container(service))
            assert now["Id"] != was["Id"], f"{service} was not replaced"
            assert now["Name"] == was["Name"], "the new container did not take the old name"
            # Stopped, kept until the run completed, then removed (as after a stop-first run).
            assert was["Id"] not in running, f"the old {service} container still runs"
        assert next_containers(project) == []


@pytest.mark.timeout(900)
@pytest.mark.engine_exclusive  # zero failed requests: measured alone, not under 4 workers
def test_never_healthy_compatible_release_rolls_back_keeping_data_and_traffic(
    edge_stack: EdgeStackFactory, testenv: StackTestEnv, docker_proxy_url: str, tmp_path: Path
) -> None:
    manifest = write_manifest(testenv, tmp_path, "1.3.0")  # migrates fine, never healthy
    with edge_stack() as project:
        seed_rows(project)
        before = data_state(project)
        old = {s: project.container(s) for s in APP_SERVICES}
        started = {s: inspect("container", c)["State"]["StartedAt"] for s, c in old.items()}
        with update_through_proxy(project, docker_proxy_url, tmp_path, manifest, "1.3.0") as (
            sc,
            update_id,
            poller,
        ):
            written = write_once_migrated(project)
            record = wait_end(sc, update_id)
            # The pre-update snapshot is kept for a manual restore (asked while it serves).
            pre = [s for s in snapshots_of(sc, update_id) if s["reason"] == "pre-update"]
            assert [s["id"] for s in pre] == [record["snapshot_id"]], pre
            sc.call("GET", f"/admin/snapshots/{record['snapshot_id']}")
            assert_listed_artifacts_exist(record, sc, project)
        report("rollback of 1.3.0 (never healthy)", poller.stats)

        assert record["state"] == "rolled_back", (record.get("error"), record.get("warnings"))
        assert record["update_order"] == "start-first", record.get("warnings")
        assert "stop" not in [s["stage"] for s in record["stages"]]
        assert_no_failures(poller.stats)
        assert set(poller.stats.versions) == {"1.0.0"}, poller.stats.versions
        assert edge_get(project, "/version")["version"] == "1.0.0"
        # The old containers served throughout: the same ones, never stopped or restarted.
        for service, cid in old.items():
            assert project.container(service) == cid, f"{service} is not the old container"
            assert inspect("container", cid)["State"]["StartedAt"] == started[service]
        assert next_containers(project) == [], "the new containers were not removed"
        # The database was NOT restored: the expand-only migration and the row a user
        # wrote during the run are still there, the seeded rows intact.
        assert written["version"] == "1.0.0", written
        assert written_rows(project) == "1"
        assert has_category_column(project)
        assert data_state(project) == (before[0], before[1], "001,002")
        rollback = record.get("rollback") or {}
        assert not rollback.get("restore_started"), rollback
        assert not rollback.get("restored"), rollback


@pytest.mark.timeout(900)
def test_published_port_falls_back_to_stop_first_and_says_why(
    edge_stack: EdgeStackFactory, testenv: StackTestEnv, docker_proxy_url: str, tmp_path: Path
) -> None:
    manifest = write_manifest(testenv, tmp_path, "1.1.0")
    with edge_stack(publish_app=True) as project:
        with running_sidecar(
            project,
            docker_proxy_url,
            tmp_path,
            SUPERVISOR_RELEASE_MANIFEST_URL=str(manifest),
            SUPERVISOR_REHEARSE="false",
        ) as sc:
            sc.start()
            record = wait_end(sc, start(sc, "1.1.0"))
        assert record["state"] == "completed", record.get("error")
        assert record["update_order"] == "stop-first"
        assert "stop" in [s["stage"] for s in record["stages"]]
        why = [w for w in record["warnings"] if "start-first" in w]
        print(f"\n[start-first] published port: {why}")
        assert why, record["warnings"]
        assert any("app" in w and "8000" in w for w in why), why
        assert edge_get(project, "/version")["version"] == "1.1.0"
        assert next_containers(project) == []
