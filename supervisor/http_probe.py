"""Plain HTTP the supervisor does besides the registry: health probes and release manifests.

One aiohttp session, handed in. A probe is a real request to the service
(``GET /health`` that exercises its dependencies), so a container that is
"healthy" by its own healthcheck but unreachable on the network is caught.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from supervisor.exceptions import HealthCheckFailed, InvalidVersion

MAX_MANIFEST_BYTES = 1024 * 1024


class HttpProber:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def _get(self, url: str, timeout: float) -> tuple[int, bytes]:
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as response:
                return response.status, await response.content.read(64 * 1024)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise HealthCheckFailed(f"probe {url} failed: {err or type(err).__name__}") from err

    async def check(self, url: str, expect_status: int, timeout: float) -> None:
        status, body = await self._get(url, timeout)
        if status != expect_status:
            raise HealthCheckFailed(
                f"probe {url} answered {status}, expected {expect_status}: "
                f"{body[:200].decode('utf-8', 'replace')}"
            )

    async def version(self, url: str, json_field: str, timeout: float) -> str:
        status, body = await self._get(url, timeout)
        try:
            data: Any = json.loads(body)
            value = data[json_field]
        except (ValueError, KeyError, TypeError) as err:
            raise HealthCheckFailed(
                f"version probe {url} ({status}) has no JSON field {json_field!r}"
            ) from err
        return str(value)


class ManifestSource:
    """The release manifest: an http(s) URL or a file the operator mounts."""

    def __init__(self, location: str, session: aiohttp.ClientSession) -> None:
        self._location = location
        self._session = session

    async def __call__(self) -> bytes:
        if not self._location.startswith(("http://", "https://")):
            return await asyncio.to_thread(Path(self._location).read_bytes)
        try:
            async with self._session.get(
                self._location, timeout=aiohttp.ClientTimeout(total=30)
            ) as response:
                if response.status != 200:
                    raise InvalidVersion(
                        f"release manifest {self._location} answered {response.status}"
                    )
                return await response.content.read(MAX_MANIFEST_BYTES)
        except (TimeoutError, aiohttp.ClientError) as err:
            raise InvalidVersion(f"release manifest {self._location} unreachable: {err}") from err
