"""The SSE stream: history then live, Last-Event-ID resume, keep-alives, disconnects, the end.

Events are parsed with the client's own SSE parser; the fake's event list is the truth every
received sequence is compared with.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from supervisor.api.keys import LIFECYCLE
from supervisor.client import SSEParser
from tests.support.fake_update_service import FakeUpdateService, auth

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


async def test_finished_run_replays_everything_and_closes(
    client: TestClient[Any, Any], fake: FakeUpdateService
) -> None:
    update_id = await start(client)
    fake.release()
    await fake.wait(update_id)
    response = await client.get(STREAM, params={"update_id": update_id}, headers=auth())
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events, _ = await read_events(response)
    truth = fake.runs[update_id].events
    assert [e["id"] for e in events] == [e.id for e in truth] == list(range(1, len(truth) + 1))
    for got, want in zip(events, truth, strict=True):
        assert got["event"] == want.event
        assert got["data"] == {"event": want.event, **want.data}  # data repeats `event`
    assert [e["event"] for e in events].count("result") == 1
    assert events[-1]["event"] == "result"
    assert events[-1]["data"]["state"] == "completed"
    assert events[0]["data"] == {
        "event": "phase", "state": "preflight", "progress": 0,
        "message": "Checking the engine, disk space and the target release",
    }  # fmt: skip


async def test_history_then_live_then_end(
    client: TestClient[Any, Any], fake: FakeUpdateService
) -> None:
    update_id = await start(client)
    fake.advance(1)
    await fake.settle()
    response = await client.get(STREAM, headers=auth())  # no id: the current run
    first, _ = await read_events(response, limit=2)
    assert [e["event"] for e in first] == ["phase", "log"]
    fake.release()
    rest, _ = await read_events(response)
    ids = [e["id"] for e in first + rest]
    assert ids == [e.id for e in fake.runs[update_id].events]
    assert rest[-1]["event"] == "result"


async def test_disconnect_then_resume_with_last_event_id(
    client: TestClient[Any, Any], fake: FakeUpdateService, caplog: pytest.LogCaptureFixture
) -> None:
    update_id = await start(client)
    fake.advance(2)
    await fake.settle()
    response = await client.get(STREAM, params={"update_id": update_id}, headers=auth())
    before, _ = await read_events(response, limit=4)
    response.close()  # the client vanishes mid-run
    fake.advance(2)
    await fake.settle()
    for _ in range(100):  # the server notices at the next write or keep-alive
        if fake.subscribers == 0:
            break
        await asyncio.sleep(0.02)
    assert fake.subscribers == 0

    headers = {**auth(), "Last-Event-ID": str(before[-1]["id"])}
    response = await client.get(STREAM, params={"update_id": update_id}, headers=headers)
    fake.release()
    after, _ = await read_events(response)
    received = [e["id"] for e in before + after]
    assert received == [e.id for e in fake.runs[update_id].events]  # each once, in order
    assert after[-1]["event"] == "result"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_keep_alive_comments_while_idle(
    client: TestClient[Any, Any], fake: FakeUpdateService
) -> None:
    await start(client)
    response = await client.get(STREAM, headers=auth())
    await asyncio.sleep(0.2)  # keep-alive every 0.05 s in tests
    fake.release()
    events, comments = await read_events(response)
    assert ": keep-alive" in comments
    assert events[-1]["event"] == "result"


async def test_resume_after_the_result_sends_nothing(
    client: TestClient[Any, Any], fake: FakeUpdateService
) -> None:
    update_id = await start(client)
    fake.release()
    await fake.wait(update_id)
    last = fake.runs[update_id].events[-1].id
    headers = {**auth(), "Last-Event-ID": str(last)}
    response = await client.get(STREAM, params={"update_id": update_id}, headers=headers)
    events, _ = await read_events(response)
    assert response.status == 200
    assert events == []


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "9" * 40])
async def test_bad_last_event_id_is_400(
    client: TestClient[Any, Any], fake: FakeUpdateService, value: str
) -> None:
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
    client: TestClient[Any, Any], fake: FakeUpdateService
) -> None:
    update_id = await start(client)
    responses = [await client.get(STREAM, headers=auth()) for _ in range(10)]
    fake.release()
    results = await asyncio.gather(*(read_events(r) for r in responses))
    truth = [e.id for e in fake.runs[update_id].events]
    assert all([e["id"] for e in events] == truth for events, _ in results)
    assert fake.subscribers == 0


async def test_shutdown_ends_open_streams(
    client: TestClient[Any, Any], fake: FakeUpdateService
) -> None:
    await start(client)
    response = await client.get(STREAM, headers=auth())
    first, _ = await read_events(response, limit=1)
    client.server.app[LIFECYCLE].closing.set()
    rest, _ = await asyncio.wait_for(read_events(response), timeout=2)
    assert first
    assert not [e for e in rest if e["event"] == "result"]
    assert fake.subscribers == 0


async def test_a_failing_subscription_ends_the_stream_cleanly(
    client: TestClient[Any, Any], fake: FakeUpdateService, caplog: pytest.LogCaptureFixture
) -> None:
    await start(client)
    original = fake.events

    async def broken(update_id: str | None = None, after: int | None = None) -> Any:
        async for event in original(update_id, after):
            yield event
            raise RuntimeError("journal unreadable")

    fake.events = broken  # type: ignore[method-assign]
    response = await client.get(STREAM, headers=auth())
    assert response.status == 200
    events, _ = await asyncio.wait_for(read_events(response), timeout=2)
    assert [e["id"] for e in events] == [1]
    assert any("subscription of a stream failed" in r.getMessage() for r in caplog.records)
    fake.release()
