"""The async client a backend (or the CLI) uses to drive the sidecar.

::

    async with SupervisorClient("http://supervisor:8080", token) as sidecar:
        accepted = await sidecar.start(target_version="1.4.2")
        async for event in sidecar.follow(accepted.update_id):
            ...                                   # phase / progress / log, then result
        record = await sidecar.status(accepted.update_id)

Retries: reads (and ``cancel``, which is safe to repeat) are retried on connection errors
with exponential back-off (tenacity). ``start`` is **never** retried: a start whose answer was
lost may have started a run, and a second start would at best be refused as ``update_running``
and at worst start another one; the caller decides (``status()`` tells). ``follow``
reconnects with ``Last-Event-ID`` after a dropped stream, so no event is lost or repeated.
Refusals raise the package's exceptions (see ``_errors.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any, Self

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from supervisor.api.schemas import HistoryPage, Job, StartResponse
from supervisor.update.models import RunEvent, RunRecord, StartRequest

from ._errors import SidecarUnreachable, error_from_answer
from ._sse import SSEParser

_LOGGER = logging.getLogger(__name__)

CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class SupervisorClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 0.5,
        stream_idle_timeout: float = 60.0,
        trigger: str | None = None,
    ) -> None:
        """``stream_idle_timeout``: longer than the server's keep-alive interval (15 s);
        a silent stream past it is treated as dropped and reconnected."""
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        if trigger:
            self._headers["X-Supervisor-Trigger"] = trigger
        self._session, self._owns_session = session, session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_read=stream_idle_timeout)
        self._attempts, self._backoff = attempts, backoff

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:  # never shows the token
        return f"SupervisorClient({self.base_url!r})"

    # --- the CanopyOS contract -------------------------------------------------------
    async def start(
        self, target_version: str | None = None, channel: str | None = None, force: bool = False
    ) -> StartResponse:
        """Start an update; never retried (see the module docstring)."""
        body = StartRequest.model_validate(
            {"target_version": target_version, "channel": channel, "force": force}
        ).model_dump(exclude_none=True)
        data = await self._call("POST", "/admin/update/start", json=body, retry=False)
        return StartResponse.model_validate(data)

    async def status(self, update_id: str | None = None) -> RunRecord:
        params = {"update_id": update_id} if update_id else None
        return RunRecord.model_validate(await self._call("GET", "/admin/update/status", params))

    async def cancel(self, update_id: str) -> RunRecord:
        data = await self._call("POST", "/admin/update/cancel", json={"update_id": update_id})
        return RunRecord.model_validate(data)

    async def acknowledge(
        self, update_id: str, note: str = "", operator: str | None = None
    ) -> RunRecord:
        """Take over a ``needs_intervention`` run (admin); never retried."""
        body: dict[str, Any] = {"update_id": update_id, "note": note}
        if operator:
            body["operator"] = operator
        data = await self._call("POST", "/admin/update/acknowledge", json=body, retry=False)
        return RunRecord.model_validate(data)

    async def version(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/admin/version"))

    async def follow(
        self, update_id: str | None = None, after: int | None = None
    ) -> AsyncIterator[RunEvent]:
        """The run's events from after ``after`` (the start when None) to its ``result``.

        Leaving early? Close it (``contextlib.aclosing``) so the connection is released now
        rather than when the generator is garbage-collected.
        """
        if update_id is None:
            update_id = (await self.status()).update_id
        last, drops = after, 0
        while True:
            try:
                async with aclosing(self._stream_once(update_id, last)) as stream:
                    async for event in stream:
                        last, drops = event.id, 0
                        yield event
                        if event.event == "result":
                            return
            except CONNECTION_ERRORS as err:
                drops += 1
                if drops >= self._attempts:
                    raise SidecarUnreachable(f"the event stream keeps dropping: {err!r}") from err
                _LOGGER.info("stream of %s dropped (%r); resuming after %s", update_id, err, last)
                await asyncio.sleep(min(10.0, self._backoff * drops))
                continue
            # Closed without a result: either the run ended before ``last`` (nothing more to
            # send) or the server is shutting down mid-run (reconnect and resume).
            if (await self.status(update_id)).state.finished:
                return
            drops += 1  # e.g. a proxy closing long streams: keep resuming, slower
            await asyncio.sleep(min(10.0, self._backoff * drops))

    async def wait_for_result(self, update_id: str) -> RunRecord:
        """Follow the run to its end and return its final record."""
        async for _event in self.follow(update_id):
            pass
        return await self.status(update_id)

    # --- beyond the contract ---------------------------------------------------------
    async def check(self) -> dict[str, Any]:
        return dict(await self._call("POST", "/admin/update/check"))  # idempotent

    async def plan(self, target_version: str | None = None, force: bool = False) -> dict[str, Any]:
        params = {"force": "true" if force else "false"}
        if target_version:
            params["target_version"] = target_version
        return dict(await self._call("GET", "/admin/update/plan", params))

    async def policy(self, decisions: int = 20) -> dict[str, Any]:
        """Unattended updates: effective policy with sources, freeze, marks, decisions."""
        return dict(await self._call("GET", "/admin/policy", {"decisions": str(decisions)}))

    async def mark_version(
        self,
        version: str,
        action: str,
        hours: float | None = None,
        note: str = "",
        operator: str | None = None,
    ) -> dict[str, Any]:
        """Skip or snooze ``version`` for auto-apply, or clear its mark (never retried)."""
        body: dict[str, Any] = {"version": version, "action": action, "note": note}
        if hours is not None:
            body["hours"] = hours
        if operator:
            body["operator"] = operator
        return dict(await self._call("POST", "/admin/policy/versions", json=body, retry=False))

    async def unfreeze_auto_apply(
        self, note: str = "", operator: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"note": note, **({"operator": operator} if operator else {})}
        return dict(await self._call("POST", "/admin/policy/unfreeze", json=body, retry=False))

    async def reload_policy(self) -> dict[str, Any]:
        return dict(await self._call("POST", "/admin/policy/reload", json={}, retry=False))

    async def history(self, limit: int = 50) -> list[RunRecord]:
        data = await self._call("GET", "/admin/update/history", {"limit": str(limit)})
        return HistoryPage.model_validate(data).runs

    async def snapshots(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/admin/snapshots"))["snapshots"])

    async def create_snapshot(self) -> Job:
        return Job.model_validate(await self._call("POST", "/admin/snapshots", retry=False))

    async def restore_snapshot(self, snapshot_id: str) -> Job:
        path = f"/admin/snapshots/{snapshot_id}/restore"
        return Job.model_validate(await self._call("POST", path, retry=False))

    async def job(self, job_id: str) -> Job:
        return Job.model_validate(await self._call("GET", f"/admin/jobs/{job_id}"))

    async def wait_for_job(self, job_id: str, interval: float = 1.0) -> Job:
        """Poll the job until it has ended (jobs have no event stream)."""
        while True:
            job = await self.job(job_id)
            if job.state != "running":
                return job
            await asyncio.sleep(interval)

    # --- plumbing --------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        json: Any = None,
        retry: bool = True,
    ) -> Any:
        attempts = self._attempts if retry else 1
        try:
            async for attempt in self._retrying(attempts):
                with attempt:
                    return await self._once(method, path, params, json)
        except CONNECTION_ERRORS as err:
            raise SidecarUnreachable(
                f"cannot reach the sidecar at {self.base_url}: {err or type(err).__name__}"
            ) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _retrying(self, attempts: int) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception_type(CONNECTION_ERRORS),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=self._backoff, max=10),
            reraise=True,
        )

    async def _once(
        self, method: str, path: str, params: Mapping[str, str] | None, body: Any
    ) -> Any:
        async with self._client().request(
            method,
            self.base_url + path,
            params=params,
            json=body,
            headers=self._headers,
            timeout=self._timeout,
        ) as response:
            return await _answer(response)

    async def _stream_once(self, update_id: str, after: int | None) -> AsyncGenerator[RunEvent]:
        headers = {**self._headers, "Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        url = f"{self.base_url}/admin/update/stream"
        try:
            async for attempt in self._retrying(self._attempts):
                with attempt:
                    response = await self._client().get(
                        url, params={"update_id": update_id}, headers=headers,
                        timeout=self._stream_timeout,
                    )  # fmt: skip
        except CONNECTION_ERRORS as err:  # not a drop: the sidecar is not there
            raise SidecarUnreachable(
                f"cannot reach the sidecar at {self.base_url}: {err!r}"
            ) from err
        async with response:
            if response.status >= 400:
                await _answer(response)
            parser = SSEParser()
            async for raw in response.content:
                message = parser.feed_line(raw.decode("utf-8", "replace"))
                if message is not None and message.id is not None:
                    data = json.loads(message.data)
                    data.pop("event", None)
                    yield RunEvent.model_validate(
                        {"id": int(message.id), "event": message.event, "data": data}
                    )


async def _answer(response: aiohttp.ClientResponse) -> Any:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        body = None
    if response.status >= 400:
        raise error_from_answer(response.status, body)
    return body
