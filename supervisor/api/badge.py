"""The last result in one glance: ``/admin/badge.json`` and a hand-drawn ``/admin/badge.svg``.

The same :func:`last_result` fills ``last_result`` in ``GET /admin/version`` (CanopyOS: "surface
last update result in /admin/version for UI badge"), so the badge and the version page never
disagree.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from supervisor.exceptions import NoUpdate
from supervisor.update.protocol import UpdateService

from .keys import UPDATES
from .reply import reply
from .schemas import Badge, LastResult

COLOURS = {
    "completed": "#4c1",  # green
    "rolled_back": "#fe7d37",  # orange: the stack is back on the old version, data intact
    "failed": "#e05d44",  # red
    "needs_intervention": "#e05d44",
    "running": "#007ec6",  # blue
    "cancelled": "#9f9f9f",
    "none": "#9f9f9f",  # grey
}
COLOUR_NAMES = {"#4c1": "green", "#fe7d37": "orange", "#e05d44": "red", "#007ec6": "blue"}
MESSAGES = {
    "completed": "up to date",
    "rolled_back": "rolled back",
    "failed": "failed",
    "needs_intervention": "needs intervention",
    "running": "running",
    "cancelled": "cancelled",
    "none": "never run",
}


def last_result(updates: UpdateService) -> LastResult:
    try:
        record = updates.status()
    except NoUpdate:
        return LastResult(state="none")
    if record.state.finished:
        state = str(record.result or record.state)
        time = record.finished_at or record.started_at
    else:
        state, time = "running", record.started_at
    return LastResult.model_validate(
        {
            "update_id": record.update_id,
            "state": state,
            "version": record.target_version,
            "time": time,
        }
    )


def badge(updates: UpdateService) -> Badge:
    result = last_result(updates)
    colour = COLOURS[result.state]
    message = MESSAGES[result.state]
    if result.version and result.state != "none":
        message = f"{result.version} {message}"
    return Badge(**result.model_dump(), message=message, color=COLOUR_NAMES.get(colour, "grey"))


async def badge_json(request: web.Request) -> web.Response:
    return reply(badge(request.app[UPDATES]))


async def badge_svg(request: web.Request) -> web.Response:
    return web.Response(
        text=render_svg(badge(request.app[UPDATES])),
        content_type="image/svg+xml",
        headers={"Cache-Control": "no-cache"},
    )


def render_svg(data: Badge) -> str:
    """A flat two-part badge; widths estimated at ~7 px per character (no font metrics)."""
    colour = COLOURS[data.state]
    label, message = escape(data.label), escape(data.message)
    left, right = 10 + 7 * len(data.label), 10 + 7 * len(data.message)
    width = left + right
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label}: {message}"><title>{label}: {message}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        'font-size="11">'
        f'<text x="{left / 2}" y="14">{label}</text>'
        f'<text x="{left + right / 2}" y="14">{message}</text></g></svg>'
    )
