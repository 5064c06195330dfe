"""aiodocker's errors, translated into ours at the adapter edge.

One place decides what an engine failure *means* for an operator: a path the
docker-proxy does not grant, an engine that does not answer, a missing or
conflicting object. Pull failures arrive as text from the engine and are
classified as registry errors where the text says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiodocker
import aiohttp

from supervisor.exceptions import (
    EngineConflict,
    EngineError,
    EngineNotFound,
    EngineUnreachable,
    ManifestNotFound,
    ProxyForbidden,
    RegistryAuthFailed,
    RegistryError,
    RegistryRateLimited,
    RegistryUnreachable,
    SupervisorError,
)

# aiodocker reports a refused connection as this made-up status.
_AIODOCKER_CONNECTION_STATUS = 900


def translate(action: str, err: aiodocker.DockerError, engine_url: str) -> SupervisorError:
    """The error an operator should see when ``action`` failed with ``err``."""
    message = err.message.strip() if isinstance(err.message, str) else str(err.message)
    if err.status == _AIODOCKER_CONNECTION_STATUS:
        return EngineUnreachable(f"{action}: the Docker engine at {engine_url} does not answer")
    if err.status == 403:
        return ProxyForbidden(
            f"{action}: the docker-proxy at {engine_url} refused the request ({message}); "
            "grant the section this needs (see docs/security.md) or check DOCKER_HOST"
        )
    if err.status == 404:
        return EngineNotFound(f"{action}: {message}")
    if err.status == 409:
        return EngineConflict(f"{action}: {message}")
    return EngineError(f"{action}: the engine answered {err.status}: {message}")


def translate_pull(image: str, message: str) -> SupervisorError:
    """Classify the engine's text for a failed pull."""
    text = message.lower()
    where = f"pulling {image}"
    if "toomanyrequests" in text or "rate limit" in text:
        return RegistryRateLimited(f"{where}: the registry is rate limiting: {message}")
    if "unauthorized" in text or "denied" in text or "authentication required" in text:
        return RegistryAuthFailed(
            f"{where}: the registry refused the credentials (or none were given): {message}"
        )
    if "not found" in text or "manifest unknown" in text or "unknown:" in text:
        return ManifestNotFound(f"{where}: the registry has no such image: {message}")
    if "connection refused" in text or "no such host" in text or "timeout" in text:
        return RegistryUnreachable(f"{where}: the engine cannot reach the registry: {message}")
    return RegistryError(f"{where}: {message}")


@asynccontextmanager
async def engine_call(action: str, engine_url: str) -> AsyncIterator[None]:
    """Run a block of aiodocker calls, translating whatever they raise."""
    try:
        yield
    except aiodocker.DockerError as err:
        raise translate(action, err, engine_url) from err
    except (aiohttp.ClientError, OSError) as err:
        raise EngineUnreachable(f"{action}: lost the Docker engine at {engine_url}: {err}") from err
    except TimeoutError as err:
        raise EngineUnreachable(f"{action}: the Docker engine at {engine_url} timed out") from err
