"""``supervisor serve``: the sidecar process.

Loads and checks the settings (refusing to start on any problem, each named), opens the
object graph (:func:`supervisor.services.build_runtime`: the network clients live exactly as
long as this ``async with``), serves the API and runs the serving lifetime (recovery, periodic
check) through the app's ``cleanup_ctx``, until SIGTERM or SIGINT; then shuts down gracefully:
open SSE streams end, in-flight requests finish (up to ``SHUTDOWN_TIMEOUT``), background jobs
are cancelled, the lifetime is left, and only then are the clients closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress

from aiohttp import web
from prometheus_client import CollectorRegistry

from supervisor.api import create_app
from supervisor.config import Settings, check_directories, check_files
from supervisor.exceptions import ConfigError, SupervisorError
from supervisor.policy.autopilot import Autopilot
from supervisor.statedir import warn_if_exposed

from .context import CliContext
from .exit_codes import ExitCode

_LOGGER = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT = 30.0  # Docker's stop grace period must be longer (stop_grace_period: 40s)


async def serve(ctx: CliContext) -> int:
    settings = ctx.settings()
    logging.basicConfig(
        level=settings.log_level.value, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.admin_token is None:
        raise ConfigError(
            "SUPERVISOR_ADMIN_TOKEN: is required to serve the API — set it, or "
            "SUPERVISOR_ADMIN_TOKEN_FILE (generate one with `openssl rand -hex 32`)"
        )
    check_directories(settings)
    check_files(settings)
    warn_if_exposed([settings.state_dir, settings.backup_dir])  # logged, not refused
    async with ctx.runtime(settings) as runtime:
        metrics = CollectorRegistry()
        metrics.register(runtime.notifier.metrics())
        app = create_app(
            settings,
            runtime.manager,
            runtime.snapshots,
            lifespans=[runtime.serving],
            stack_lock=runtime.stack_lock,
            damage=runtime.damage,
            policy=runtime.autopilot,
            metrics_registry=metrics,
        )
        _reload_on_sighup(runtime.autopilot)
        await run_app(app, settings)
    return ExitCode.OK


def _reload_on_sighup(autopilot: Autopilot) -> None:
    """``kill -HUP``: re-read the policy file; an invalid one keeps the policy in force."""
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await autopilot.reload()
        except SupervisorError as err:
            _LOGGER.error("policy reload refused: %s", err.message)

    def on_hup() -> None:
        task = asyncio.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with suppress(NotImplementedError, RuntimeError):  # not the main thread, or Windows
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)


async def run_app(
    app: web.Application, settings: Settings, stop: asyncio.Event | None = None
) -> None:
    """Serve ``app`` until ``stop`` is set (by SIGTERM/SIGINT when not given)."""
    stop = stop or _stop_on_signals()
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.listen_host, settings.listen_port)
        await site.start()
        _LOGGER.info("serving on %s:%s", settings.listen_host, settings.listen_port)
        await stop.wait()
        _LOGGER.info("shutting down")
    finally:
        await runner.cleanup()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):  # not the main thread, or Windows
            loop.add_signal_handler(sig, stop.set)
    return stop
