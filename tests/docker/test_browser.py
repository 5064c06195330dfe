"""The update badge as a person sees it: headless Chromium loads the app's page.

The stack is the shipped one (compose/); updates are started the way the web app
does it, through the app and the backend's forwarding of ``/admin/update/*`` (no
sidecar token in the browser's hands), followed over the forwarded SSE stream.
After the successful update the badge must read "1.1.0 up to date" in green, after
the rollback "1.3.0 rolled back" in orange, both in the DOM and in the pixels of a
screenshot. Screenshots are kept in ``test-artifacts/``.

Chromium missing: skipped with the reason printed, or failed when
``STACKSUP_REQUIRE_ENGINE=1`` (CI), like the real-engine tests.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pytest

from tests.support.demo_browser import chromium_page, find_chromium, png_pixel
from tests.support.demo_stack import DemoStack, demo_stack, http
from tests.support.testenv import ROOT, StackTestEnv

pytestmark = pytest.mark.timeout(900)
ARTIFACTS = ROOT / "test-artifacts"
GREEN, ORANGE = (0x44, 0xCC, 0x11), (0xFE, 0x7D, 0x37)  # the sidecar's #4c1 and #fe7d37

BADGE_JS = """(() => {
  const message = document.getElementById('badge-message');
  const box = message.getBoundingClientRect();
  const svg = document.getElementById('badge-svg');
  return {
    text: message.textContent.trim(),
    background: getComputedStyle(message).backgroundColor,
    box: [box.x, box.y, box.width, box.height],
    running: document.getElementById('running-version').textContent.trim(),
    state: document.getElementById('last-state').textContent.trim(),
    time: document.getElementById('last-time').textContent.trim(),
    svgLoaded: svg.complete && svg.naturalWidth > 0,
    html: document.documentElement.outerHTML,
  };
})()"""


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = "no Chromium found (Debian's `chromium` package: scripts/testenv install adds it)"
        if os.environ.get("STACKSUP_REQUIRE_ENGINE") == "1":
            pytest.fail(f"browser tests required but {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def stack(chromium: str, testenv: StackTestEnv, tmp_path: Path) -> Iterator[DemoStack]:
    with demo_stack(testenv, tmp_path) as running:
        yield running


def update_through_the_app(stack: DemoStack, version: str) -> list[dict[str, Any]]:
    """Start an update via the app's forwarded API and follow the forwarded SSE stream.

    The app and the backend that forward the stream are themselves stopped and
    recreated by the update (and the app's random host port changes), so the stream
    breaks on the way: like a browser's EventSource, reconnect with Last-Event-ID.
    """
    status, accepted = http(
        "POST", f"{stack.app_url}/admin/update/start", {"target_version": version}
    )
    assert status == 202, accepted
    path = f"/admin/update/stream?update_id={accepted['update_id']}"
    ids: list[int] = []
    events: list[dict[str, Any]] = []
    reconnects = 0
    deadline = time.monotonic() + 300
    while not events or events[-1]["event"] != "result":
        assert time.monotonic() < deadline, f"no result event; last {events[-3:]}"
        headers = {"Last-Event-ID": str(ids[-1])} if ids else {}
        try:
            request = urllib.request.Request(stack.app_url + path, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as stream:
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                for event_id, data in read_events(stream):
                    ids.append(event_id)
                    events.append(data)
        except (OSError, HTTPException, RuntimeError, AssertionError):
            reconnects += 1
            time.sleep(1)
    assert ids == sorted(set(ids)), "an event was repeated or came out of order"
    print(f"update to {version}: {len(events)} events, {reconnects} reconnects")
    # Resuming after the last-but-one event gives exactly the result.
    request = urllib.request.Request(stack.app_url + path, headers={"Last-Event-ID": str(ids[-2])})
    with urllib.request.urlopen(request, timeout=60) as stream:
        assert list(read_events(stream)) == [(ids[-1], events[-1])]
    return events


def read_events(stream: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(id, data) of each complete SSE event; a half-received one is dropped."""
    event_id, data = None, None
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("id:"):
            event_id = int(line[3:])
        elif line.startswith("data:"):
            data = json.loads(line[5:])
        elif not line and event_id is not None and data is not None:
            yield event_id, data
            event_id, data = None, None


async def look_at_the_page(stack: DemoStack, chromium: str, name: str) -> dict[str, Any]:
    async with chromium_page(chromium) as page:
        await page.open(f"{stack.app_url}/")
        seen: dict[str, Any] = await page.evaluate(BADGE_JS)
        png = await page.screenshot(ARTIFACTS / f"browser-{name}.png")
    x, y, width, height = seen["box"]
    seen["pixel"] = png_pixel(png, int(x + 4), int(y + height / 2))
    seen["pixel_middle"] = png_pixel(png, int(x + width - 4), int(y + 3))
    return seen


def close_to(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 6 for a, b in zip(colour, expected, strict=True))


async def test_badge_after_update_and_after_rollback(chromium: str, stack: DemoStack) -> None:
    tokens = [stack.admin_token_file.read_text().strip(), stack.read_token_file.read_text().strip()]

    events = update_through_the_app(stack, "1.1.0")
    assert events[-1]["state"] == "completed", events[-3:]
    seen = await look_at_the_page(stack, chromium, "after-update")
    assert seen["text"] == "1.1.0 up to date"
    assert seen["background"] == "rgb(68, 204, 17)"
    assert close_to(seen["pixel"], GREEN), seen["pixel"]
    assert close_to(seen["pixel_middle"], GREEN), seen["pixel_middle"]
    assert (seen["running"], seen["state"]) == ("1.1.0", "completed")
    assert seen["time"].startswith("20")
    assert seen["svgLoaded"]
    assert not any(token in seen["html"] for token in tokens)

    events = update_through_the_app(stack, "1.3.0")
    assert events[-1]["state"] == "rolled_back", events[-3:]
    assert any(e["event"] == "phase" and e.get("state") == "healthcheck" for e in events)
    seen = await look_at_the_page(stack, chromium, "after-rollback")
    assert seen["text"] == "1.3.0 rolled back"
    assert seen["background"] == "rgb(254, 125, 55)"
    assert close_to(seen["pixel"], ORANGE), seen["pixel"]
    assert (seen["running"], seen["state"]) == ("1.1.0", "rolled_back")
    assert seen["svgLoaded"]
    assert not any(token in seen["html"] for token in tokens)
    for name in ("after-update", "after-rollback"):
        assert (ARTIFACTS / f"browser-{name}.png").stat().st_size > 1000
