"""The /admin/update/* and /admin/version endpoints against the real manager (over fake
adapters): every status code, strict bodies, size and content-type limits, the error envelope,
many pollers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from supervisor.exceptions import EngineError, EngineUnreachable
from supervisor.update.stages import Stage
from tests.support.api_world import ADMIN, CURRENT, LATEST, ApiWorld, auth
from tests.support.fakes import digest_of

pytestmark = pytest.mark.unit
START = "/admin/update/start"


def envelope_of(body: dict[str, Any]) -> set[str]:
    assert isinstance(body["error_key"], str)
    assert isinstance(body["message"], str)
    return set(body)


async def test_start_answers_202_with_id_and_state(client: TestClient[Any, Any]) -> None:
    response = await client.post(START, json={"target_version": "1.4.2"}, headers=auth())
    assert response.status == 202
    body = await response.json()
    assert set(body) == {"update_id", "state"}
    assert body["state"] == "preflight"
    assert response.headers["Location"] == f"/admin/update/status?update_id={body['update_id']}"


async def test_start_without_body_means_latest(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    response = await client.post(START, headers=auth())
    assert response.status == 202
    assert world.manager.status().target_version == LATEST  # 1.5.0b1 is a beta


async def test_start_records_the_cli_trigger(client: TestClient[Any, Any], world: ApiWorld) -> None:
    response = await client.post(START, json={}, headers={**auth(), "X-Supervisor-Trigger": "cli"})
    started = await response.json()
    assert world.manager.status(started["update_id"]).trigger == "cli"


async def test_second_start_while_running_is_409(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.hold("pull")
    first = await (await client.post(START, json={}, headers=auth())).json()
    response = await client.post(START, json={}, headers=auth())
    assert response.status == 409
    body = await response.json()
    assert body["error_key"] == "update_running"
    assert body["update_id"] == first["update_id"]


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"target_version": "9.9.9"}, "invalid_version"),
        ({"target_version": CURRENT}, "already_current"),
        ({"target_version": "1.4.0"}, "downgrade_refused"),
    ],
)
async def test_start_refusals_are_400(
    client: TestClient[Any, Any], payload: dict[str, Any], key: str
) -> None:
    response = await client.post(START, json=payload, headers=auth())
    assert response.status == 400
    assert (await response.json())["error_key"] == key


async def test_force_allows_the_current_version(client: TestClient[Any, Any]) -> None:
    body = {"target_version": CURRENT, "force": True}
    assert (await client.post(START, json=body, headers=auth())).status == 202


async def test_frozen_stack_refuses(client: TestClient[Any, Any], world: ApiWorld) -> None:
    world.settings.freeze_file.write_text("quarter close\n")
    response = await client.post(START, json={}, headers=auth())
    assert response.status == 400
    assert (await response.json())["error_key"] == "updates_blocked"
    assert "frozen" in (await response.json())["message"]


# (body as sent, field the message must name)
STRICT_BODIES = [
    ('{"force": "false"}', "force"),
    ('{"force": 0}', "force"),
    ('{"force": null}', "force"),
    ('{"target_version": 1.42}', "target_version"),
    ('{"target_version": ["1.4.2"]}', "target_version"),
    ('{"channel": "nightly"}', "channel"),
    ('{"channel": 1}', "channel"),
    ('{"target_version": "1.4.2", "colour": "red"}', "colour"),
    ('{"update_id": "x"}', "update_id"),
    ("[]", "JSON object"),
    ('"1.4.2"', "JSON object"),
    ("{", "not valid JSON"),
    ('{"force": NaN}', "not valid JSON"),
    ("\xff\xfe", "not valid JSON"),
]


@pytest.mark.parametrize(("raw", "named"), STRICT_BODIES)
async def test_start_body_is_validated_strictly(
    client: TestClient[Any, Any], world: ApiWorld, raw: str, named: str
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    response = await client.post(START, data=raw.encode("latin-1"), headers=headers)
    assert response.status == 400
    body = await response.json()
    assert body["error_key"] == "bad_request"
    assert named in body["message"]
    assert world.manager.history() == []  # nothing reached the manager
    assert world.engine.calls == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_non_json_body_is_415(client: TestClient[Any, Any], content_type: str) -> None:
    headers = {**auth(), "Content-Type": content_type}
    response = await client.post(START, data=b'{"force": true}', headers=headers)
    assert response.status == 415
    assert (await response.json())["error_key"] == "unsupported_media_type"


async def test_oversized_body_is_413(client: TestClient[Any, Any], world: ApiWorld) -> None:
    body = '{"target_version": "' + "1" * 10_000 + '"}'
    headers = {**auth(), "Content-Type": "application/json"}
    response = await client.post(START, data=body, headers=headers)
    assert response.status == 413
    answer = await response.json()
    assert answer["error_key"] == "payload_too_large"
    assert "4096" in answer["message"]
    assert world.engine.calls == []


async def test_status_without_any_run_is_404_no_update(client: TestClient[Any, Any]) -> None:
    response = await client.get("/admin/update/status", headers=auth())
    assert response.status == 404
    assert (await response.json())["error_key"] == "no_update"


@pytest.mark.parametrize("update_id", ["deadbeef", "../../etc/passwd", "x" * 500])
async def test_status_of_unknown_id_is_404(client: TestClient[Any, Any], update_id: str) -> None:
    response = await client.get(
        "/admin/update/status", params={"update_id": update_id}, headers=auth()
    )
    assert response.status == 404
    assert (await response.json())["error_key"] == "update_not_found"


async def test_status_current_and_by_id(client: TestClient[Any, Any], world: ApiWorld) -> None:
    world.hold("pull")
    started = await (await client.post(START, json={}, headers=auth())).json()
    await world.reach(started["update_id"], "pull")
    for params in ({}, {"update_id": started["update_id"]}, {"update_id": ""}):
        response = await client.get("/admin/update/status", params=params, headers=auth())
        assert response.status == 200
        body = await response.json()
        assert body["update_id"] == started["update_id"]
        assert body["state"] == "pull"
        assert 0 < body["progress"] < 100
        assert any("engine fake reachable" in line for line in body["log_tail"])


async def test_cancel_before_stop_ends_cancelled(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.hold("pull")
    started = await (await client.post(START, json={}, headers=auth())).json()
    response = await client.post(
        "/admin/update/cancel", json={"update_id": started["update_id"]}, headers=auth()
    )
    assert response.status == 202
    assert (await response.json())["cancel_requested"] is True
    world.release("pull")
    record = await world.manager.wait(started["update_id"])
    assert record.result is Stage.CANCELLED
    assert not [call for call in world.engine.calls if call[0] == "stopped"]


async def test_cancel_from_stop_on_is_409(client: TestClient[Any, Any], world: ApiWorld) -> None:
    world.hold("stop")
    started = await (await client.post(START, json={}, headers=auth())).json()
    await world.reach(started["update_id"], "stop")
    response = await client.post(
        "/admin/update/cancel", json={"update_id": started["update_id"]}, headers=auth()
    )
    assert response.status == 409
    body = await response.json()
    assert body["error_key"] == "not_cancellable"
    assert body["update_id"] == started["update_id"]
    world.release("stop")
    assert (await world.manager.wait(started["update_id"])).result is Stage.COMPLETED


async def test_cancel_of_a_finished_run_is_409(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    started = await (await client.post(START, json={}, headers=auth())).json()
    await world.manager.wait(started["update_id"])
    response = await client.post(
        "/admin/update/cancel", json={"update_id": started["update_id"]}, headers=auth()
    )
    assert response.status == 409


@pytest.mark.parametrize(
    ("body", "status"),
    [({"update_id": "nope1234"}, 404), ({}, 400), ({"update_id": 5}, 400), ({"x": 1}, 400)],
)
async def test_cancel_bad_requests(
    client: TestClient[Any, Any], body: dict[str, Any], status: int
) -> None:
    response = await client.post("/admin/update/cancel", json=body, headers=auth())
    assert response.status == status


async def test_version_has_current_latest_and_last_result(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    await client.post("/admin/update/check", headers=auth())
    response = await client.get("/admin/version", headers=auth())
    assert response.status == 200
    body = await response.json()
    assert body["current"]["app"]["tag"] == CURRENT
    assert body["current"]["app"]["digest"].startswith("sha256:")
    assert body["latest"]["version"] == LATEST
    assert body["last_result"] is None  # no run yet

    started = await (await client.post(START, json={}, headers=auth())).json()
    await world.manager.wait(started["update_id"])
    body = await (await client.get("/admin/version", headers=auth())).json()
    assert body["current"]["app"]["tag"] == LATEST
    assert body["last_result"]["update_id"] == started["update_id"]
    assert body["last_result"]["state"] == "completed"


async def test_engine_errors_keep_their_status(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.engine.fail["discover"] = EngineUnreachable("cannot reach tcp://docker-proxy:2375")
    response = await client.post(START, json={}, headers=auth())
    assert response.status == 503
    assert (await response.json())["error_key"] == "engine_unreachable"
    world.engine.fail["discover"] = EngineError("the proxy answered 500")
    response = await client.get("/admin/update/plan", headers=auth())
    assert response.status == 502
    assert (await response.json())["error_key"] == "engine_error"


async def test_unexpected_errors_are_500_without_details(
    client: TestClient[Any, Any], world: ApiWorld, caplog: pytest.LogCaptureFixture
) -> None:
    failure = RuntimeError(f"connection to postgres://app:{ADMIN}@db failed")
    world.registry.fail["list_tags"] = failure
    with caplog.at_level(logging.ERROR):
        response = await client.post("/admin/update/check", headers=auth())
    assert response.status == 500
    text = await response.text()
    assert ADMIN not in text
    assert "postgres" not in text
    assert "Traceback" not in text
    assert (await response.json())["error_key"] == "internal_error"
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


async def test_check_plan_history(client: TestClient[Any, Any], world: ApiWorld) -> None:
    response = await client.post("/admin/update/check", headers=auth())
    assert response.status == 200
    assert (await response.json())["version"] == LATEST
    world.registry.tags["1.4.3"] = digest_of("1.4.3")  # a new release appears
    response = await client.post("/admin/update/check", headers=auth())
    assert (await response.json())["version"] == "1.4.3"  # asked again, not cached
    del world.registry.tags["1.4.3"]
    assert (await client.post("/admin/update/check", json={"a": 1}, headers=auth())).status == 400

    response = await client.get("/admin/update/plan", headers=auth())
    plan = await response.json()
    assert plan["target_version"] == LATEST
    assert plan["current_version"] == CURRENT
    assert plan["would_run"] is True
    params = {"target_version": "1.4.0", "force": "true"}
    response = await client.get("/admin/update/plan", params=params, headers=auth())
    assert response.status == 200
    response = await client.get(
        "/admin/update/plan", params={"target_version": "1.4.0"}, headers=auth()
    )
    plan = await response.json()  # a dry run reports every blocker instead of refusing
    assert response.status == 200
    assert [b["error_key"] for b in plan["blockers"]] == ["downgrade_refused"]
    assert plan["would_run"] is False
    response = await client.get("/admin/update/plan", params={"force": "yes"}, headers=auth())
    assert response.status == 400

    started = await (await client.post(START, json={}, headers=auth())).json()
    await world.manager.wait(started["update_id"])
    response = await client.get("/admin/update/history", params={"limit": "1"}, headers=auth())
    runs = (await response.json())["runs"]
    assert [r["update_id"] for r in runs] == [started["update_id"]]
    assert runs[0]["result"] == "completed"
    for bad in ("", "0", "-1", "abc", "1001", "1e3"):  # empty is not a number
        response = await client.get("/admin/update/history", params={"limit": bad}, headers=auth())
        assert response.status == 400, bad


async def test_unknown_route_and_method_use_the_envelope(client: TestClient[Any, Any]) -> None:
    response = await client.get("/admin/nothing", headers=auth())
    assert response.status == 404
    assert envelope_of(await response.json()) == {"error_key", "message"}
    response = await client.get(START, headers=auth())
    assert response.status == 405
    assert (await response.json())["error_key"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST"


async def test_a_hundred_pollers_during_a_run(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.hold("pull")
    started = await (await client.post(START, json={}, headers=auth())).json()

    async def poll() -> int:
        response = await client.get(
            "/admin/update/status", params={"update_id": started["update_id"]}, headers=auth()
        )
        await response.read()
        return response.status

    pollers = asyncio.gather(*(poll() for _ in range(100)))
    world.release("pull")
    statuses = await pollers
    assert statuses == [200] * 100
    assert (await world.manager.wait(started["update_id"])).result is Stage.COMPLETED
