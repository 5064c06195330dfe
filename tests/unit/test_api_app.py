"""The application shell: lifetimes through cleanup_ctx, strict query strings, odd methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from supervisor.api import ApiOptions, create_app
from tests.support.fake_update_service import (
    FakeSnapshotService,
    FakeUpdateService,
    auth,
    make_app,
    make_settings,
)

pytestmark = pytest.mark.unit


async def test_lifespans_are_entered_in_order_and_left_in_reverse(aiohttp_client: Any) -> None:
    journal: list[str] = []

    def lifespan(name: str) -> Any:
        @asynccontextmanager
        async def context() -> AsyncIterator[None]:
            journal.append(f"enter {name}")
            yield
            journal.append(f"leave {name}")

        return context

    app = create_app(
        make_settings(), FakeUpdateService(), FakeSnapshotService(), options=ApiOptions(),
        lifespans=[lifespan("engine"), lifespan("manager")],
    )  # fmt: skip
    client = await aiohttp_client(app)
    assert journal == ["enter engine", "enter manager"]
    assert (await client.get("/healthz")).status == 200
    await client.close()
    assert journal[2:] == ["leave manager", "leave engine"]


@pytest.mark.parametrize(
    "path",
    ["/admin/update/status?updateid=a1b2c3d4", "/admin/version?x=1", "/healthz?full=1",
     "/admin/update/history?limit=5&offset=10"],
)  # fmt: skip
async def test_unknown_query_parameters_are_400(aiohttp_client: Any, path: str) -> None:
    client = await aiohttp_client(make_app())
    response = await client.get(path, headers=auth())
    assert response.status == 400
    assert "unknown query parameter" in (await response.json())["message"]


async def test_unknown_query_needs_the_token_first(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    assert (await client.get("/admin/version?x=1")).status == 401


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_405(aiohttp_client: Any, method: str) -> None:
    client = await aiohttp_client(make_app())
    response = await client.request(method, "/admin/update/status", headers=auth())
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
