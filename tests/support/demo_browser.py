"""A real browser for the tests: Debian's headless Chromium over the DevTools protocol.

No Playwright (its browser download is not possible here): Chromium is started with
``--remote-debugging-port=0``, the port it picked is read from its stderr, a page
target is opened over HTTP, and the protocol is spoken over a WebSocket with
aiohttp (already a dependency). Chromium is kept off the network beyond loopback:
every host name but 127.0.0.1/localhost resolves to nothing, and its background
services (updates, sync, translation, metrics …) are switched off.

:func:`png_pixel` decodes the screenshots (8-bit RGB/RGBA PNGs, as Chromium writes
them) so a test can check the colour a person would see, not just the CSS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container: the sandbox needs user namespaces
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


class DevToolsError(RuntimeError):
    pass


@dataclass
class Page:
    """One tab, driven over its WebSocket."""

    ws: aiohttp.ClientWebSocketResponse
    _ids: itertools.count[int]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        await self.ws.send_json({"id": message_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=60)
            if message.get("id") == message_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def open(self, url: str, width: int = 900, height: int = 600) -> None:
        """Load ``url`` and wait until the load event (polls document.readyState)."""
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        navigated = await self.call("Page.navigate", url=url)
        if navigated.get("errorText"):
            raise DevToolsError(f"navigating to {url}: {navigated['errorText']}")
        for _ in range(200):
            if await self.evaluate("document.readyState") == "complete":
                return
            await asyncio.sleep(0.05)
        raise DevToolsError(f"{url} did not finish loading")

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise DevToolsError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        answer = await self.call(
            "Page.captureScreenshot", format="png", captureBeyondViewport=False
        )
        data = base64.b64decode(answer["data"])
        await asyncio.to_thread(_save, path, data)
        return data


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _start(binary: str, scratch: str, log: Path) -> subprocess.Popen[bytes]:
    # Its chatter goes to a file (a pipe nobody drains would fill up and stall it).
    with log.open("wb") as out:
        return subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={scratch}/profile",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=out,
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"},
            start_new_session=True,  # its helpers (renderer, GPU, crashpad) in one group
        )  # fmt: skip


@asynccontextmanager
async def chromium_page(binary: str) -> AsyncIterator[Page]:
    """A fresh headless Chromium (own profile directory) and one page; both closed after."""
    # Ignoring clean-up errors: a helper process still writing its profile must not fail
    # a test that passed (it did once: "Directory not empty: 'Default'").
    with tempfile.TemporaryDirectory(
        prefix="stacksup-chromium-", ignore_cleanup_errors=True
    ) as scratch:
        log = Path(scratch) / "chromium.log"
        process = await asyncio.to_thread(_start, binary, scratch, log)
        try:
            port = await _devtools_port(process, log)
            async with aiohttp.ClientSession() as session:
                async with session.put(f"http://127.0.0.1:{port}/json/new?about:blank") as reply:
                    target = await reply.json(content_type=None)
                async with session.ws_connect(
                    target["webSocketDebuggerUrl"], max_msg_size=64 << 20
                ) as ws:
                    yield Page(ws, itertools.count(1))
        finally:
            await asyncio.to_thread(_stop, process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End Chromium and every helper it started (its process group), so that nothing
    writes into the profile while it is removed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(10)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # helpers that outlived the main process


async def _devtools_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """The port Chromium announces on stderr: ``DevTools listening on ws://127.0.0.1:N/…``."""
    for _ in range(300):
        text = await asyncio.to_thread(log.read_text, errors="replace")
        match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", text)
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        await asyncio.sleep(0.1)
    raise DevToolsError("Chromium did not open its DevTools port:\n" + text[-2000:])


def png_pixel(png: bytes, x: int, y: int) -> tuple[int, int, int]:
    """The RGB colour at (x, y) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, _height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}")
    channels = 4 if colour_type == 6 else 3
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    for row in range(y + 1):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        previous = line
    offset = x * channels
    return previous[offset], previous[offset + 1], previous[offset + 2]


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        corner = previous[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            estimate = left + up - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + best) & 0xFF
        elif kind != 0:
            raise ValueError(f"unknown PNG filter {kind}")
