"""Unit-test fixtures: the fake update service behind an aiohttp test client (API tests).

Modules that need another fake (``tests/unit/test_cli.py``) define their own ``fake``."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.fake_update_service import FakeUpdateService, make_app


@pytest.fixture
def fake() -> FakeUpdateService:
    return FakeUpdateService(manual=True)


@pytest.fixture
async def client(aiohttp_client: Any, fake: FakeUpdateService) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app(fake))
