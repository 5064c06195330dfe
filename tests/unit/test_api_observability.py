"""/healthz, /metrics (prometheus text, own registry) and the badge in JSON and SVG."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from supervisor.api import ApiOptions, create_app
from supervisor.update.stages import Stage
from tests.support.fake_update_service import (
    FakeSnapshotService,
    FakeUpdateService,
    auth,
    make_app,
    make_manifest,
    make_settings,
)

pytestmark = pytest.mark.unit


async def test_healthz_needs_no_token(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def run_once(fake: FakeUpdateService, target: str | None = None) -> None:
    from supervisor.update.models import StartRequest

    record = await fake.start(StartRequest(target_version=target, force=True))
    fake.release()
    await fake.wait(record.update_id)


async def test_metrics(aiohttp_client: Any) -> None:
    fake = FakeUpdateService()
    await run_once(fake)
    fake.outcome, fake.fail_at = Stage.ROLLED_BACK, Stage.HEALTHCHECK
    await run_once(fake, "1.4.2")
    snapshots = FakeSnapshotService([make_manifest("20250120T120000Z_aa")])
    client = await aiohttp_client(make_app(fake, snapshots))
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
    assert counts["rollback"] == 1
    assert families["supervisor_last_success_timestamp_seconds"].samples[0].value > 0
    sizes = families["supervisor_snapshot_size_bytes"].samples
    assert [(s.labels["snapshot_id"], s.value) for s in sizes] == [("20250120T120000Z_aa", 1234)]
    assert families["supervisor_update_running"].samples[0].value == 0


async def test_metrics_use_the_given_registry_not_the_global_one(aiohttp_client: Any) -> None:
    registry = CollectorRegistry()
    Counter("manager_pulls", "pulls done by the manager", registry=registry).inc()
    app = create_app(
        make_settings(), FakeUpdateService(), FakeSnapshotService(), registry=registry,
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


@pytest.mark.parametrize(
    ("outcome", "fail_at", "state", "colour", "name"),
    [
        (Stage.COMPLETED, None, "completed", "#4c1", "green"),
        (Stage.ROLLED_BACK, Stage.HEALTHCHECK, "rolled_back", "#fe7d37", "orange"),
        (Stage.FAILED, Stage.PULL, "failed", "#e05d44", "red"),
        (Stage.NEEDS_INTERVENTION, Stage.HEALTHCHECK, "needs_intervention", "#e05d44", "red"),
    ],
)
async def test_badge_after_a_run(
    aiohttp_client: Any, outcome: Stage, fail_at: Stage | None, state: str, colour: str, name: str
) -> None:
    fake = FakeUpdateService(outcome=outcome, fail_at=fail_at)
    await run_once(fake, "1.4.2")
    client = await aiohttp_client(make_app(fake))
    badge = await (await client.get("/admin/badge.json", headers=auth())).json()
    assert badge["state"] == state
    assert badge["color"] == name
    assert badge["version"] == "1.4.2"
    assert badge["time"]
    response = await client.get("/admin/badge.svg", headers=auth())
    assert response.content_type == "image/svg+xml"
    assert svg_colour(await response.text()) == colour


async def test_badge_running_and_never(aiohttp_client: Any) -> None:
    fake = FakeUpdateService(manual=True)
    client = await aiohttp_client(make_app(fake))
    badge = await (await client.get("/admin/badge.json", headers=auth())).json()
    assert badge["state"] == "none"
    assert badge["color"] == "grey"
    assert badge["message"] == "never run"
    await client.post("/admin/update/start", json={}, headers=auth())
    badge = await (await client.get("/admin/badge.json", headers=auth())).json()
    assert badge["state"] == "running"
    assert badge["color"] == "blue"
    svg = await (await client.get("/admin/badge.svg", headers=auth())).text()
    assert svg_colour(svg) == "#007ec6"
    version = await (await client.get("/admin/version", headers=auth())).json()
    assert version["last_result"]["state"] == "running"
    fake.release()
