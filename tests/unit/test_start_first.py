"""Start-first updates over fake adapters: when the mode applies, the flow, and its rollback.

The real manager, run, stage table and rollback; the engine, registry and snapshots are the
Protocol fakes. The real-engine proof (zero failed requests through a proxy) is
tests/docker/test_start_first.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervisor.update.manager import UpdateManager
from supervisor.update.stages import Stage
from tests.support.api_world import CURRENT, LATEST, VERSIONS, ApiWorld, api_world
from tests.support.fakes import FakeRegistry

pytestmark = pytest.mark.unit
BOTH = "app=start-first,python_backend=start-first"


def manifest(tmp_path: Path, compatible: bool, version: str = LATEST) -> str:
    path = tmp_path / "release.json"
    images = dict.fromkeys(("app", "python_backend", "migrations"), f"reg.test/acme/app:{version}")
    body = {"version": version, "services": images, "compatible_migrations": compatible}
    path.write_text(json.dumps(body))
    return str(path)


@pytest.fixture
async def start_first(tmp_path: Path) -> AsyncIterator[ApiWorld]:
    async with api_world(
        tmp_path, update_order=BOTH, release_manifest_url=manifest(tmp_path, True),
        start_first_drain="0.3",
    ) as world:  # fmt: skip
        yield world


def old_ids(world: ApiWorld) -> dict[str, str]:
    return {c.service: c.id for c in world.engine.containers.values() if c.running}


async def test_a_compatible_release_starts_next_to_the_old_version(start_first: ApiWorld) -> None:
    world = start_first
    before = old_ids(world)
    record = await world.start()
    assert record.update_order == "start-first"
    assert record.warnings == []
    done = await world.manager.wait(record.update_id)
    assert done.state is Stage.COMPLETED, done.error
    assert Stage.STOP not in [t.stage for t in done.stages]  # nothing stopped up front
    kinds = ("started_alongside", "shared_aliases", "promoted", "stopped")
    calls = [c for c in world.engine.calls if c[0] in kinds]
    # every new container is started (and health-checked) and answers to the service name
    # before any old one stops
    assert [c[0] for c in calls] == (
        ["started_alongside"] * 2 + ["shared_aliases"] * 2 + ["promoted"] * 2
    )
    draining = [line for line in done.log_tail if "draining" in line]
    assert draining == ["new containers answer to the service names; draining 0.3 s"]
    swap = next(t for t in done.stages if t.stage is Stage.HEALTHCHECK)
    assert swap.finished_at is not None
    assert (swap.finished_at - swap.started_at).total_seconds() >= 0.3  # the drain is waited
    assert not any(c == ("stopped", "app") for c in world.engine.calls)
    names = {c.name for c in world.engine.containers.values()}
    assert not any("-next-" in name for name in names)  # promoted: they carry the names now
    assert all(before[s] not in old_ids(world).values() for s in ("app", "python_backend"))
    assert world.snapshots.restored == []


async def test_its_rollback_keeps_the_old_version_serving_and_the_database(
    start_first: ApiWorld,
) -> None:
    world = start_first
    world.engine.unhealthy_versions.add(LATEST)
    before = old_ids(world)
    record = await world.start()
    done = await world.manager.wait(record.update_id)
    assert done.state is Stage.ROLLED_BACK
    assert world.snapshots.restored == []  # the database is kept ...
    assert any("database was kept" in w and done.snapshot_id in w for w in done.warnings)
    old = {c.id: c for c in world.engine.containers.values()}
    for service in ("app", "python_backend"):  # ... and the old containers never stopped
        assert old[before[service]].running
        assert ".old-" not in old[before[service]].name  # it kept its name throughout
    assert not any(c[0] == "promoted" for c in world.engine.calls)
    assert not any("-next-" in c.name for c in world.engine.containers.values())


@pytest.mark.parametrize(
    ("overrides", "compatible", "why"),
    [
        ({"update_order": "app=start-first"}, True, "python_backend did not"),
        ({"update_order": BOTH}, False, "declare backward-compatible migrations"),
    ],
    ids=["partial-opt-in", "not-compatible"],
)
async def test_stop_first_when_a_condition_is_missing(
    tmp_path: Path, overrides: dict[str, str], compatible: bool, why: str
) -> None:
    async with api_world(
        tmp_path, release_manifest_url=manifest(tmp_path, compatible), **overrides
    ) as world:
        record = await world.start()
        assert record.update_order == "stop-first"
        assert any(why in w for w in record.warnings), record.warnings
        done = await world.manager.wait(record.update_id)
        assert done.state is Stage.COMPLETED
        assert Stage.STOP in [t.stage for t in done.stages]


async def test_published_ports_refuse_start_first(start_first: ApiWorld) -> None:
    world = start_first
    for container in world.engine.containers.values():
        if container.service == "app":
            container.published_ports = ("8000/tcp",)
    record = await world.start()
    assert record.update_order == "stop-first"
    assert any("app publishes 8000/tcp" in w for w in record.warnings), record.warnings


async def test_labels_opt_in_like_the_setting(tmp_path: Path) -> None:
    async with api_world(tmp_path, release_manifest_url=manifest(tmp_path, True)) as world:
        for container in world.engine.containers.values():
            if container.service in ("app", "python_backend"):
                container.labels["supervisor.update_order"] = "start-first"
        record = await world.start()
        assert record.update_order == "start-first"
        await world.manager.wait(record.update_id)


@pytest.mark.parametrize(
    ("hang", "stage"),
    [("start_alongside", Stage.RECREATE), ("wait_healthy", Stage.HEALTHCHECK),
     ("promote", Stage.HEALTHCHECK)],
)  # fmt: skip
async def test_a_crash_inside_a_start_first_run_recovers_without_a_restore(
    start_first: ApiWorld, hang: str, stage: Stage
) -> None:
    """The process dies inside the start-first steps; the restarted sidecar puts the old
    containers back (or leaves them serving) and never restores the database."""
    world = start_first
    world.engine.hang.add(hang)
    record = await world.start()
    for _ in range(400):
        current = world.runtime.state.read_current()
        if current is not None and current.state is stage:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # inside the hanging engine call
    await world.manager.shutdown()  # killed: the journal stays as it was
    world.engine.hang.clear()
    restarted = UpdateManager(world.manager.deps, FakeRegistry(VERSIONS))
    recovered = await restarted.startup()
    assert recovered is not None
    assert recovered.update_id == record.update_id
    assert recovered.result is Stage.ROLLED_BACK, recovered.error
    assert world.snapshots.restored == []
    for service in ("app", "python_backend"):
        assert world.engine.version_running(service) == CURRENT
    assert not [c for c in world.engine.containers.values() if "-next-" in c.name]
    assert not [c for c in world.engine.containers.values() if ".old-" in c.name]
