"""Distribution API answers and aiohttp failures → the errors an operator reads.

::

    connection refused / DNS / timeout / TLS   → RegistryUnreachable   (retried, except TLS)
    401 after an auth attempt, or no creds     → RegistryAuthFailed    (auth.py, transport.py)
    403                                        → RegistryAuthFailed    "denied"
    404, MANIFEST_UNKNOWN, NAME_UNKNOWN, …     → ManifestNotFound
    429                                        → RegistryRateLimited   (retried, Retry-After)
    5xx                                        → RegistryError status  (retried)
    other 4xx                                  → RegistryError status

Every message names the registry host and repository (and the URL dialled
when an endpoint mapping applies) and never a credential. ``details`` carry
``registry``, ``repository`` and ``status`` for the API's error envelope and
for the retry decision in :mod:`supervisor.registry.transport`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from supervisor.exceptions import (
    ManifestNotFound,
    RegistryAuthFailed,
    RegistryError,
    RegistryRateLimited,
    RegistryUnreachable,
)

_NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "TAG_INVALID"})
_DENIED_CODES = frozenset({"DENIED"})


def error_codes(body: bytes) -> list[tuple[str, str]]:
    """``(code, message)`` pairs from a distribution error body (empty if there is none)."""
    try:
        document = json.loads(body) if body else None
    except ValueError:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return []
    return [
        (str(e.get("code", "")), str(e.get("message", "")))
        for e in document["errors"]
        if isinstance(e, dict)
    ]


def _explain(body: bytes) -> str:
    codes = error_codes(body)
    if codes:
        return "; ".join(f"{message} ({code})" if message else code for code, message in codes)
    text = body[:200].decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "no details"


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    registry: str,
    repository: str,
    what: str,
) -> RegistryError:
    """The exception for an unexpected answer to a request about ``what``.

    ``registry`` is the endpoint's description (host, and the mirror URL if any).
    """
    details: dict[str, Any] = {"registry": registry, "repository": repository, "status": status}
    codes = {code for code, _ in error_codes(body)}
    reason = _explain(body)
    if status == 404 or codes & _NOT_FOUND_CODES:
        if "NAME_UNKNOWN" in codes:
            message = f"repository {repository} does not exist on registry {registry}"
        else:
            message = f"{what} not found on registry {registry}"
        return ManifestNotFound(f"{message}: {reason}", **details)
    if status == 403 or codes & _DENIED_CODES:
        return RegistryAuthFailed(
            f"registry {registry} denied access to {repository} ({status}): {reason}; "
            "the configured credentials lack pull permission",
            **details,
        )
    if status == 401:
        return RegistryAuthFailed(
            f"registry {registry} refused access to {repository} (401): {reason}", **details
        )
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        hint = f"; it asks to retry after {retry_after:.0f} s" if retry_after is not None else ""
        return RegistryRateLimited(
            f"registry {registry} rate-limited requests for {repository} (429){hint}",
            retry_after=retry_after,
            **details,
        )
    if status >= 500:
        return RegistryError(
            f"registry {registry} failed on {what} ({status}): {reason}", **details
        )
    return RegistryError(
        f"registry {registry} refused the request for {what} ({status}): {reason}", **details
    )


def connection_error(err: BaseException, *, registry: str, repository: str) -> RegistryError:
    """The exception for a request that got no HTTP answer at all."""
    details = {"registry": registry, "repository": repository}
    if isinstance(err, aiohttp.ClientSSLError):
        return RegistryUnreachable(
            f"TLS with registry {registry} failed: {err}; if it serves plain http, list it in "
            "the insecure registries or map it to an http:// endpoint",
            tls=True,
            **details,
        )
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return RegistryUnreachable(
            f"registry {registry} did not answer in time (timed out)", **details
        )
    reason = err.os_error if isinstance(err, aiohttp.ClientConnectorError) else err
    return RegistryUnreachable(
        f"cannot reach registry {registry}: {reason or type(err).__name__}", **details
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
