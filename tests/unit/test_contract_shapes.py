"""What a backend reads, checked against the real sidecar: one shape each, before, during and
after a run, and after a restart of the serving process.

Every test runs the production object graph (:func:`supervisor.services.build_runtime`: the
real ``UpdateManager``, views, badge, history, event logs and API) over fakes of the adapters
only. Shapes are checked two ways: against the documented fields, and against the OpenAPI
document the app serves (``/openapi.json``), by validating real response bodies and SSE
payloads with its component schemas.

A "restart" builds a new runtime over the same adapters (the same fake engine: the stack
outlives the sidecar) and the same state directory, as a restarted container would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
from aiohttp.test_utils import TestClient

from supervisor.api.openapi import document
from supervisor.client import SSEParser
from supervisor.exceptions import RegistryUnreachable
from tests.support.api_world import (
    CURRENT,
    LATEST,
    Adapters,
    ApiWorld,
    auth,
    load_world_settings,
)
from tests.support.fakes import PULL_BYTES, digest_of, image_of

pytestmark = pytest.mark.unit
STREAM = "/admin/update/stream"
END_STATES = {"completed", "failed", "cancelled", "rolled_back", "needs_intervention"}
LAST_RESULT_KEYS = {
    "update_id", "state", "from_version", "target_version", "finished_at", "error_key",
}  # fmt: skip
RUNNING_KEYS = {"update_id", "state", "progress", "target_version", "started_at"}


# --- the serving process ----------------------------------------------------------------


@asynccontextmanager
async def serving(
    aiohttp_client: Any, tmp_path: Path, adapters: Adapters, **settings: str
) -> AsyncIterator[tuple[ApiWorld, TestClient[Any, Any]]]:
    """One sidecar process: the real runtime over ``adapters``, its app, a client of it.

    The periodic release check is kept out of the way (an hour) unless a test sets it.
    """
    config = load_world_settings(tmp_path, **{"first_check_delay": "3600", **settings})
    async with adapters.open_runtime(config) as runtime:
        world = ApiWorld(config, adapters, runtime)
        client: TestClient[Any, Any] = await aiohttp_client(world.app())
        try:
            yield world, client
        finally:
            await client.close()  # the app's lifespan: the manager shuts down here


async def get(client: TestClient[Any, Any], path: str, **params: str) -> Any:
    response = await client.get(path, params=params, headers=auth())
    assert response.status == 200, await response.text()
    return await response.json()


async def version_and_badge(client: TestClient[Any, Any]) -> tuple[dict[str, Any], Any]:
    info = await get(client, "/admin/version")
    badge = await get(client, "/admin/badge.json")
    valid("VersionInfo", info)
    valid("Badge", badge)
    # badge.json carries both objects exactly as /admin/version does
    assert (badge["last_result"], badge["running"]) == (info["last_result"], info["running"])
    return info, badge


async def stream(
    client: TestClient[Any, Any], update_id: str, last_event_id: int | None = None
) -> list[dict[str, Any]]:
    """The whole stream, parsed with the client's SSE parser; it must end by itself."""
    headers = auth()
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    response = await client.get(
        STREAM, params={"update_id": update_id}, headers=headers, timeout=aiohttp.ClientTimeout(5)
    )
    assert response.status == 200
    parser, events = SSEParser(), []
    async for raw in response.content:
        message = parser.feed_line(raw.decode())
        if message is not None:
            events.append(
                {"id": int(message.id or 0), "event": message.event,
                 "data": json.loads(message.data)}
            )  # fmt: skip
    return events


# --- the OpenAPI document as the judge ----------------------------------------------------


def validator(component: str) -> jsonschema_rs.Draft202012Validator:
    """A validator for ``#/components/schemas/<component>`` of the served document."""
    return jsonschema_rs.Draft202012Validator(
        {**document(), "$ref": f"#/components/schemas/{component}"}
    )


def valid(component: str, body: Any) -> None:
    errors = [str(e) for e in validator(component).iter_errors(body)]
    assert not errors, f"{component}: {errors[:3]}"


def test_the_schema_validator_rejects_a_wrong_shape() -> None:
    """The checks below can fail: the old shape of last_result does not pass."""
    old_last_result = {"update_id": "a1", "state": "completed", "version": "1.4.2",
                       "time": "2026-01-01T00:00:00Z"}  # fmt: skip
    assert not validator("LastResult").is_valid(old_last_result)
    assert not validator("SSEData").is_valid({"event": "result", "state": "pull"})
    assert not validator("SSEData").is_valid({"event": "progress", "state": "pull"})


# --- last_result and running: one shape, the badge agrees ------------------------------


async def test_before_any_run_both_are_null(aiohttp_client: Any, tmp_path: Path) -> None:
    async with serving(aiohttp_client, tmp_path, Adapters.fresh()) as (_world, client):
        info, badge = await version_and_badge(client)
    assert (info["last_result"], info["running"]) == (None, None)
    assert (badge["state"], badge["color"], badge["message"]) == ("none", "grey", "never run")
    assert info["version"] == CURRENT


async def test_during_after_and_across_a_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    adapters = Adapters.fresh()
    async with serving(aiohttp_client, tmp_path, adapters) as (world, client):
        first = await world.start(LATEST)
        await world.manager.wait(first.update_id)
        world.hold("pull")
        second = await world.start("1.5.0b1")
        await world.reach(second.update_id, "pull")

        info, badge = await version_and_badge(client)
        running = info["running"]
        assert set(running) == RUNNING_KEYS
        assert (running["update_id"], running["state"], running["target_version"]) == (
            second.update_id, "pull", "1.5.0b1",
        )  # fmt: skip
        assert 0 <= running["progress"] <= 100
        # last_result is the last *finished* run, also while another one runs
        last = info["last_result"]
        assert set(last) == LAST_RESULT_KEYS
        assert last == {
            "update_id": first.update_id, "state": "completed", "from_version": CURRENT,
            "target_version": LATEST, "finished_at": last["finished_at"], "error_key": None,
        }  # fmt: skip
        assert (badge["state"], badge["color"], badge["version"]) == ("running", "blue", "1.5.0b1")
        assert badge["update_id"] == second.update_id

        adapters.engine.unhealthy_versions.add("1.5.0b1")
        world.release("pull")
        ended = await world.manager.wait(second.update_id)
        assert ended.result == "rolled_back"
        after, badge = await version_and_badge(client)
        assert after["running"] is None
        assert after["last_result"]["update_id"] == second.update_id
        assert after["last_result"]["state"] == "rolled_back"
        assert after["last_result"]["error_key"] == ended.error.error_key  # type: ignore[union-attr]
        assert after["last_result"]["from_version"] == LATEST
        assert (badge["state"], badge["color"], badge["message"]) == (
            "rolled_back", "orange", "1.5.0b1 rolled back",
        )  # fmt: skip
        assert badge["time"] == after["last_result"]["finished_at"]

    # the serving process restarts: the same answers, from history
    async with serving(aiohttp_client, tmp_path, adapters) as (_world, client):
        restarted, badge_again = await version_and_badge(client)
    assert restarted["last_result"] == after["last_result"]
    assert restarted["running"] is None
    assert badge_again == badge


async def test_badge_svg_draws_the_same_state(aiohttp_client: Any, tmp_path: Path) -> None:
    async with serving(aiohttp_client, tmp_path, Adapters.fresh()) as (world, client):
        run = await world.start(LATEST)
        await world.manager.wait(run.update_id)
        response = await client.get("/admin/badge.svg", headers=auth())
        svg = await response.text()
    assert response.content_type == "image/svg+xml"
    assert f"update: {LATEST} up to date" in svg
    assert "#4c1" in svg


# --- freshness ------------------------------------------------------------------------------


async def test_latest_is_known_shortly_after_start(aiohttp_client: Any, tmp_path: Path) -> None:
    """The start-up check runs after SUPERVISOR_FIRST_CHECK_DELAY, without any request."""
    async with serving(aiohttp_client, tmp_path, Adapters.fresh(), first_check_delay="0") as (
        _world,
        client,
    ):
        for _ in range(200):
            info = await get(client, "/admin/version")
            if info["latest"] is not None:
                break
            await asyncio.sleep(0.01)
    assert info["latest"]["version"] == LATEST
    assert info["check"] == {"checked_at": info["latest"]["checked_at"], "error": None}


async def test_per_service_freshness_and_recomputed_after_a_run(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    async with serving(aiohttp_client, tmp_path, Adapters.fresh()) as (world, client):
        before = await get(client, "/admin/version")
        assert before["latest"] is None
        assert before["update_available"] is False
        assert before["services"]["app"]["last_checked"] is None

        checked = await (await client.post("/admin/update/check", headers=auth())).json()
        valid("CheckAnswer", checked)
        assert (checked["version"], checked["update_available"]) == (LATEST, True)

        info, _ = await version_and_badge(client)
        assert info["update_available"] is True
        assert set(info["services"]) == {"app", "python_backend", "migrations"}
        app = info["services"]["app"]
        assert app == {
            "current": {"tag": CURRENT, "digest": digest_of(CURRENT)},
            "latest": {"tag": LATEST, "digest": digest_of(LATEST)},
            "update_available": True,
            "last_checked": checked["checked_at"],
            "state": "running",
        }
        assert info["current"]["app"]["tag"] == CURRENT
        assert info["current"]["app"]["digest"] == digest_of(CURRENT)

        run = await world.start(LATEST)
        await world.manager.wait(run.update_id)
        # no new check: update_available follows the stack as it runs now
        after = await get(client, "/admin/version")
        assert after["update_available"] is False
        assert after["services"]["app"]["current"] == {"tag": LATEST, "digest": digest_of(LATEST)}
        assert after["services"]["app"]["update_available"] is False
        assert after["services"]["app"]["last_checked"] == checked["checked_at"]


async def test_a_failed_check_is_reported_not_a_failure_of_version(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters = Adapters.fresh()
    async with serving(aiohttp_client, tmp_path, adapters) as (_world, client):
        assert (await client.post("/admin/update/check", headers=auth())).status == 200

        async def unreachable(*_args: Any) -> list[str]:
            raise RegistryUnreachable("registry reg.test: connection refused")

        monkeypatch.setattr(adapters.registry, "list_tags", unreachable)
        failed = await client.post("/admin/update/check", headers=auth())
        assert failed.status == 503
        refusal = await failed.json()
        info, _ = await version_and_badge(client)
    assert info["check"]["error"]["error_key"] == refusal["error_key"] == "registry_unreachable"
    assert info["check"]["error"]["message"]
    assert info["latest"]["version"] == LATEST  # the last good answer stays


# --- a missing or restarting service ------------------------------------------------------


async def test_version_answers_while_a_service_is_missing(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    adapters = Adapters.fresh()
    async with serving(aiohttp_client, tmp_path, adapters) as (_world, client):
        for container in adapters.engine.by_service("python_backend"):
            del adapters.engine.containers[container.id]  # being recreated
        info, _ = await version_and_badge(client)
        start = await client.post("/admin/update/start", json={}, headers=auth())
        refusal = await start.json()
    assert info["current"]["python_backend"]["state"] == "missing"
    assert info["current"]["python_backend"]["tag"] is None
    assert info["services"]["python_backend"]["state"] == "missing"
    assert info["current"]["app"]["state"] == "running"
    assert info["current"]["app"]["tag"] == CURRENT
    # a run still needs every service
    assert 400 <= start.status < 500
    assert refusal["error_key"] == "service_not_found"


# --- SSE payloads, ids across a restart ----------------------------------------------------


async def test_sse_payloads_match_the_documented_shapes(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    async with serving(aiohttp_client, tmp_path, Adapters.fresh()) as (world, client):
        run = await world.start(LATEST)
        await world.manager.wait(run.update_id)
        events = await stream(client, run.update_id)
    data_schema = validator("SSEData")
    for event in events:
        assert event["data"]["event"] == event["event"]
        errors = [str(e) for e in data_schema.iter_errors(event["data"])]
        assert not errors, (event, errors[:2])
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    phases = [e["data"] for e in events if e["event"] == "phase"]
    assert phases[0] == {"event": "phase", "state": "preflight", "message": phases[0]["message"]}
    pulled = [e["data"] for e in events if e["event"] == "progress" and "bytes_total" in e["data"]]
    assert pulled, "no byte counts during pull"
    assert {p["state"] for p in pulled} == {"pull"}
    assert all(p["bytes_total"] == PULL_BYTES for p in pulled)
    assert pulled[-1]["bytes_done"] == PULL_BYTES
    assert all(p["image"] == image_of(LATEST) for p in pulled)
    assert [e["event"] for e in events].count("result") == 1
    result = events[-1]
    assert result["event"] == "result"
    assert result["data"] == {
        "event": "result", "state": "completed", "update_id": run.update_id,
        "from_version": CURRENT, "target_version": LATEST, "error": None,
        **{k: v for k, v in result["data"].items() if k == "message"},
    }  # fmt: skip


async def test_event_ids_and_resumption_survive_a_restart(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    adapters = Adapters.fresh()
    async with serving(aiohttp_client, tmp_path, adapters) as (world, client):
        run = await world.start(LATEST)
        await world.manager.wait(run.update_id)
        before = await stream(client, run.update_id)
        middle = before[len(before) // 2]["id"]
        resumed_before = await stream(client, run.update_id, middle)

    async with serving(aiohttp_client, tmp_path, adapters) as (_world, client):
        after = await stream(client, run.update_id)
        resumed_after = await stream(client, run.update_id, middle)
        past_the_end = await stream(client, run.update_id, before[-1]["id"])
    assert len(before) > 10
    assert after == before  # the same ids, kinds and payloads
    assert resumed_after == resumed_before == [e for e in before if e["id"] > middle]
    # a client that already has the result gets it again, so an EventSource stops
    assert past_the_end == [before[-1]]


async def test_a_run_recovered_at_start_up_continues_the_id_sequence(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    adapters = Adapters.fresh()
    async with serving(aiohttp_client, tmp_path, adapters) as (world, client):
        world.hold("stop")  # the sidecar dies while stopping services
        run = await world.start(LATEST)
        await world.reach(run.update_id, "stop")
        seen = await _events_so_far(client, run.update_id)
    # the app's shutdown cancelled the run: its journal says "stop", as after a kill -9
    world.release()

    async with serving(aiohttp_client, tmp_path, adapters) as (world, client):
        record = world.manager.status(run.update_id)
        assert record.state.finished, record.state
        everything = await stream(client, run.update_id)
        resumed = await stream(client, run.update_id, seen[-1]["id"])
    assert everything[: len(seen)] == seen  # what a client saw before keeps its ids
    ids = [e["id"] for e in everything]
    assert ids == list(range(1, len(ids) + 1))
    assert resumed == everything[len(seen) :]
    assert resumed[-1]["event"] == "result"
    assert resumed[-1]["data"]["state"] == record.result


async def _events_so_far(client: TestClient[Any, Any], update_id: str) -> list[dict[str, Any]]:
    """The events of a live run up to now: read until no event came for half a second
    (keep-alive comments do not count)."""
    response = await client.get(STREAM, params={"update_id": update_id}, headers=auth())
    parser, events = SSEParser(), []
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + 0.5
    while loop.time() < quiet_until:
        try:
            raw = await asyncio.wait_for(response.content.readline(), 0.1)
        except TimeoutError:
            continue
        if not raw:
            break
        message = parser.feed_line(raw.decode())
        if message is not None:
            events.append(
                {"id": int(message.id or 0), "event": message.event,
                 "data": json.loads(message.data)}
            )  # fmt: skip
            quiet_until = loop.time() + 0.5
    response.close()
    assert events
    assert events[-1]["event"] != "result"
    return events


# --- the OpenAPI document against real responses ---------------------------------------


async def test_real_responses_validate_against_the_openapi_document(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    async with serving(aiohttp_client, tmp_path, Adapters.fresh()) as (world, client):
        served = await (await client.get("/openapi.json")).json()
        assert served == json.loads(json.dumps(document()))
        started = await client.post("/admin/update/start", json={}, headers=auth())
        body = await started.json()
        valid("StartResponse", body)
        await world.manager.wait(body["update_id"])
        valid("RunRecord", await get(client, "/admin/update/status"))
        valid("HistoryPage", await get(client, "/admin/update/history"))
        await version_and_badge(client)
        refused = await client.post("/admin/update/start", json={"force": "no"}, headers=auth())
        assert refused.status == 400
        valid("ErrorEnvelope", await refused.json())
        unknown = await client.get("/admin/update/status?update_id=nope", headers=auth())
        assert unknown.status == 404
        valid("ErrorEnvelope", await unknown.json())
