"""The last result in one glance: ``/admin/badge.json`` and a hand-drawn ``/admin/badge.svg``.

Both are drawn from :func:`supervisor.update.summary.run_summary`, the function that also fills
``last_result`` and ``running`` in ``GET /admin/version`` (CanopyOS: "surface last update
result in /admin/version for UI badge"); ``badge.json`` carries those two objects unchanged, so
the badge and the version page never disagree. The badge shows the active run when there is
one, else the last result.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from supervisor.update.summary import RunSummary, run_summary

from .keys import POLICY, UPDATES
from .reply import reply
from .schemas import AutoApplyStatus, Badge, BadgeState

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


async def auto_apply_status(app: web.Application) -> AutoApplyStatus | None:
    if POLICY not in app:
        return None
    return AutoApplyStatus.model_validate(await app[POLICY].summary())


async def badge(app: web.Application) -> Badge:
    return badge_of(run_summary(app[UPDATES]), await auto_apply_status(app))


def badge_of(summary: RunSummary, auto: AutoApplyStatus | None = None) -> Badge:
    running, last = summary.running, summary.last_result
    state: BadgeState
    if running is not None:
        state, version, time = "running", running.target_version, running.started_at
        update_id = running.update_id
    elif last is not None:
        state, version, time = last.state, last.target_version, last.finished_at
        update_id = last.update_id
    else:
        state, version, time, update_id = "none", None, None, None
    message = MESSAGES[state]
    if version and state != "none":
        message = f"{version} {message}"
    if summary.blocked is not None and running is None:
        message = f"{message}: updates blocked until acknowledged"
    elif state == "needs_intervention":
        message = f"{message} (acknowledged)"
    if auto is not None and auto.frozen is not None and running is None:
        message = f"{message}; auto-apply frozen"
    return Badge(
        state=state,
        version=version,
        time=time,
        update_id=update_id,
        message=message,
        color=COLOUR_NAMES.get(COLOURS[state], "grey"),
        last_result=last,
        running=running,
        blocked=summary.blocked,
        auto_apply=auto,
    )


async def badge_json(request: web.Request) -> web.Response:
    return reply(await badge(request.app))


async def badge_svg(request: web.Request) -> web.Response:
    return web.Response(
        text=render_svg(await badge(request.app)),
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
