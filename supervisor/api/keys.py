"""Typed application state: everything a handler reaches through ``request.app[...]``.

``create_app`` fills every key; handlers never look anything up by string, so a missing or
mistyped dependency is a mypy error rather than a ``KeyError`` at request time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from supervisor.config import Settings
from supervisor.oplock import StackLock
from supervisor.policy.autopilot import Autopilot
from supervisor.snapshots.protocol import Snapshots
from supervisor.update.protocol import UpdateService

from .const import Scope
from .jobs import JobRegistry
from .metrics import RunMetrics


@dataclass(frozen=True)
class ApiOptions:
    """Knobs that are not operator settings; tests shorten the keep-alive."""

    sse_keepalive: float = 15.0  # seconds between ``: keep-alive`` comments on idle streams
    history_limit_max: int = 1000


@dataclass
class Lifecycle:
    """Set when the server begins shutting down, so open SSE streams end at once instead of
    holding the graceful-shutdown timeout."""

    closing: asyncio.Event = field(default_factory=asyncio.Event)


SETTINGS = web.AppKey("settings", Settings)
UPDATES = web.AppKey[UpdateService]("updates")
SNAPSHOTS = web.AppKey[Snapshots]("snapshots")
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
METRICS = web.AppKey("run_metrics", RunMetrics)
JOBS = web.AppKey("jobs", JobRegistry)
OPTIONS = web.AppKey("options", ApiOptions)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
# Only when create_app is given one (the served sidecar); HTTP restore and manual snapshots
# hold it, so they exclude a CLI restore in another process and the update run.
STACK_LOCK = web.AppKey("stack_lock", StackLock)
# Unattended updates: decisions, marks, freeze, the effective policy and its reload.
POLICY = web.AppKey("policy", Autopilot)


@dataclass(frozen=True)
class RoutePolicy:
    """What a route accepts: the token scope it needs and its query parameters."""

    scope: Scope
    query: frozenset[str] = frozenset()


# (method, canonical path) → policy; filled from the route table, read by the middlewares.
ROUTE_POLICIES = web.AppKey("route_policies", dict[tuple[str, str], RoutePolicy])


def route_policy(request: web.Request) -> RoutePolicy:
    """The matched route's policy; a route missing from the table needs admin (fail closed)."""
    route = request.match_info.route
    resource = route.resource
    key = (route.method, resource.canonical) if resource is not None else None
    policies = request.app[ROUTE_POLICIES]
    return policies.get(key, RoutePolicy(Scope.ADMIN)) if key else RoutePolicy(Scope.ADMIN)
