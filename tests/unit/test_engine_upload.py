"""``put_file`` when the engine drops the connection in the middle of an upload.

The engine refuses an archive for a missing container or directory without
reading the body and may close the connection while the tar is still being
sent; the client then sees "server disconnected", not the 404. This happened
in CI under load and cannot be provoked on demand against a real engine, so a
small HTTP server plays the engine's part of the exchange here (the edge, not
our logic): the adapter must ask again and name what is missing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from supervisor.engine.docker_engine import DockerEngine
from supervisor.exceptions import EngineNotFound, EngineUnreachable

pytestmark = pytest.mark.unit

_DIR_STAT = base64.b64encode(json.dumps({"name": "tmp", "mode": (1 << 31) | 0o777}).encode())


def _engine_app(*, gone_after_put: bool) -> web.Application:
    state = {"puts": 0}

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.43"})

    async def stat(_: web.Request) -> web.Response:
        if gone_after_put and state["puts"]:
            return web.Response(status=404)
        return web.Response(headers={"X-Docker-Container-Path-Stat": _DIR_STAT.decode()})

    async def upload(request: web.Request) -> web.Response:
        state["puts"] += 1
        await request.content.read(1024)
        assert request.transport is not None
        request.transport.close()  # refused mid-body: the client sees a dropped connection
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_route("HEAD", "/v1.43/containers/{cid}/archive", stat)
    app.router.add_put("/v1.43/containers/{cid}/archive", upload)
    return app


async def _put(app: web.Application, tmp_path: Path) -> None:
    local = tmp_path / "dump.bin"
    local.write_bytes(b"x" * (2 * 1024 * 1024))
    async with TestServer(app) as server:
        engine = DockerEngine(f"tcp://{server.host}:{server.port}")
        try:
            await engine.put_file("abc", local, "/tmp")
        finally:
            await engine.close()


async def test_a_container_gone_mid_upload_is_named(tmp_path: Path) -> None:
    with pytest.raises(EngineNotFound, match="no such container or directory"):
        await _put(_engine_app(gone_after_put=True), tmp_path)


async def test_a_dropped_upload_with_the_container_still_there_is_unreachable(
    tmp_path: Path,
) -> None:
    with pytest.raises(EngineUnreachable):
        await _put(_engine_app(gone_after_put=False), tmp_path)
