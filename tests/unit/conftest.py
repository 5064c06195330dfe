"""Unit-test fixtures for the API, CLI and client tests: the real sidecar over fake adapters.

``world`` is :func:`tests.support.api_world.api_world` (the real manager, views and API over
fakes of the engine, registry, snapshots, signatures and prober); ``client`` is an aiohttp
test client of its app. Settings a test needs changed go through ``world_settings``
(``@pytest.mark.parametrize("world_settings", [{"restore_over_http": "true"}])``, or a fixture
override).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.api_world import ApiWorld, api_world


@pytest.fixture
def world_settings() -> dict[str, str]:
    return {}


@pytest.fixture
async def world(tmp_path: Path, world_settings: dict[str, str]) -> AsyncIterator[ApiWorld]:
    async with api_world(tmp_path, **world_settings) as opened:
        yield opened


@pytest.fixture
async def client(aiohttp_client: Any, world: ApiWorld) -> TestClient[Any, Any]:
    return await aiohttp_client(world.app())  # type: ignore[no-any-return]
