"""The auth matrix: every route by (no token, wrong token, read token, admin token).

Public routes answer anyone; read routes want either token; admin routes want the admin token
(the read token gets 403, so a dashboard learns it has the wrong kind of token). Tokens never
show up in a log line or a body.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from supervisor.api import ROUTES, Route, Scope
from tests.support.api_world import ADMIN, READ, ApiWorld

pytestmark = pytest.mark.unit
WRONG = "wrong-token-0123456789abcdef"
TOKENS = {"none": None, "wrong": WRONG, "read": READ, "admin": ADMIN}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "20250120T123400Z_0123abcd", path)  # a snapshot id


def expected(scope: Scope, who: str) -> int | None:
    """401/403 when refused, None when let through (then the handler decides)."""
    if scope is Scope.PUBLIC:
        return None
    if who in ("none", "wrong"):
        return 401
    if scope is Scope.ADMIN and who == "read":
        return 403
    return None


@pytest.mark.parametrize("world_settings", [{"restore_over_http": "true"}])
@pytest.mark.parametrize("who", list(TOKENS))
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_auth_matrix(client: TestClient[Any, Any], route: Route, who: str) -> None:
    token = TOKENS[who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.request(route.method, concrete(route.path), headers=headers)
    await response.read()
    refused = expected(route.scope, who)
    if refused is None:
        assert response.status not in (401, 403), await response.text()
        return
    assert response.status == refused
    body = await response.json()
    assert body["error_key"] == ("unauthorized" if refused == 401 else "forbidden")
    if refused == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        f"Basic {ADMIN}",
        f"Bearer{ADMIN}",
        "Bearer",
        "Bearer ",
        f"Bearer {ADMIN}x",
        f"Bearer {ADMIN[:-1]}",
        "Bearer tökén-ünïcode-0123456789",
        f"Token {READ}",
    ],
)
async def test_malformed_or_near_miss_headers_are_401(
    client: TestClient[Any, Any], header: str
) -> None:
    response = await client.get(
        "/admin/version", headers={"Authorization": header.encode().decode("latin-1")}
    )
    assert response.status == 401


async def test_scheme_is_case_insensitive(client: TestClient[Any, Any]) -> None:
    response = await client.get("/admin/version", headers={"Authorization": f"bearer  {READ} "})
    assert response.status == 200


@pytest.mark.parametrize("world_settings", [{"read_token_file": ""}])
async def test_without_a_read_token_only_admin_works(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    assert world.settings.read_token is None
    for token, status in ((READ, 401), (ADMIN, 200)):
        response = await client.get("/admin/version", headers={"Authorization": f"Bearer {token}"})
        assert response.status == status


async def test_tokens_never_reach_logs_or_bodies(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    bodies = []
    with caplog.at_level(logging.DEBUG):
        for token in (ADMIN, READ, WRONG):
            for route in ROUTES:
                if route.path == "/admin/update/stream":
                    continue
                response = await client.request(
                    route.method,
                    concrete(route.path),
                    headers={"Authorization": f"Bearer {token}"},
                )
                bodies.append(await response.text())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged  # the access log and refusals were captured
    for token in (ADMIN, READ, WRONG):
        assert token not in logged
        assert not any(token in body for body in bodies)
