"""The aiohttp application: the route table, the middlewares and the lifetimes.

::

    request ─▶ error ─▶ auth ─▶ strict_query ─▶ handler ─▶ UpdateService / Snapshots
             (one envelope) (bearer) (known params)  (strict body, data out)

:data:`ROUTES` is the single list of endpoints: their method, path, handler, the token
scope they need and the query parameters they accept. ``create_app`` registers them and
records the policies for the middlewares; ``openapi.py`` documents the same paths (a test
keeps both in step).

Lifetimes go through ``cleanup_ctx``: the job registry (its tasks are cancelled at shutdown)
and any context the caller hands in (``lifespans``: the update manager's recovery and periodic
check, :meth:`supervisor.services.Runtime.serving`), entered in order at start-up and left in
reverse at shutdown. The network clients are not among them: they belong to the object graph
(:func:`supervisor.services.build_runtime`), which outlives the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from supervisor.config import Settings
from supervisor.damage import DamageReport
from supervisor.oplock import StackLock
from supervisor.policy.autopilot import Autopilot
from supervisor.snapshots.protocol import Snapshots
from supervisor.update.protocol import UpdateService

from . import (
    badge,
    observability,
    openapi,
    policy_handlers,
    snapshot_handlers,
    sse,
    update_handlers,
)
from .auth import auth_middleware
from .const import Scope
from .jobs import JobRegistry
from .keys import (
    JOBS,
    LIFECYCLE,
    METRICS,
    METRICS_REGISTRY,
    OPTIONS,
    POLICY,
    ROUTE_POLICIES,
    SETTINGS,
    SNAPSHOTS,
    STACK_LOCK,
    UPDATES,
    ApiOptions,
    Lifecycle,
    RoutePolicy,
)
from .metrics import DamageMetrics, RunMetrics
from .middleware import error_middleware, strict_query_middleware

Lifespan = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    scope: Scope
    query: tuple[str, ...] = ()


_ID, _PLAN, _LIMIT = ("update_id",), ("target_version", "force"), ("limit",)
ROUTES: tuple[Route, ...] = (
    # the CanopyOS contract
    Route("POST", "/admin/update/start", update_handlers.start_update, Scope.ADMIN),
    Route("GET", "/admin/update/status", update_handlers.update_status, Scope.READ, _ID),
    Route("GET", "/admin/update/stream", sse.stream_update, Scope.READ, _ID),
    Route("POST", "/admin/update/cancel", update_handlers.cancel_update, Scope.ADMIN),
    Route("GET", "/admin/version", update_handlers.version, Scope.READ),
    Route("POST", "/admin/update/acknowledge", update_handlers.acknowledge_update, Scope.ADMIN),
    # beyond it
    Route("POST", "/admin/update/check", update_handlers.check_updates, Scope.ADMIN),
    Route("GET", "/admin/update/plan", update_handlers.plan_update, Scope.READ, _PLAN),
    Route("GET", "/admin/update/history", update_handlers.update_history, Scope.READ, _LIMIT),
    Route("GET", "/admin/snapshots", snapshot_handlers.list_snapshots, Scope.READ),
    Route("POST", "/admin/snapshots", snapshot_handlers.create_snapshot, Scope.ADMIN),
    Route("GET", "/admin/snapshots/{snapshot_id}", snapshot_handlers.get_snapshot, Scope.READ),
    Route(
        "POST",
        "/admin/snapshots/{snapshot_id}/restore",
        snapshot_handlers.restore_snapshot,
        Scope.ADMIN,
    ),
    Route("GET", "/admin/jobs/{job_id}", snapshot_handlers.get_job, Scope.READ),
    Route("GET", "/admin/policy", policy_handlers.policy_view, Scope.READ, ("decisions",)),
    Route("POST", "/admin/policy/versions", policy_handlers.mark_version, Scope.ADMIN),
    Route("POST", "/admin/policy/unfreeze", policy_handlers.unfreeze, Scope.ADMIN),
    Route("POST", "/admin/policy/reload", policy_handlers.reload_policy, Scope.ADMIN),
    Route("GET", "/admin/badge.json", badge.badge_json, Scope.READ),
    Route("GET", "/admin/badge.svg", badge.badge_svg, Scope.READ),
    Route("GET", "/metrics", observability.metrics_handler, Scope.READ),
    Route("GET", "/healthz", observability.healthz, Scope.PUBLIC),
    Route("GET", "/openapi.json", openapi.openapi_json, Scope.PUBLIC),
)


def create_app(
    settings: Settings,
    updates: UpdateService,
    snapshots: Snapshots,
    *,
    metrics_registry: CollectorRegistry | None = None,
    options: ApiOptions | None = None,
    lifespans: Sequence[Lifespan] = (),
    stack_lock: StackLock | None = None,
    damage: DamageReport | None = None,
    policy: Autopilot | None = None,
) -> web.Application:
    """The API around the given services.

    ``stack_lock``: the cross-process lock that HTTP restores and manual snapshots hold
    (without one they only check the in-process update). ``damage``: damaged state files
    found by the stores, exported as ``supervisor_state_damaged_total``.

    ``metrics_registry``: the Prometheus registry ``/metrics`` collects from (a fresh one when
    None; never the global default one); the run and snapshot metrics are registered in it.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware, auth_middleware, strict_query_middleware],
    )
    app[SETTINGS] = settings
    app[UPDATES] = updates
    app[SNAPSHOTS] = snapshots
    app[OPTIONS] = options or ApiOptions()
    app[LIFECYCLE] = Lifecycle()
    app[METRICS_REGISTRY] = (
        metrics_registry if metrics_registry is not None else CollectorRegistry()
    )
    app[METRICS] = RunMetrics()
    app[METRICS_REGISTRY].register(app[METRICS])
    if damage is not None:
        app[METRICS_REGISTRY].register(DamageMetrics(damage))
    if stack_lock is not None:
        app[STACK_LOCK] = stack_lock
    if policy is not None:
        app[POLICY] = policy
    app[JOBS] = JobRegistry()
    policies: dict[tuple[str, str], RoutePolicy] = {}
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        policies[(route.method, route.path)] = RoutePolicy(route.scope, frozenset(route.query))
    app[ROUTE_POLICIES] = policies
    app.cleanup_ctx.append(_jobs_context)
    for lifespan in lifespans:
        app.cleanup_ctx.append(_entered(lifespan))
    app.on_shutdown.append(_closing)
    return app


async def _jobs_context(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[JOBS].close()


def _entered(lifespan: Lifespan) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with lifespan():
            yield

    return context


async def _closing(app: web.Application) -> None:
    """Shutdown began: open SSE streams end now instead of at the shutdown timeout."""
    app[LIFECYCLE].closing.set()
