"""The SSE stream: history then live, Last-Event-ID resume, keep-alives, disconnects, the end.

Events are parsed with the client's own SSE parser; the real manager's replay of the ended run
is the truth every received sequence is compared with. Runs are held in a stage through the
fake engine (``world.hold("pull")``), never by faking the manager.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from supervisor.api.keys import LIFECYCLE
from supervisor.client import SSEParser
from supervisor.update.models import RunEvent
from tests.support.api_world import ApiWorld, auth

pytestmark = pytest.mark.unit
STREAM = "/admin/update/stream"


async def read_events(
    response: aiohttp.ClientResponse, limit: int | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Parsed events (id, event, data) and raw comment lines, until EOF or ``limit`` events."""
    parser, events, comments = SSEParser(), [], []
    async for raw in response.content:
        line = raw.decode()
        if line.startswith(":"):
            comments.append(line.strip())
        message = parser.feed_line(line)
        if message is not None:
            events.append(
                {
                    "id": int(message.id or 0),
                    "event": message.event,
                    "data": json.loads(message.data),
                }
            )
            if limit is not None and len(events) >= limit:
                break
    return events, comments


async def start(client: TestClient[Any, Any]) -> str:
    response = await client.post("/admin/update/start", json={}, headers=auth())
    return str((await response.json())["update_id"])


def as_received(truth: list[RunEvent]) -> list[dict[str, Any]]:
    """The manager's events as a client parses them: ``data`` repeats ``event``."""
    return [{"id": e.id, "event": e.event, "data": {**e.data, "event": e.event}} for e in truth]


def open_connections(client: TestClient[Any, Any]) -> int:
    server = client.server.handler
    assert isinstance(server, web.Server)
    return len(server.connections)


async def went_away(client: TestClient[Any, Any], streaming: int) -> None:
    """Until the server has dropped the connection of a stream whose client vanished (it
    notices at the next write or keep-alive)."""
    for _ in range(200):
        if open_connections(client) < streaming:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never noticed the client leaving")


async def test_finished_run_replays_everything_and_closes(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    update_id = await start(client)
    await world.manager.wait(update_id)
    response = await client.get(STREAM, params={"update_id": update_id}, headers=auth())
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events, _ = await read_events(response)
    truth = await world.events(update_id)
    assert events == as_received(truth)
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})  # increasing, unique
    assert [e["event"] for e in events].count("result") == 1
    assert events[-1]["event"] == "result"
    assert events[-1]["data"]["state"] == "completed"
    assert events[-1]["data"]["update_id"] == update_id
    first = events[0]
    assert (first["event"], first["data"]["state"]) == ("phase", "preflight")
    assert first["data"]["message"] == "Checking the engine, disk space and the target release"
    phases = [e["data"]["state"] for e in events if e["event"] == "phase"]
    assert phases == ["preflight", "pull", "verify", "stop", "backup", "migrate", "recreate",
                      "healthcheck", "completed"]  # fmt: skip


async def test_history_then_live_then_end(client: TestClient[Any, Any], world: ApiWorld) -> None:
    world.hold("pull")
    update_id = await start(client)
    await world.reach(update_id, "pull")
    response = await client.get(STREAM, headers=auth())  # no id: the current run
    first, _ = await read_events(response, limit=2)
    assert first[0]["event"] == "phase"
    assert first[0]["data"]["state"] == "preflight"
    world.release("pull")
    rest, _ = await read_events(response)
    received = first + rest
    assert received == as_received(await world.events(update_id))
    assert rest[-1]["event"] == "result"


async def test_disconnect_then_resume_with_last_event_id(
    client: TestClient[Any, Any], world: ApiWorld, caplog: pytest.LogCaptureFixture
) -> None:
    world.hold("pull")
    update_id = await start(client)
    await world.reach(update_id, "pull")
    response = await client.get(STREAM, params={"update_id": update_id}, headers=auth())
    before, _ = await read_events(response, limit=4)
    streaming = open_connections(client)
    response.close()  # the client vanishes mid-run
    await went_away(client, streaming)
    world.hold("stop")
    world.release("pull")
    await world.reach(update_id, "stop")

    headers = {**auth(), "Last-Event-ID": str(before[-1]["id"])}
    response = await client.get(STREAM, params={"update_id": update_id}, headers=headers)
    world.release("stop")
    after, _ = await read_events(response)
    assert before + after == as_received(await world.events(update_id))  # each once, in order
    assert after[-1]["event"] == "result"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_keep_alive_comments_while_idle(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.hold("pull")
    await start(client)
    response = await client.get(STREAM, headers=auth())
    await asyncio.sleep(0.2)  # keep-alive every 0.05 s in tests
    world.release("pull")
    events, comments = await read_events(response)
    assert ": keep-alive" in comments
    assert events[-1]["event"] == "result"


async def test_resume_after_the_result_ends_with_the_result_again(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    """A browser EventSource reconnects after every close; the stream of an ended run always
    ends with its result, so the page learns the run is over instead of reconnecting forever."""
    update_id = await start(client)
    await world.manager.wait(update_id)
    result = (await world.events(update_id))[-1]
    headers = {**auth(), "Last-Event-ID": str(result.id)}
    response = await client.get(STREAM, params={"update_id": update_id}, headers=headers)
    events, _ = await read_events(response)
    assert response.status == 200
    assert events == as_received([result])


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "9" * 40])
async def test_bad_last_event_id_is_400(
    client: TestClient[Any, Any], world: ApiWorld, value: str
) -> None:
    world.hold("pull")
    await start(client)
    response = await client.get(STREAM, headers={**auth(), "Last-Event-ID": value})
    assert response.status == 400
    assert "Last-Event-ID" in (await response.json())["message"]


async def test_stream_without_runs_or_for_unknown_id_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.get(STREAM, headers=auth())
    assert (await response.json())["error_key"] == "no_update"
    response = await client.get(STREAM, params={"update_id": "cafe0001"}, headers=auth())
    assert response.status == 404
    assert (await response.json())["update_id"] == "cafe0001"


async def test_many_subscribers_get_the_same_events(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.hold("pull")
    update_id = await start(client)
    responses = [await client.get(STREAM, headers=auth()) for _ in range(10)]
    world.release("pull")
    results = await asyncio.gather(*(read_events(r) for r in responses))
    truth = as_received(await world.events(update_id))
    assert all(events == truth for events, _ in results)


async def test_shutdown_ends_open_streams(client: TestClient[Any, Any], world: ApiWorld) -> None:
    world.hold("pull")
    await start(client)
    response = await client.get(STREAM, headers=auth())
    first, _ = await read_events(response, limit=1)
    client.server.app[LIFECYCLE].closing.set()
    rest, _ = await asyncio.wait_for(read_events(response), timeout=2)
    assert first
    assert not [e for e in rest if e["event"] == "result"]  # ended, not finished
