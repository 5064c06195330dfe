"""No input gets a 500: every hostile input of issue 13 §3, against the real manager's API.

The app is the production one around the real :class:`UpdateManager` (``tests/unit/conftest``
``world``, fakes of the adapters only). Each input is sent to every endpoint that reads it;
the answer must be a 4xx with a stable ``error_key``. Upstream failures must be 502/503 with
a short message (no stderr, path or URL) and never the caller's 401. The same inputs are sent
to a real ``supervisor serve`` in ``tests/docker/test_api_hostile_input.py``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from supervisor import exceptions as exc
from supervisor.api.body import MAX_JSON_DEPTH
from supervisor.api.errors import http_status
from supervisor.update.models import MAX_VERSION_LENGTH
from tests.support.api_world import ApiWorld, auth
from tests.support.fakes import image_of

pytestmark = pytest.mark.unit
Client = TestClient[Any, Any]

# Bodies up to 256 KiB so that a few KB of brackets and a 60 KB version reach the parser.
LARGE_BODIES = {"max_body_bytes": "262144", "restore_over_http": "true"}
SNAPSHOT_ID = "20250120T123456Z_ab12cd34"  # the store's real format; unknown here
JSON_POSTS = (
    "/admin/update/start",
    "/admin/update/cancel",
    "/admin/update/check",
    "/admin/snapshots",
    f"/admin/snapshots/{SNAPSHOT_ID}/restore",
)


def deep(depth: int, opener: str = "[") -> str:
    closer = "]" if opener == "[" else "}"
    inner = '{"a":' if opener == "{" else "["
    return inner * depth + "1" + closer * depth


async def post(client: Client, path: str, raw: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        path, data=raw.encode(), headers={**auth(), "Content-Type": "application/json"}
    )
    return response.status, await response.json()


# --- query integers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["9" * 5000, "1" + "0" * 20, "-1", "1.5", "", "0", "1e3", "+5", " 5", "0x10", "٣", "00000"],
)
async def test_history_limit_of_any_shape_is_a_400(client: Client, value: str) -> None:
    response = await client.get("/admin/update/history", params={"limit": value}, headers=auth())
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["error_key"] == "bad_request"
    assert body["message"].startswith("limit: must be a whole number from 1 to")


async def test_history_limit_with_leading_zeros_in_range_is_accepted(client: Client) -> None:
    response = await client.get("/admin/update/history?limit=0005", headers=auth())
    assert response.status == 200
    assert (await response.json()) == {"runs": []}


@pytest.mark.parametrize("value", ["9" * 5000, "-1", "1.5", "x"])
async def test_last_event_id_of_any_shape_is_a_400(
    client: Client, world: ApiWorld, value: str
) -> None:
    record = await world.start("1.4.2")
    await world.manager.wait(record.update_id)
    response = await client.get("/admin/update/stream", headers={**auth(), "Last-Event-ID": value})
    assert response.status == 400
    assert (await response.json())["error_key"] == "bad_request"


# --- deeply nested JSON -----------------------------------------------------------------


@pytest.mark.parametrize("world_settings", [LARGE_BODIES])
@pytest.mark.parametrize("path", JSON_POSTS)
@pytest.mark.parametrize(
    "raw",
    [
        deep(3000),
        deep(3000, "{"),
        deep(MAX_JSON_DEPTH + 1),
        '{"target_version": ' + deep(3000) + "}",
        '{"update_id": ' + deep(3000, "{") + "}",
        '{"force": ' + deep(200) + "}",
        "[" * 5000,  # unbalanced too
    ],
    ids=["array", "object", "limit+1", "as-version", "as-update-id", "as-force", "unclosed"],
)
async def test_deeply_nested_json_is_a_400_on_every_json_endpoint(
    client: Client, path: str, raw: str
) -> None:
    status, body = await post(client, path, raw)
    assert status == 400, body
    assert body["error_key"] == "bad_request"
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in body["message"]


@pytest.mark.parametrize("world_settings", [LARGE_BODIES])
async def test_brackets_inside_strings_do_not_count_as_nesting(client: Client) -> None:
    raw = json.dumps({"target_version": "[{" * 50 + '\\"]' + "[" * 50})
    status, body = await post(client, "/admin/update/start", raw)
    assert (status, body["error_key"]) == (400, "invalid_version")


@pytest.mark.parametrize("world_settings", [LARGE_BODIES])
async def test_nesting_at_the_limit_is_parsed_and_refused_by_type(client: Client) -> None:
    raw = '{"target_version": ' + deep(MAX_JSON_DEPTH - 1) + "}"
    status, body = await post(client, "/admin/update/start", raw)
    assert status == 400
    assert body["error_key"] == "bad_request"
    assert body["message"].startswith("target_version:")


# --- target_version length ---------------------------------------------------------------


@pytest.mark.parametrize("world_settings", [LARGE_BODIES])
@pytest.mark.parametrize("length", [MAX_VERSION_LENGTH + 1, 60_000])
async def test_overlong_target_version_is_invalid_version_on_start_and_plan(
    client: Client, world: ApiWorld, length: int
) -> None:
    version = "1" * length
    status, body = await post(
        client, "/admin/update/start", json.dumps({"target_version": version})
    )
    assert (status, body["error_key"]) == (400, "invalid_version")
    assert f"longer than {MAX_VERSION_LENGTH} characters" in body["message"]
    assert world.manager.current_update_id is None  # nothing was started
    if length < 8000:  # a URL of 60 KB is refused by the HTTP parser itself (431/414)
        response = await client.get(
            "/admin/update/plan", params={"target_version": version}, headers=auth()
        )
        assert response.status == 400
        assert (await response.json())["error_key"] == "invalid_version"


async def test_a_version_at_the_limit_is_looked_up_not_refused_for_length(client: Client) -> None:
    version = "1." + "0" * (MAX_VERSION_LENGTH - 2)
    status, body = await post(
        client, "/admin/update/start", json.dumps({"target_version": version})
    )
    assert (status, body["error_key"]) == (400, "invalid_version")
    assert "longer than" not in body["message"]  # it got as far as the registry


# --- versions no tag can be, bodies of whitespace ------------------------------------------


@pytest.mark.parametrize("version", ["\x0c2", " 1.2.0", "1.2.0\n", "\t1.0", "1.2.0+build", "1 .2"])
async def test_a_version_no_tag_can_be_is_invalid_version_everywhere(
    client: Client, world: ApiWorld, version: str
) -> None:
    """packaging reads "\x0c2" as version 2; as a tag it is the registry's refusal (a 502
    that blamed the registry). It is the caller's invalid_version, before anything runs."""
    status, body = await post(
        client, "/admin/update/start", json.dumps({"target_version": version})
    )
    assert (status, body["error_key"]) == (400, "invalid_version")
    assert world.manager.current_update_id is None  # nothing was started
    response = await client.get(
        "/admin/update/plan", params={"target_version": version}, headers=auth()
    )
    assert response.status == 400
    assert (await response.json())["error_key"] == "invalid_version"
    status, body = await post(
        client, "/admin/policy/versions", json.dumps({"version": version, "action": "skip"})
    )
    assert (status, body["error_key"]) == (400, "invalid_version")


@pytest.mark.parametrize("world_settings", [LARGE_BODIES])  # restore over HTTP enabled
@pytest.mark.parametrize("raw", ["\n", " ", "\r\n\t", "\x0b", "\x0c"])
@pytest.mark.parametrize("path", [*JSON_POSTS, "/admin/policy/reload", "/admin/policy/unfreeze"])
async def test_a_body_of_whitespace_is_not_json(
    client: Client, world: ApiWorld, path: str, raw: str
) -> None:
    """Only an empty body is "no body": whitespace is not JSON (it was read as ``{}``, so
    POST /admin/snapshots with a newline for a body started a snapshot)."""
    status, body = await post(client, path, raw)
    assert (status, body["error_key"]) == (400, "bad_request"), body
    assert "not valid JSON" in body["message"]
    assert world.manager.current_update_id is None


async def test_the_openapi_document_states_the_one_limit(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    start = document["components"]["schemas"]["StartRequest"]["properties"]["target_version"]
    assert MAX_VERSION_LENGTH in [alt.get("maxLength") for alt in start.get("anyOf", [start])]
    plan = document["paths"]["/admin/update/plan"]["get"]["parameters"]
    (param,) = [p for p in plan if p["name"] == "target_version"]
    assert param["schema"]["maxLength"] == MAX_VERSION_LENGTH


# --- a stack whose version is not a version -------------------------------------------------


def tag_stack_latest(world: ApiWorld) -> None:
    """The managed images say ``latest`` (their version label / tag), as ``image: app:latest``."""
    for container in world.engine.containers.values():
        if container.service != "postgres":
            container.image = image_of("latest")


async def test_latest_tagged_stack_is_a_409_current_version_unknown(
    client: Client, world: ApiWorld
) -> None:
    tag_stack_latest(world)
    status, body = await post(
        client, "/admin/update/start", json.dumps({"target_version": "1.4.2"})
    )
    assert (status, body["error_key"]) == (409, "current_version_unknown"), body
    assert "'latest'" in body["message"]
    assert "version tags" in body["message"]
    assert "force" in body["message"]

    response = await client.get("/admin/update/plan?target_version=1.4.2", headers=auth())
    assert response.status == 200
    plan = await response.json()
    assert plan["would_run"] is False
    assert [b["error_key"] for b in plan["blockers"]] == ["current_version_unknown"]

    response = await client.post("/admin/update/check", headers=auth())
    assert response.status == 200
    assert (await response.json())["version"] == "1.4.2"

    response = await client.get("/admin/version", headers=auth())
    assert response.status == 200


async def test_force_updates_a_latest_tagged_stack(client: Client, world: ApiWorld) -> None:
    tag_stack_latest(world)
    body = {"target_version": "1.4.2", "force": True}
    response = await client.post("/admin/update/start", json=body, headers=auth())
    assert response.status == 202, await response.text()
    record = await world.manager.wait((await response.json())["update_id"])
    assert record.state == "completed", record.error
    assert record.from_version == "latest"


# --- upstream failures: 502/503, short message, never the caller's 401 ----------------------

LEAKY = (
    "GET http://docker-proxy:2375/v1.41/containers/json failed: "
    "/var/lib/supervisor/state/current-run.json: pg_dump: FATAL password=hunter2"
)


@pytest.mark.parametrize(
    ("error", "status", "key"),
    [
        (exc.EngineUnreachable(LEAKY), 503, "engine_unreachable"),
        (exc.EngineError(LEAKY), 502, "engine_error"),
        (exc.CommandFailed(LEAKY), 502, "command_failed"),
        (exc.JobTimeout(LEAKY), 504, "timeout"),
    ],
)
async def test_engine_failures_are_5xx_without_details(
    client: Client,
    world: ApiWorld,
    caplog: pytest.LogCaptureFixture,
    error: exc.SupervisorError,
    status: int,
    key: str,
) -> None:
    world.engine.fail["discover"] = error
    with caplog.at_level(logging.ERROR, logger="supervisor.api.middleware"):
        response = await client.post("/admin/update/start", json={}, headers=auth())
    assert response.status == status
    body = await response.json()
    assert body["error_key"] == key
    assert body["message"].endswith("see the supervisor log")
    for secret in ("http://", "/var/lib", "pg_dump", "hunter2", "2375"):
        assert secret not in body["message"]
    assert LEAKY in caplog.text  # the operator still sees everything in the log


@pytest.mark.parametrize(
    ("error", "status", "key"),
    [
        (exc.RegistryAuthFailed(LEAKY), 502, "registry_auth_failed"),
        (exc.RegistryUnreachable(LEAKY), 503, "registry_unreachable"),
        (exc.RegistryRateLimited(LEAKY), 503, "registry_rate_limited"),
        (exc.DigestMismatch(LEAKY), 502, "digest_mismatch"),
    ],
)
async def test_registry_failures_are_5xx_and_never_ask_the_caller_to_authenticate(
    client: Client, world: ApiWorld, error: exc.SupervisorError, status: int, key: str
) -> None:
    world.registry.fail["resolve_digest"] = error
    response = await client.post(
        "/admin/update/start", json={"target_version": "1.4.2"}, headers=auth()
    )
    assert response.status == status
    assert "WWW-Authenticate" not in response.headers
    body = await response.json()
    assert body["error_key"] == key
    assert "http://" not in body["message"]
    assert "hunter2" not in body["message"]
    if key == "registry_auth_failed":
        assert "registry credentials" in body["message"]


async def test_only_the_callers_own_token_gets_a_401(client: Client) -> None:
    response = await client.get("/admin/version", headers=auth("wrong-token-0123456789abc"))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="supervisor"'


# --- the mapping itself ------------------------------------------------------------------


def _all_errors() -> list[type[exc.SupervisorError]]:
    found, todo = [], [exc.SupervisorError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c.__module__ == "supervisor.exceptions"]


def test_only_api_errors_carry_a_status() -> None:
    carriers = [c.__name__ for c in _all_errors() if "status" in vars(c)]
    assert carriers, "APIError and its subclasses carry theirs"
    assert all(issubclass(getattr(exc, name), exc.APIError) for name in carriers), carriers


def test_every_error_class_maps_to_an_error_status() -> None:
    for cls in _all_errors():
        assert 400 <= http_status(cls) <= 599, cls
    for cls in _all_errors():
        if issubclass(cls, exc.EngineError | exc.RegistryError) and cls is not exc.ServiceNotFound:
            assert http_status(cls) in (502, 503, 504), cls
    assert http_status(exc.RegistryAuthFailed) == 502


def test_every_error_class_lives_in_the_exceptions_module() -> None:
    import supervisor

    elsewhere = []
    for cls in _subclasses_anywhere(exc.SupervisorError):
        module = cls.__module__
        if module.startswith(supervisor.__name__) and module != "supervisor.exceptions":
            elsewhere.append(f"{module}.{cls.__name__}")
    assert elsewhere == []


def _subclasses_anywhere(root: type) -> list[type]:
    import importlib
    import pkgutil

    import supervisor

    for info in pkgutil.walk_packages(supervisor.__path__, "supervisor."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
    found, todo = [], [root]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if not c.__name__.startswith("RemoteError_")]
