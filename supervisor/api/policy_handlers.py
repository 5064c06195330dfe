"""``/admin/policy``: unattended updates as an operator sees and steers them.

``GET`` shows the effective policy (each value with its source: default, env, file or label),
whether auto-apply is frozen and why, the marks on versions and the recent decisions of the
periodic loop with their reasons. The ``POST`` endpoints skip/snooze/clear a version, lift the
freeze and reload the policy file; an invalid file is a 422 ``policy_invalid`` listing every
problem, and the policy in force stays.
"""

from __future__ import annotations

from aiohttp import web

from supervisor.exceptions import BadRequest, NotFound
from supervisor.policy.autopilot import Autopilot
from supervisor.update.release import parse_requested_version

from .body import query_int, read_json, read_model
from .keys import POLICY
from .reply import reply
from .schemas import UnfreezeRequest, VersionMarkRequest
from .update_handlers import operator

_KINDS = {"skip": "skipped", "snooze": "snoozed", "clear": "clear"}


def _policy(request: web.Request) -> Autopilot:
    if POLICY not in request.app:
        raise NotFound("unattended updates are not configured in this server")
    return request.app[POLICY]


async def policy_view(request: web.Request) -> web.Response:
    limit = query_int(request, "decisions", default=20, low=1, high=200)
    return reply(await _policy(request).view(limit))


async def mark_version(request: web.Request) -> web.Response:
    body = await read_model(request, VersionMarkRequest)
    parse_requested_version(body.version)  # 400 invalid_version for a non-version
    if body.action != "snooze" and body.hours is not None:
        raise BadRequest("hours: only a snooze takes hours")
    mark = await _policy(request).mark(
        body.version, _KINDS[body.action], operator(request, body.operator), body.note, body.hours
    )
    return reply({"version": body.version, "mark": mark.model_dump(mode="json") if mark else None})


async def unfreeze(request: web.Request) -> web.Response:
    body = await read_model(request, UnfreezeRequest)
    lifted = await _policy(request).unfreeze(operator(request, body.operator), body.note)
    return reply({"unfrozen": lifted.model_dump(mode="json")})


async def reload_policy(request: web.Request) -> web.Response:
    if await read_json(request) != {}:
        raise BadRequest("this endpoint takes no body (or {})")
    return reply(await _policy(request).reload())
