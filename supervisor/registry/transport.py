"""One authenticated, retried request to a registry; everything else builds on it.

::

    DistributionClient ──request(method, ref, url)──▶ Transport
        attempt:  Authorization from the cache → send → 401? answer the challenge → send again
                  → 2xx / a status the caller handles itself → Reply (body read, size-capped)
                  → anything else → a RegistryError subclass (errors.py)
        retries:  tenacity, a few attempts, for connection failures, 5xx, and 429 when
                  Retry-After fits under a cap; never for 401, 403, 404 or TLS failures

Bodies are read completely (with a byte cap) inside the attempt, so a reply
never holds a connection and a retry never sees a half-read stream.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from yarl import URL

from supervisor.exceptions import (
    RegistryAuthFailed,
    RegistryError,
    RegistryRateLimited,
    RegistryUnreachable,
)
from supervisor.reference import ImageReference
from supervisor.registry.auth import Authenticator, Authorization
from supervisor.registry.endpoints import Endpoint
from supervisor.registry.errors import connection_error, error_for_status

_LOGGER = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_ERROR_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer: status, headers and the whole (capped) body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: URL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all, exponential backoff, Retry-After up to a cap."""

    attempts: int = 3
    backoff: float = 0.5  # first wait in seconds, doubled per attempt
    max_backoff: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is reported, not waited for


class Transport:
    """Sends requests for one client; owns the session only if it created it."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        authenticator: Authenticator,
        *,
        timeout: float,
        user_agent: str,
        retry: RetryPolicy,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._auth = authenticator
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent
        self._retry = retry

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session in use, created on first use: aiohttp wants the running loop."""
        if self._closed:
            raise RuntimeError("registry client used after close()")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Close the session if it was created here (a passed-in one stays open)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._closed = True

    async def request(
        self,
        method: str,
        ref: ImageReference,
        endpoint: Endpoint,
        url: URL,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        passthrough: Collection[int] = (),
        max_bytes: int,
    ) -> Reply:
        """``method url`` for ``ref``'s repository; statuses in ``passthrough`` are returned.

        ``what`` names the object for error messages ("tag 1.2.0 of …").
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(
                    method, ref, endpoint, url, what, dict(headers or {}), passthrough, max_bytes
                )
        raise AssertionError("tenacity neither returned nor raised")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        ref: ImageReference,
        endpoint: Endpoint,
        url: URL,
        what: str,
        headers: dict[str, str],
        passthrough: Collection[int],
        max_bytes: int,
    ) -> Reply:
        scope = f"repository:{ref.repository}:pull"
        headers["User-Agent"] = self._user_agent
        sent = self._auth.cached(ref.registry, scope)
        reply = await self._send(method, ref, endpoint, url, headers, sent, max_bytes)
        if reply.status == 401:
            challenges = reply.headers.getall("WWW-Authenticate", [])
            sent = await self._auth.answer(
                self.session, endpoint, ref.repository, scope, challenges
            )
            reply = await self._send(method, ref, endpoint, url, headers, sent, max_bytes)
            if reply.status == 401:
                who = f"user {sent.username!r}" if sent.username else "anonymous access"
                raise RegistryAuthFailed(
                    f"registry {endpoint.describe()} refused {who} for {ref.repository} "
                    f"({what}); check the credentials configured for {ref.registry}",
                    registry=endpoint.describe(),
                    repository=ref.repository,
                    status=401,
                )
        if 200 <= reply.status < 300 or reply.status in passthrough:
            return reply
        raise error_for_status(
            reply.status, reply.headers, reply.body,
            registry=endpoint.describe(), repository=ref.repository, what=what,
        )  # fmt: skip

    async def _send(
        self,
        method: str,
        ref: ImageReference,
        endpoint: Endpoint,
        url: URL,
        headers: dict[str, str],
        authorization: Authorization | None,
        max_bytes: int,
    ) -> Reply:
        send_headers = dict(headers)
        if authorization is not None:
            send_headers["Authorization"] = authorization.header
        _LOGGER.debug("%s %s", method, url)
        try:
            async with self.session.request(
                method, url, headers=send_headers, timeout=self._timeout
            ) as response:
                body = await _read_capped(response, max_bytes, endpoint, ref)
                return Reply(response.status, response.headers, body, response.url)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise connection_error(
                err, registry=endpoint.describe(with_url=True), repository=ref.repository
            ) from err

    def _is_transient(self, err: BaseException) -> bool:
        if isinstance(err, RegistryRateLimited):
            retry_after = err.details.get("retry_after")
            return retry_after is None or retry_after <= self._retry.max_retry_after
        if isinstance(err, RegistryUnreachable):
            return not err.details.get("tls")
        if type(err) is RegistryError:
            status = err.details.get("status")
            return isinstance(status, int) and status >= 500
        return False

    def _wait(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        if isinstance(err, RegistryRateLimited) and err.details.get("retry_after") is not None:
            return float(err.details["retry_after"])
        backoff = self._retry.backoff * 2 ** (state.attempt_number - 1)
        return float(min(self._retry.max_backoff, backoff))

    def _log_retry(self, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        _LOGGER.warning(
            "%s; retrying in %.1f s (attempt %d of %d)",
            err, wait, state.attempt_number + 1, self._retry.attempts,
        )  # fmt: skip


async def _read_capped(
    response: aiohttp.ClientResponse, max_bytes: int, endpoint: Endpoint, ref: ImageReference
) -> bytes:
    """The whole body, refusing (before and while reading) more than ``max_bytes``.

    Error bodies are only explanations: they are cut at ``_ERROR_BODY_BYTES``.
    """
    if response.method == "HEAD":
        return b""
    is_error = not 200 <= response.status < 300
    limit = _ERROR_BODY_BYTES if is_error else max_bytes
    declared = response.content_length
    if not is_error and declared is not None and declared > max_bytes:
        raise _too_large(declared, max_bytes, endpoint, ref)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            if is_error:
                break
            raise _too_large(None, max_bytes, endpoint, ref)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(
    declared: int | None, max_bytes: int, endpoint: Endpoint, ref: ImageReference
) -> RegistryError:
    size = f"{declared} bytes" if declared is not None else "more"
    return RegistryError(
        f"registry {endpoint.describe()} sent {size} for {ref.repository}, larger than the "
        f"{max_bytes} bytes allowed; refusing it",
        registry=endpoint.describe(),
        repository=ref.repository,
        max_bytes=max_bytes,
    )
