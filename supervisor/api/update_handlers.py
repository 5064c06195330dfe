"""``/admin/update/*`` and ``/admin/version``: the CanopyOS contract, plus check/plan/history.

Handlers only translate HTTP to :class:`~supervisor.update.protocol.UpdateService` calls and
back; the service raises the refusals (``UpdateRunning`` 409, ``InvalidVersion`` 400 …) and
the error middleware renders them. Bodies and query strings are validated strictly here, so
the service never sees a coerced value.
"""

from __future__ import annotations

from aiohttp import web

from supervisor.exceptions import BadRequest, InvalidVersion, NotCancellable, NotFound
from supervisor.update.models import StartRequest

from .badge import last_result
from .body import checked_update_id, query_bool, query_int, query_update_id, read_json, read_model
from .keys import OPTIONS, UPDATES
from .reply import reply
from .schemas import CancelRequest, HistoryPage, StartResponse

# The CLI sets this so the run record says who asked; anything else counts as "api".
TRIGGER_HEADER = "X-Supervisor-Trigger"
MAX_VERSION_LENGTH = 128


async def start_update(request: web.Request) -> web.Response:
    """202 as soon as the run is journaled; progress is then polled or streamed."""
    body = await read_model(request, StartRequest)
    trigger = "cli" if request.headers.get(TRIGGER_HEADER) == "cli" else "api"
    record = await request.app[UPDATES].start(body, trigger=trigger)
    answer = StartResponse(update_id=record.update_id, state=record.state)
    location = f"/admin/update/status?update_id={record.update_id}"
    return reply(answer, status=202, headers={"Location": location})


async def update_status(request: web.Request) -> web.Response:
    update_id = query_update_id(request)
    try:
        record = request.app[UPDATES].status(update_id)
    except NotFound as err:
        if update_id:
            err.details.setdefault("update_id", update_id)
        raise
    return reply(record.public())


async def cancel_update(request: web.Request) -> web.Response:
    """202 with the record (``cancel_requested`` set); the run then ends ``cancelled``."""
    body = await read_model(request, CancelRequest)
    update_id = checked_update_id(body.update_id)
    try:
        record = await request.app[UPDATES].cancel(update_id)
    except (NotFound, NotCancellable) as err:
        err.details.setdefault("update_id", update_id)
        raise
    return reply(record.public(), status=202)


async def version(request: web.Request) -> web.Response:
    updates = request.app[UPDATES]
    info = dict(await updates.version_info())
    if "last_result" not in info:
        info["last_result"] = last_result(updates)
    return reply(info)


async def check_updates(request: web.Request) -> web.Response:
    """Ask the release source now instead of waiting for the periodic check."""
    data = await read_json(request)
    if data != {}:
        raise BadRequest("this endpoint takes no body (or {})")
    return reply(await request.app[UPDATES].check())


async def plan_update(request: web.Request) -> web.Response:
    target = request.query.get("target_version") or None
    if target is not None and len(target) > MAX_VERSION_LENGTH:
        raise InvalidVersion(f"target_version: longer than {MAX_VERSION_LENGTH} characters")
    force = query_bool(request, "force")
    return reply(await request.app[UPDATES].plan(target, force))


async def update_history(request: web.Request) -> web.Response:
    high = request.app[OPTIONS].history_limit_max
    limit = query_int(request, "limit", default=50, low=1, high=high)
    runs = request.app[UPDATES].history(limit)
    return reply(HistoryPage(runs=list(runs)))
