"""/healthz, /metrics (prometheus text, own registry) and the badge in JSON and SVG, all
computed by the real manager and views from runs on fake adapters."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from supervisor.api import ApiOptions, create_app
from supervisor.exceptions import BackupFailed, EngineError
from supervisor.update.stages import Stage
from tests.support.api_world import LATEST, ApiWorld, auth

pytestmark = pytest.mark.unit


async def test_healthz_needs_no_token(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def run_once(world: ApiWorld, target: str = LATEST) -> Stage | None:
    record = await world.start(target, force=True)
    return (await world.manager.wait(record.update_id)).result


async def test_metrics(client: TestClient[Any, Any], world: ApiWorld) -> None:
    world.engine.unhealthy_versions.add(LATEST)
    assert await run_once(world) is Stage.ROLLED_BACK
    world.engine.unhealthy_versions.clear()
    assert await run_once(world) is Stage.COMPLETED
    taken = world.snapshots.add()
    response = await client.get("/metrics", headers=auth())
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    runs = {s.labels["result"]: s.value for s in families["supervisor_update_runs"].samples
            if s.name.endswith("_total")}  # fmt: skip
    assert runs["completed"] == 1
    assert runs["rolled_back"] == 1
    assert runs["failed"] == 0
    stages = families["supervisor_update_stage_duration_seconds"]
    counts = {s.labels["stage"]: s.value for s in stages.samples if s.name.endswith("_count")}
    assert counts["pull"] == 2
    assert counts["healthcheck"] == 2
    assert families["supervisor_last_success_timestamp_seconds"].samples[0].value > 0
    sizes = {
        s.labels["snapshot_id"]: s.value for s in families["supervisor_snapshot_size_bytes"].samples
    }
    assert sizes[taken.id] == sum(f.size for f in taken.files)
    # and the pre-update snapshot of each run, the pre-rollback dumps of the rolled back one
    # (InfluxDB before its restore; the database the rollback copy replaced, afterwards)
    assert sizes == {m.id: m.total_bytes for m in await world.snapshots.list()}
    assert sorted(reason for reason, _ in world.snapshots.created) == [
        "pre-rollback", "pre-rollback", "pre-update", "pre-update"]  # fmt: skip
    assert families["supervisor_update_running"].samples[0].value == 0


async def test_metrics_use_the_given_registry_not_the_global_one(
    aiohttp_client: Any, world: ApiWorld
) -> None:
    metrics = CollectorRegistry()
    Counter("manager_pulls", "pulls done by the manager", registry=metrics).inc()
    app = create_app(
        world.settings, world.manager, world.runtime.snapshots, metrics_registry=metrics,
        options=ApiOptions(),
    )  # fmt: skip
    client = await aiohttp_client(app)
    text = await (await client.get("/metrics", headers=auth())).text()
    assert "manager_pulls_total 1.0" in text
    assert "supervisor_update_runs_total" in text
    assert "python_gc_objects_collected" not in text  # the default registry's collectors


def svg_colour(svg: str) -> str:
    root = ElementTree.fromstring(svg)  # noqa: S314  (our own output, not untrusted)
    rects = root.findall("{http://www.w3.org/2000/svg}rect")
    return rects[1].attrib["fill"]


def completes(world: ApiWorld) -> None:
    return None


def rolls_back(world: ApiWorld) -> None:
    world.engine.unhealthy_versions.add(LATEST)


def fails_in_pull(world: ApiWorld) -> None:
    world.engine.fail["pull"] = EngineError("pull refused by the proxy")


def cannot_roll_back(world: ApiWorld) -> None:
    world.engine.unhealthy_versions.add(LATEST)
    world.snapshots.fail["restore"] = BackupFailed("restore exploded")


@pytest.mark.parametrize(
    ("arrange", "state", "colour", "name"),
    [
        (completes, "completed", "#4c1", "green"),
        (rolls_back, "rolled_back", "#fe7d37", "orange"),
        (fails_in_pull, "failed", "#e05d44", "red"),
        (cannot_roll_back, "needs_intervention", "#e05d44", "red"),
    ],
)
async def test_badge_after_a_run(
    client: TestClient[Any, Any], world: ApiWorld, arrange: Any, state: str, colour: str,
    name: str,
) -> None:  # fmt: skip
    arrange(world)
    assert await run_once(world) == state
    badge = await (await client.get("/admin/badge.json", headers=auth())).json()
    assert badge["state"] == state
    assert badge["color"] == name
    assert badge["version"] == LATEST
    assert badge["time"]
    response = await client.get("/admin/badge.svg", headers=auth())
    assert response.content_type == "image/svg+xml"
    assert svg_colour(await response.text()) == colour
    version = await (await client.get("/admin/version", headers=auth())).json()
    assert version["last_result"]["state"] == state
    assert badge["last_result"] == version["last_result"]  # the badge and the page agree


async def test_badge_running_and_never(client: TestClient[Any, Any], world: ApiWorld) -> None:
    badge = await (await client.get("/admin/badge.json", headers=auth())).json()
    assert badge["state"] == "none"
    assert badge["color"] == "grey"
    assert badge["message"] == "never run"
    world.hold("pull")
    started = await (await client.post("/admin/update/start", json={}, headers=auth())).json()
    await world.reach(started["update_id"], "pull")  # held there: the two reads see the same
    badge = await (await client.get("/admin/badge.json", headers=auth())).json()
    assert badge["state"] == "running"
    assert badge["color"] == "blue"
    svg = await (await client.get("/admin/badge.svg", headers=auth())).text()
    assert svg_colour(svg) == "#007ec6"
    version = await (await client.get("/admin/version", headers=auth())).json()
    assert version["running"]["update_id"] == started["update_id"]
    assert version["last_result"] is None
    assert badge["running"] == version["running"]
