"""The health gate: healthy, then *stable* for a window.

Docker's own health status is necessary but not sufficient: a version that
passes its first checks and crashes a few seconds later (the fake app's 1.4.0)
would pass a gate that only waits for ``healthy``. So after ``healthy`` the
container must stay healthy, running and un-restarted for the stability window.
A container without a healthcheck counts as healthy while it runs.

The gate fails fast: ``unhealthy`` is Docker's own verdict (the image's
healthcheck failed ``retries`` times in a row after its start period), and an
exited, dead or restarting container will not become healthy by waiting, so
any of these raises at the next poll instead of after ``timeout``. Only
``starting`` is waited for. (Before this, every bad release waited the whole
``health_timeout`` before its rollback began.)
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_fixed,
)

from supervisor.engine.models import ServiceContainer
from supervisor.exceptions import HealthCheckFailed

if TYPE_CHECKING:
    from supervisor.engine.docker_engine import DockerEngine

POLL_SECONDS = 0.5


class _NotYetHealthy(Exception):
    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__("not healthy yet")
        self.state = state


class _Unhealthy(_NotYetHealthy):
    """Docker's verdict, not a phase: never retried."""


def _health_log(state: dict[str, Any]) -> str:
    entries = (state.get("Health") or {}).get("Log") or []
    return entries[-1].get("Output", "").strip()[-500:] if entries else ""


async def wait_healthy(
    engine: DockerEngine, container_id: str, timeout: float, stability_window: float
) -> ServiceContainer:
    first = await engine.inspect_container(container_id)
    name = first["Name"].lstrip("/")
    baseline = (int(first.get("RestartCount", 0)), first["State"].get("StartedAt"))
    started = time.monotonic()

    async def check() -> dict[str, Any]:
        data = await engine.inspect_container(container_id)
        state: dict[str, Any] = data["State"]
        if (int(data.get("RestartCount", 0)), state.get("StartedAt")) != baseline:
            raise HealthCheckFailed(
                f"{name} restarted (restart count {data.get('RestartCount')}, "
                f"last exit code {state.get('ExitCode')})",
                logs=await engine.logs_tail(container_id),
            )
        if state.get("Restarting") or not state.get("Running"):
            raise HealthCheckFailed(
                f"{name} is {state.get('Status')} (exit code {state.get('ExitCode')})",
                logs=await engine.logs_tail(container_id),
            )
        health = (state.get("Health") or {}).get("Status")
        if health == "unhealthy":
            raise _Unhealthy(state)
        if health not in (None, "healthy"):
            raise _NotYetHealthy(state)
        return state

    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(POLL_SECONDS),
            retry=retry_if_exception_type(_NotYetHealthy) & retry_if_not_exception_type(_Unhealthy),
        ):
            with attempt:
                await check()
    except _Unhealthy as err:
        raise HealthCheckFailed(
            f"{name} is unhealthy after {time.monotonic() - started:.0f} s (Docker's "
            f"verdict; last check: {_health_log(err.state)!r})",
            logs=await engine.logs_tail(container_id),
        ) from None
    except RetryError as err:
        last = err.last_attempt.exception()
        state = last.state if isinstance(last, _NotYetHealthy) else {}
        raise HealthCheckFailed(
            f"{name} not healthy after {timeout:g} s (health "
            f"{(state.get('Health') or {}).get('Status')}; last check: {_health_log(state)!r})",
            logs=await engine.logs_tail(container_id),
        ) from err

    deadline = time.monotonic() + stability_window
    while time.monotonic() < deadline:
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        try:
            await check()
        except _NotYetHealthy as err:
            raise HealthCheckFailed(
                f"{name} turned {(err.state.get('Health') or {}).get('Status')} during the "
                f"{stability_window:g} s stability window: {_health_log(err.state)!r}",
                logs=await engine.logs_tail(container_id),
            ) from None
    return await engine.container(container_id)
