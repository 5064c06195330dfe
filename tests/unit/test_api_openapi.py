"""/openapi.json is true: every route is documented and every documented operation routed,
and a schemathesis run against the live app finds no 5xx and no answer outside the schema.

schemathesis 4 speaks HTTP through ``requests`` (synchronous) and has no aiohttp loader, so the
app runs on a real port in a thread with its own event loop, and the fuzz tests are plain sync
tests; nothing of pytest-asyncio's loop is involved.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from supervisor.api import ROUTES
from supervisor.api.openapi import document
from tests.support.api_world import ADMIN, ApiWorld, api_world

pytestmark = pytest.mark.unit
# The admin token through schemathesis's own auth, so it knows when a case drops or breaks it.
schema = schemathesis.openapi.from_dict(
    document(),
    config=schemathesis.Config.from_dict({"auth": {"openapi": {"bearer": {"bearer": ADMIN}}}}),
)


async def test_every_route_is_documented_and_every_operation_routed(world: ApiWorld) -> None:
    app = world.app()
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    documented = {
        (method, path) for path, operations in document()["paths"].items() for method in operations
    }
    assert routed == documented
    assert {(r.method.lower(), r.path) for r in ROUTES} == documented


def test_every_operation_documents_its_refusals() -> None:
    public = {"/healthz", "/openapi.json"}
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "500" in codes, (method, path)
            if path not in public:
                assert "401" in codes, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= codes, (method, path)
            if re.search(r"\{", path):
                assert "404" in codes or "400" in codes, (method, path)


async def test_the_document_is_served(client: TestClient[Any, Any]) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    body = await response.json()
    assert body["openapi"].startswith("3.1")
    assert body == document()


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real manager and API over fake adapters on 127.0.0.1:<free port>, served from a
    thread's own loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}
    opened = AsyncExitStack()

    async def start() -> None:
        # The default body limit: a schema-valid length of escaped unicode (a 1000-character
        # note) may take more than the 4096 bytes other unit tests use, and a 413 is not a
        # schema answer schemathesis accepts for it.
        world = await opened.enter_async_context(
            api_world(tmp_path_factory.mktemp("fuzz"), max_body_bytes="")
        )
        world.snapshots.add()
        runner = web.AppRunner(world.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"], state["port"] = runner, runner.addresses[0][1]

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, name="api-under-fuzz", daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{state['port']}"
    asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
    asyncio.run_coroutine_threadsafe(opened.aclose(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_against_the_schema(case: schemathesis.Case, live_url: str) -> None:
    # positive_data_acceptance is off: the contract answers schema-valid bodies with 400 when
    # the version is unknown, already running or a downgrade (CanopyOS "400 for invalid
    # version"), which no schema can express. Every other check runs.
    case.call_and_validate(
        base_url=live_url,
        timeout=10,
        excluded_checks=[positive_data_acceptance],
    )
