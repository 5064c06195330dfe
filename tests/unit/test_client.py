"""The Python client against the real API and manager (over fake adapters) and against
misbehaving servers: typed answers, errors by error_key, retries on reads only, SSE resume with
Last-Event-ID."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from supervisor.client import SidecarUnreachable, SSEParser, SupervisorClient, error_from_answer
from supervisor.exceptions import (
    AlreadyCurrent,
    APIError,
    NotCancellable,
    NoUpdate,
    Unauthorized,
    UpdateNotFound,
    UpdateRunning,
)
from supervisor.update.stages import Stage
from tests.support.api_world import ADMIN, CURRENT, LATEST, READ, ApiWorld

pytestmark = pytest.mark.unit
Server = Callable[..., Any]


def url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def client_for(server: TestServer, token: str = ADMIN, **kwargs: Any) -> SupervisorClient:
    return SupervisorClient(url(server), token, backoff=0.01, **kwargs)


async def test_a_whole_run(aiohttp_server: Server, world: ApiWorld) -> None:
    world.hold("pull")
    server = await aiohttp_server(world.app())
    async with client_for(server) as client:
        with pytest.raises(NoUpdate):
            await client.status()
        accepted = await client.start(LATEST, "stable")
        assert accepted.state is Stage.PREFLIGHT
        with pytest.raises(UpdateRunning) as caught:
            await client.start()
        assert caught.value.details["update_id"] == accepted.update_id
        assert (await client.status(accepted.update_id)).target_version == LATEST
        world.release("pull")
        record = await client.wait_for_result(accepted.update_id)
        assert record.result is Stage.COMPLETED
        await world.manager.wait(accepted.update_id)  # the lock release after the result
        assert (record.from_version, record.trigger) == (CURRENT, "api")
        with pytest.raises(NotCancellable):
            await client.cancel(accepted.update_id)
        assert (await client.version())["current"]["app"]["tag"] == LATEST
        assert [r.update_id for r in await client.history()] == [accepted.update_id]
        with pytest.raises(AlreadyCurrent):
            await client.start()
        assert (await client.plan(LATEST, force=True))["target_version"] == LATEST
        assert (await client.check())["version"] == LATEST
    assert world.engine.version_running("app") == LATEST


async def test_follow_yields_every_event_once(aiohttp_server: Server, world: ApiWorld) -> None:
    world.hold("pull")
    server = await aiohttp_server(world.app())
    async with client_for(server, trigger="cli") as client:
        accepted = await client.start()
        seen = []

        async def follow() -> None:
            async for event in client.follow(accepted.update_id):
                seen.append(event)

        task = asyncio.create_task(follow())
        await world.reach(accepted.update_id, "pull")
        world.release("pull")
        await asyncio.wait_for(task, 5)
    truth = await world.events(accepted.update_id)
    assert [(e.id, e.event) for e in seen] == [(e.id, e.event) for e in truth]
    assert [{**e.data, "event": e.event} for e in seen] == [
        {**e.data, "event": e.event} for e in truth
    ]
    assert seen[-1].event == "result"
    assert world.manager.status(accepted.update_id).trigger == "cli"


async def test_follow_after_the_result_ends_at_once(
    aiohttp_server: Server, world: ApiWorld
) -> None:
    server = await aiohttp_server(world.app())
    async with client_for(server) as client:
        accepted = await client.start()
        await world.manager.wait(accepted.update_id)
        truth = await world.events(accepted.update_id)
        result = truth[-1]  # the stream of an ended run always ends with its result
        assert [e.id async for e in client.follow(accepted.update_id, after=result.id)] == [
            result.id
        ]
        assert [e.id async for e in client.follow()] == [e.id for e in truth]


async def test_refusals_map_to_exceptions(aiohttp_server: Server, world: ApiWorld) -> None:
    server = await aiohttp_server(world.app())
    async with SupervisorClient(url(server), "wrong-token-0123456789") as client:
        with pytest.raises(Unauthorized):
            await client.version()
    async with client_for(server, token=READ) as client:
        with pytest.raises(APIError) as caught:
            await client.start()
        assert caught.value.error_key == "forbidden"
        assert caught.value.status == 403
        with pytest.raises(UpdateNotFound):
            await client.status("nope0001")


def test_unknown_error_keys_keep_key_and_status() -> None:
    err = error_from_answer(418, {"error_key": "teapot", "message": "short and stout"})
    assert isinstance(err, APIError)
    assert (err.error_key, err.status, err.message) == ("teapot", 418, "short and stout")
    err = error_from_answer(502, "<html>bad gateway</html>")
    assert err.status == 502
    assert err.error_key == "internal_error"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_nothing_listening_is_unreachable() -> None:
    async with SupervisorClient(f"http://127.0.0.1:{free_port()}", ADMIN, backoff=0.01) as client:
        with pytest.raises(SidecarUnreachable):
            await client.status()
        with pytest.raises(SidecarUnreachable):
            await client.start()
        with pytest.raises(SidecarUnreachable):
            async for _event in client.follow("abcd1234"):
                pass


def flaky_app(failures: int) -> tuple[web.Application, dict[str, int]]:
    """Drops the first ``failures`` connections of every endpoint without an answer."""
    calls: dict[str, int] = {}

    async def handler(request: web.Request) -> web.Response:
        calls[request.path] = calls.get(request.path, 0) + 1
        if calls[request.path] <= failures:
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.01)
        if request.path == "/admin/update/start":
            return web.json_response({"update_id": "abcd1234", "state": "preflight"}, status=202)
        return web.json_response({"current": {}, "latest": None, "last_result": None})

    app = web.Application()
    app.router.add_post("/admin/update/start", handler)
    app.router.add_get("/admin/version", handler)
    return app, calls


async def test_reads_are_retried_but_start_never(aiohttp_server: Server) -> None:
    app, calls = flaky_app(failures=2)
    server = await aiohttp_server(app)
    async with client_for(server) as client:
        assert (await client.version())["latest"] is None
        with pytest.raises(SidecarUnreachable):
            await client.start("1.4.2")
    assert calls == {"/admin/version": 3, "/admin/update/start": 1}


def dropping_stream_app() -> tuple[web.Application, list[str | None]]:
    """An SSE server that dies after three events on the first connection and resumes from
    Last-Event-ID on the next, like the real one behind a flaky network."""
    resumed_from: list[str | None] = []
    events = [(i, "log", f'{{"event":"log","message":"line {i}"}}') for i in range(1, 6)]
    events.append((6, "result", '{"event":"result","state":"completed"}'))

    async def stream(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        resumed_from.append(last)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": hello\n\n")
        for number, kind, data in events:
            if last is not None and number <= int(last):
                continue
            await response.write(f"id: {number}\nevent: {kind}\ndata: {data}\n\n".encode())
            if len(resumed_from) == 1 and number == 3:
                assert request.transport is not None
                request.transport.close()  # connection lost mid-stream
                return response
        return response

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"update_id": "abcd1234", "state": "pull"})

    app = web.Application()
    app.router.add_get("/admin/update/stream", stream)
    app.router.add_get("/admin/update/status", status)
    return app, resumed_from


async def test_follow_resumes_after_a_drop(aiohttp_server: Server) -> None:
    app, resumed_from = dropping_stream_app()
    server = await aiohttp_server(app)
    async with client_for(server) as client:
        seen = [event async for event in client.follow("abcd1234")]
    assert [e.id for e in seen] == [1, 2, 3, 4, 5, 6]
    assert seen[-1].event == "result"
    assert seen[-1].data == {"state": "completed"}
    assert resumed_from == [None, "3"]


def test_repr_hides_the_token() -> None:
    client = SupervisorClient("http://supervisor:8080", ADMIN)
    assert ADMIN not in repr(client)


def test_sse_parser() -> None:
    parser = SSEParser()
    lines = [": comment", "retry: 5000", "id: 7", "event: log", "data: {\"a\":", "data: 1}",
             "", "id: 8", "", "data:plain", "\r\n"]  # fmt: skip
    messages = [m for line in lines if (m := parser.feed_line(line)) is not None]
    assert [(m.id, m.event, m.data) for m in messages] == [
        ("7", "log", '{"a":\n1}'),
        ("8", "message", "plain"),  # an id line without data still moves the resume point
    ]
    assert parser.retry_ms == 5000
    assert parser.last_id == "8"
