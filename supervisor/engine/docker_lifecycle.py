"""Convergent lifecycle steps: *ensure* stopped, *ensure* running.

Why they exist: a sidecar killed with SIGKILL in the middle of
``POST /containers/{id}/stop`` leaves that stop running inside the engine (the
daemon finishes it: stop signal, wait, SIGKILL) with no client left to hear the
end. Inspect data cannot show a stop in flight (the container stays
``running`` until its process exits), so a recovery that "starts" such a
container does nothing, and the dead client's stop kills it moments later
(observed: the app ended ``exited (137)`` and the run ``needs_intervention``).

- :func:`ensure_stopped` issues its own stop. On a container that is already
  stopping, the engine's stop sends the stop signal again and blocks until the
  process has exited (the daemon waits for "not running", then SIGKILLs after
  the timeout), so when it returns no stop is in flight any more. An already
  stopped container answers 304: nothing to do.
- :func:`ensure_running` starts the container if it is not running, then watches
  it for a settle period and starts it again, with backoff, if it died, until a
  deadline. A caller that cannot rule out a stop still in flight (it is
  recovering from a crash inside ``stop``, ``recreate`` or a rollback) passes
  ``stop_timeout``: the container is first brought to a settled stop, so the
  start that follows cannot be undone by a stale request.

Both are idempotent: running them twice, or after a crash half-way, converges.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from supervisor.engine.docker_errors import engine_call
from supervisor.engine.models import ServiceContainer
from supervisor.exceptions import EngineConflict, EngineError, EngineNotFound, ProxyForbidden

if TYPE_CHECKING:
    from supervisor.engine.docker_engine import DockerEngine

_LOGGER = logging.getLogger(__name__)
REMOVE_ATTEMPTS = 5
# Extra time past the stop timeout for the engine to deliver SIGKILL and reap.
STOP_GRACE_SECONDS = 15.0
SETTLE_SECONDS = 2.0


class _NotSettled(Exception):
    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__(f"container is {state.get('Status')}")
        self.state = state


def _worth_retrying(err: BaseException) -> bool:
    """Transient engine trouble and "not there yet"; never a missing container or a refusal."""
    if isinstance(err, _NotSettled):
        return True
    return isinstance(err, EngineError) and not isinstance(err, EngineNotFound | ProxyForbidden)


def _running(state: dict[str, Any]) -> bool:
    return bool(state.get("Running")) and not state.get("Restarting")


async def ensure_stopped(engine: DockerEngine, container_id: str, timeout: float) -> None:
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(timeout + STOP_GRACE_SECONDS),
            wait=wait_exponential(multiplier=0.5, max=5),
            retry=retry_if_exception(_worth_retrying),
            reraise=True,
        ):
            with attempt:
                data = await engine.inspect_container(container_id)
                if data["State"].get("Running") or data["State"].get("Restarting"):
                    # Blocks until the container has exited, also when another
                    # (possibly dead) client's stop is already in progress.
                    await engine.stop(container_id, timeout)
                    data = await engine.inspect_container(container_id)
                    if data["State"].get("Running"):
                        raise _NotSettled(data["State"])
    except EngineNotFound:
        return  # gone is as stopped as it gets
    except _NotSettled as err:
        raise EngineError(
            f"container {container_id[:12]} is still {err.state.get('Status')} "
            f"{timeout + STOP_GRACE_SECONDS:g} s after asking it to stop"
        ) from None


async def ensure_running(
    engine: DockerEngine,
    container_id: str,
    timeout: float,
    *,
    stop_timeout: float | None,
    settle: float,
) -> ServiceContainer:
    if stop_timeout is not None:
        await ensure_stopped(engine, container_id, stop_timeout)
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.5, max=5),
            retry=retry_if_exception(_worth_retrying),
        ):
            with attempt:
                await _start_and_settle(engine, container_id, settle)
    except RetryError as err:
        last = err.last_attempt.exception()
        if isinstance(last, _NotSettled):
            state = last.state
            raise EngineError(
                f"container {container_id[:12]} did not stay running within {timeout:g} s: "
                f"{state.get('Status')} (exit code {state.get('ExitCode')})",
                logs=await engine.logs_tail(container_id),
            ) from None
        assert last is not None
        raise last from None
    return await engine.container(container_id)


async def _start_and_settle(engine: DockerEngine, container_id: str, settle: float) -> None:
    data = await engine.inspect_container(container_id)
    if not _running(data["State"]) and not data["State"].get("Restarting"):
        _LOGGER.info("starting %s (%s)", data["Name"].lstrip("/"), data["State"].get("Status"))
        await engine.start(container_id)
    if settle > 0:
        await asyncio.sleep(settle)
    data = await engine.inspect_container(container_id)
    if not _running(data["State"]):
        raise _NotSettled(data["State"])


async def remove_with_volumes(engine: DockerEngine, container_id: str) -> None:
    """Remove a container and its anonymous volumes; gone already is fine, a removal in
    progress is waited for (the rehearsal's containers, the siblings)."""
    for attempt in range(REMOVE_ATTEMPTS):
        try:
            async with engine_call(f"removing container {container_id[:12]}", engine.url):
                await engine.client.containers.container(container_id).delete(force=True, v=True)
            return
        except EngineNotFound:
            return
        except EngineConflict:  # "removal already in progress": wait for it
            if attempt == REMOVE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
