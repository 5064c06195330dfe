"""``GET /admin/update/stream``: a run's events as Server-Sent Events.

Wire format (one event)::

    id: 7
    event: phase
    data: {"event":"phase","state":"pull","message":"Pulling images"}

``data`` repeats the ``event`` key (CanopyOS payload shape), so a client that only reads
``data`` still knows the kind. A new subscriber gets the run's history first, then live events;
``Last-Event-ID: n`` resumes strictly after ``n``, also across a restart of the sidecar (the
ids come from the run's event file, :mod:`supervisor.update.events`). The stream ends after
the one ``result`` event, also for a run that ended long ago (the history replays up to it),
and a ``Last-Event-ID`` at or past the result gets it again: an ``EventSource`` stops. An
idle stream gets a ``: keep-alive`` comment every ``ApiOptions.sse_keepalive`` seconds, which
also notices a vanished client: its write fails and the subscription is closed quietly.

The event iterator is advanced by a task that survives keep-alive timeouts (cancelling
``__anext__`` of an async generator would close it), and is always closed on the way out.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from supervisor.exceptions import BadRequest, NotFound
from supervisor.update.models import RunEvent

from .body import query_update_id
from .const import SSE_CONTENT_TYPE
from .keys import LIFECYCLE, OPTIONS, UPDATES

_LOGGER = logging.getLogger(__name__)
KEEPALIVE = b": keep-alive\n\n"
RETRY_MS = 3000


def format_event(event: RunEvent) -> bytes:
    data = {"event": event.event, **{k: v for k, v in event.data.items() if k != "event"}}
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.event}\ndata: {payload}\n\n".encode()


def last_event_id(request: web.Request) -> int | None:
    value = request.headers.get("Last-Event-ID", "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise BadRequest("Last-Event-ID: must be the id of an event (a whole number)")
    return int(value)


async def stream_update(request: web.Request) -> web.StreamResponse:
    updates = request.app[UPDATES]
    update_id = query_update_id(request)
    after = last_event_id(request)
    try:  # refuse unknown runs with a normal 404 before the stream starts
        record = updates.status(update_id)
    except NotFound as err:
        if update_id:
            err.details.setdefault("update_id", update_id)
        raise
    response = web.StreamResponse(
        headers={
            "Content-Type": SSE_CONTENT_TYPE,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx in front must not buffer the stream
        }
    )
    await response.prepare(request)
    events = updates.events(record.update_id, after)
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        await _pump(request, response, events)
        await response.write_eof()
    except ConnectionResetError:
        _LOGGER.debug("client of the %s stream went away", record.update_id)
    return response


async def _pump(
    request: web.Request, response: web.StreamResponse, events: AsyncIterator[RunEvent]
) -> None:
    """Write events, with keep-alives while idle, until ``result``, the end or shutdown."""
    keepalive = request.app[OPTIONS].sse_keepalive
    closing = request.app[LIFECYCLE].closing
    closing_wait = asyncio.ensure_future(closing.wait())
    pending: asyncio.Future[Any] | None = None
    try:
        while not closing.is_set():
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait(
                {pending, closing_wait}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if pending in done:
                future, pending = pending, None
                try:
                    event: RunEvent = future.result()
                except StopAsyncIteration:
                    return
                except Exception:  # the headers are sent: end the stream, a client resumes
                    _LOGGER.exception("the event subscription of a stream failed")
                    return
                await response.write(format_event(event))
                if event.event == "result":
                    return
            elif not done:
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("client went away")
                await response.write(KEEPALIVE)
    finally:
        closing_wait.cancel()
        await _close(events, pending)


async def _close(events: AsyncIterator[RunEvent], pending: asyncio.Future[Any] | None) -> None:
    """Stop the subscription: cancel the waiting step, then close the generator."""
    if pending is not None:
        pending.cancel()
        await asyncio.wait({pending})
        if not pending.cancelled():
            pending.exception()  # retrieved, so asyncio does not log it
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            _LOGGER.exception("closing an event subscription failed")
