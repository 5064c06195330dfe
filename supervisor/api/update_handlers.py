"""``/admin/update/*`` and ``/admin/version``: the CanopyOS contract, plus check/plan/history.

Handlers only translate HTTP to :class:`~supervisor.update.protocol.UpdateService` calls and
back; the service raises the refusals (``UpdateRunning`` 409, ``InvalidVersion`` 400 …) and
the error middleware renders them. Bodies and query strings are validated strictly here, so
the service never sees a coerced value.
"""

from __future__ import annotations

from aiohttp import web

from supervisor.exceptions import BadRequest, InvalidVersion, NotCancellable, NotFound
from supervisor.update.models import MAX_VERSION_LENGTH, StartRequest
from supervisor.update.release import parse_requested_version

from .badge import auto_apply_status
from .body import (
    checked_update_id,
    query_bool,
    query_int,
    query_update_id,
    read_json,
    read_model,
    read_object,
    validated,
)
from .keys import OPTIONS, UPDATES
from .reply import reply
from .schemas import AcknowledgeRequest, CancelRequest, HistoryPage, StartResponse

# The CLI sets this so the run record says who asked; anything else counts as "api".
TRIGGER_HEADER = "X-Supervisor-Trigger"


def caller(request: web.Request) -> str:
    """Who asked: ``cli`` when the CLI says so, otherwise ``api``."""
    return "cli" if request.headers.get(TRIGGER_HEADER) == "cli" else "api"


def operator(request: web.Request, given: str | None) -> str:
    """The operator a record names: as given, or which kind of admin caller it was."""
    return given or f"admin token ({caller(request)})"


def check_requested_version(value: object) -> None:
    """A version no tag can be (too long, whitespace, other characters) is
    ``invalid_version`` on start and plan alike, before anything else is asked."""
    if not isinstance(value, str):
        return  # None is "the latest"; another type is the body model's 400
    if len(value) > MAX_VERSION_LENGTH:
        raise InvalidVersion(
            f"target_version: longer than {MAX_VERSION_LENGTH} characters ({len(value)})"
        )
    parse_requested_version(value)


async def start_update(request: web.Request) -> web.Response:
    """202 as soon as the run is journaled; progress is then polled or streamed."""
    data = await read_object(request)
    check_requested_version(data.get("target_version"))
    body = validated(data, StartRequest)
    record = await request.app[UPDATES].start(body, trigger=caller(request))
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


async def acknowledge_update(request: web.Request) -> web.Response:
    """200 with the record, ``acknowledged`` set (who, when, note); starts are allowed again."""
    body = await read_model(request, AcknowledgeRequest)
    update_id = checked_update_id(body.update_id)
    by = operator(request, body.operator)
    try:
        record = await request.app[UPDATES].acknowledge(update_id, by, body.note)
    except NotFound as err:
        err.details.setdefault("update_id", update_id)
        raise
    return reply(record.public())


async def version(request: web.Request) -> web.Response:
    """Current per service, latest release, ``last_result`` and ``running`` (the badge's data)."""
    info = await request.app[UPDATES].version_info()
    auto = await auto_apply_status(request.app)
    return reply({**info, "auto_apply": auto.model_dump(mode="json") if auto else None})


async def check_updates(request: web.Request) -> web.Response:
    """Ask the release source now instead of waiting for the periodic check."""
    data = await read_json(request)
    if data != {}:
        raise BadRequest("this endpoint takes no body (or {})")
    return reply(await request.app[UPDATES].check())


async def plan_update(request: web.Request) -> web.Response:
    target = request.query.get("target_version") or None
    check_requested_version(target)
    force = query_bool(request, "force")
    return reply(await request.app[UPDATES].plan(target, force))


async def update_history(request: web.Request) -> web.Response:
    high = request.app[OPTIONS].history_limit_max
    limit = query_int(request, "limit", default=50, low=1, high=high)
    runs = request.app[UPDATES].history(limit)
    return reply(HistoryPage(runs=list(runs)))
