"""The endpoints a monitoring system calls: ``/healthz`` (no token) and ``/metrics``."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from supervisor.exceptions import NoUpdate, SupervisorError
from supervisor.update.models import RunRecord

from .keys import METRICS, METRICS_REGISTRY, SNAPSHOTS, UPDATES
from .metrics import HISTORY_WINDOW
from .reply import reply
from .schemas import Health

_LOGGER = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """The process serves requests; says nothing about the stack (no token, no secrets)."""
    return reply(Health())


async def metrics_handler(request: web.Request) -> web.Response:
    """Refresh from the history and the snapshot store, then render the app's registry."""
    updates = request.app[UPDATES]
    runs = updates.history(HISTORY_WINDOW)
    try:
        current: RunRecord | None = updates.status()
    except NoUpdate:
        current = None
    try:
        manifests = [m.model_dump(mode="json") for m in await request.app[SNAPSHOTS].list()]
    except SupervisorError as err:  # a broken backups mount must not hide the run metrics
        _LOGGER.warning("snapshot metrics skipped: %s", err.message)
        manifests = []
    request.app[METRICS].refresh(runs, current, manifests)
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
