"""The CanopyOS spec's example calls, replayed verbatim against the real manager (over fake
adapters): a backend forwarding them unchanged must get every documented field and status code
(seeds/002, "Backend API")."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.api_world import CURRENT, LATEST, ApiWorld, auth

pytestmark = pytest.mark.unit

# The request bodies exactly as the spec prints them.
START_BODY = """{
  "target_version": "1.4.2",
  "channel": "stable",
  "force": false
}"""
CANCEL_BODY = '{ "update_id": "%s" }'
JSON = {"Content-Type": "application/json"}


async def post(client: TestClient[Any, Any], path: str, body: str) -> Any:
    return await client.post(path, data=body, headers={**auth(), **JSON})


async def test_start_status_stream_cancel_as_in_the_spec(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.hold("pull")  # the run waits in pull until the test lets it go
    # POST /admin/update/start → 202 {"update_id", "state": "preflight"}
    response = await post(client, "/admin/update/start", START_BODY)
    assert response.status == 202
    started = await response.json()
    assert set(started) == {"update_id", "state"}
    assert isinstance(started["update_id"], str)
    assert started["state"] == "preflight"
    update_id = started["update_id"]

    # Errors: 409 if an update is already running
    assert (await post(client, "/admin/update/start", START_BODY)).status == 409

    # GET /admin/update/status?update_id=… → the documented fields
    await world.reach(update_id, "pull")
    response = await client.get(f"/admin/update/status?update_id={update_id}", headers=auth())
    assert response.status == 200
    status = await response.json()
    assert status["update_id"] == update_id
    assert status["state"] == "pull"
    assert isinstance(status["progress"], int)
    assert 0 <= status["progress"] <= 100
    assert isinstance(status["phase"], str)
    assert status["phase"]
    assert isinstance(status["log_tail"], list)
    assert all(isinstance(line, str) for line in status["log_tail"])
    assert status["started_at"].endswith("Z")
    datetime.fromisoformat(status["started_at"])
    for ours in ("finished_at", "from_version", "target_version", "result", "error"):
        assert ours in status
    assert (status["from_version"], status["target_version"]) == (CURRENT, LATEST)

    # GET /admin/update/stream?update_id=… → {"event":"phase","state":"pull","message":…}
    response = await client.get(f"/admin/update/stream?update_id={update_id}", headers=auth())
    assert response.status == 200
    phases = []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            payload = json.loads(line.removeprefix("data: "))
            if payload["event"] == "phase":
                phases.append(payload)
            if payload["event"] == "phase" and payload["state"] == "pull":
                break
    assert phases[-1]["event"] == "phase"
    assert phases[-1]["state"] == "pull"
    assert phases[-1]["message"] == "Pulling images"
    response.close()

    # POST /admin/update/cancel { "update_id": … } → 202, the run ends cancelled
    response = await post(client, "/admin/update/cancel", CANCEL_BODY % update_id)
    assert response.status == 202
    assert (await response.json())["update_id"] == update_id
    world.release("pull")
    assert (await world.manager.wait(update_id)).result == "cancelled"
    assert world.engine.version_running("app") == CURRENT


async def test_invalid_version_is_400(client: TestClient[Any, Any]) -> None:
    body = START_BODY.replace("1.4.2", "not-a-version")
    response = await post(client, "/admin/update/start", body)
    assert response.status == 400
    assert (await response.json())["error_key"] == "invalid_version"


async def test_version_shape(client: TestClient[Any, Any]) -> None:
    assert (await client.post("/admin/update/check", headers=auth())).status == 200
    response = await client.get("/admin/version", headers=auth())
    assert response.status == 200
    body = await response.json()
    for service in ("app", "python_backend"):
        assert body["current"][service]["tag"] == CURRENT
        assert body["current"][service]["digest"].startswith("sha256:")
    assert body["latest"]["version"] == LATEST
    assert body["latest"]["services"]["app"].startswith(f"reg.test/acme/app:{LATEST}")
    assert body["update_available"] is True
    # "surface last update result in /admin/version for UI badge": nothing has run yet
    assert body["last_result"] is None
