"""The application shell: lifetimes through cleanup_ctx, strict query strings, odd methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from supervisor.api import ApiOptions, create_app
from tests.support.api_world import ApiWorld, auth

pytestmark = pytest.mark.unit


async def test_lifespans_are_entered_in_order_and_left_in_reverse(
    aiohttp_client: Any, world: ApiWorld
) -> None:
    journal: list[str] = []

    def lifespan(name: str) -> Any:
        @asynccontextmanager
        async def context() -> AsyncIterator[None]:
            journal.append(f"enter {name}")
            yield
            journal.append(f"leave {name}")

        return context

    app = create_app(
        world.settings, world.manager, world.runtime.snapshots, options=ApiOptions(),
        lifespans=[lifespan("recovery"), lifespan("check")],
    )  # fmt: skip
    client = await aiohttp_client(app)
    assert journal == ["enter recovery", "enter check"]
    assert (await client.get("/healthz")).status == 200
    await client.close()
    assert journal[2:] == ["leave check", "leave recovery"]


async def test_serving_lifetime_recovers_before_the_first_request(
    aiohttp_client: Any, world: ApiWorld
) -> None:
    """A run journaled by a process that died is settled before the app answers."""
    world.hold("pull")
    record = await world.start("1.4.2")
    await world.reach(record.update_id, "pull")
    await world.manager.shutdown()  # the process "dies": the journal keeps the run
    client = await aiohttp_client(world.app())
    response = await client.get(
        "/admin/update/status", params={"update_id": record.update_id}, headers=auth()
    )
    body = await response.json()
    assert response.status == 200
    assert body["state"] == "failed"  # before stop: nothing was changed
    assert world.engine.version_running("app") == "1.4.1"


@pytest.mark.parametrize(
    "path",
    ["/admin/update/status?updateid=a1b2c3d4", "/admin/version?x=1", "/healthz?full=1",
     "/admin/update/history?limit=5&offset=10"],
)  # fmt: skip
async def test_unknown_query_parameters_are_400(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path, headers=auth())
    assert response.status == 400
    assert "unknown query parameter" in (await response.json())["message"]


async def test_unknown_query_needs_the_token_first(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/admin/version?x=1")).status == 401


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_405(client: TestClient[Any, Any], method: str) -> None:
    response = await client.request(method, "/admin/update/status", headers=auth())
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
