"""The places a notice goes: one Apprise URL, or the signed webhook.

Each channel makes one delivery attempt per :meth:`Channel.send` and raises
:class:`~supervisor.exceptions.NotificationFailed` when it did not arrive; retries,
timeouts and counting belong to :class:`supervisor.notify.dispatch.Notifier`. A channel
never puts its URL in an error or a log line: ``label`` (``apprise json://…``,
``webhook https://…``) is all anyone sees of it, since these URLs carry tokens.

One channel per Apprise URL (not one Apprise object for all of them), so a retry after one
service failed does not send the notice a second time to the services that got it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import apprise

from supervisor.exceptions import NotificationFailed

from .config import scheme
from .events import Notice, NotifyEvent
from .signing import sign

# Apprise logs whole service URLs at DEBUG, and so does urllib3 (under Apprise's requests)
# with every request line; many services keep their token in the path (tgram://TOKEN/…,
# json://host/hook/TOKEN). With SUPERVISOR_LOG_LEVEL=DEBUG those lines would put tokens in
# the log, so both loggers stay at INFO unless an operator set a level for them on purpose.
# Their INFO and WARNING lines name no secrets (Apprise masks passwords in what it logs).
for _name in ("apprise", "urllib3"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.INFO)

USER_AGENT = "stack-supervisor"
# Statuses worth another attempt; any other 4xx means the request itself is refused.
RETRYABLE_STATUSES = frozenset({408, 425, 429})

_APPRISE_TYPE = {
    NotifyEvent.UPDATE_AVAILABLE: apprise.NotifyType.INFO,
    NotifyEvent.STARTED: apprise.NotifyType.INFO,
    NotifyEvent.COMPLETED: apprise.NotifyType.SUCCESS,
    NotifyEvent.ROLLED_BACK: apprise.NotifyType.WARNING,
    NotifyEvent.FROZEN: apprise.NotifyType.WARNING,
    NotifyEvent.FAILED: apprise.NotifyType.FAILURE,
    NotifyEvent.NEEDS_INTERVENTION: apprise.NotifyType.FAILURE,
}


class Channel(Protocol):
    """One destination. ``kind`` labels the metrics, ``label`` the logs; neither is secret."""

    kind: str
    label: str
    events: frozenset[NotifyEvent]

    async def send(self, notice: Notice) -> None:
        """Deliver ``notice`` once, or raise NotificationFailed."""


class AppriseChannel:
    """One Apprise URL (``json://``, ``mailto://``, ``tgram://`` …).

    Apprise runs the (blocking) service plugins in its own worker threads under
    ``async_notify``, so the event loop never waits on a slow SMTP server. Apprise's own
    logger (``apprise``) masks passwords in the URLs it logs.
    """

    def __init__(self, url: str, events: frozenset[NotifyEvent]) -> None:
        kind = scheme(url).lower() or "?"
        self.kind = f"apprise:{kind}"
        self.label = f"apprise {kind}://…"
        self.events = events
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            raise ValueError(f"{self.label}: Apprise cannot use this URL")

    async def send(self, notice: Notice) -> None:
        try:
            delivered = await self._apprise.async_notify(
                body=notice.body,
                title=notice.title,
                notify_type=_APPRISE_TYPE[notice.event],
                body_format=apprise.NotifyFormat.TEXT,
            )
        except Exception as err:  # a plugin bug must not look like a URL leak or a crash
            raise NotificationFailed(f"Apprise raised {type(err).__name__}") from err
        if not delivered:
            raise NotificationFailed("not delivered (the apprise log says why)")


class WebhookChannel:
    """POST the notice as JSON, signed with HMAC-SHA256 (see :mod:`.signing`).

    Headers: ``X-StackSup-Event``, ``X-StackSup-Timestamp`` (Unix seconds, signed with the
    body) and ``X-StackSup-Signature: sha256=<hex>``. A retry is signed afresh; the body,
    ``at`` included, stays the same, so a receiver can drop a duplicate by its content.
    """

    kind = "webhook"

    def __init__(
        self, url: str, key: bytes, events: frozenset[NotifyEvent], timeout: float
    ) -> None:
        self.label = f"webhook {urlsplit(url).scheme}://…"
        self.events = events
        self._url = url
        self._key = key
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, notice: Notice) -> None:
        body = json.dumps(notice.as_json(), separators=(",", ":"), default=str).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-StackSup-Event": str(notice.event),
            "X-StackSup-Timestamp": timestamp,
            "X-StackSup-Signature": sign(self._key, timestamp, body),
        }
        try:
            # A session per delivery: notices are rare, and nothing stays open between them.
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(self._url, data=body, headers=headers, allow_redirects=False) as r,
            ):
                status = r.status
        except TimeoutError as err:
            raise NotificationFailed(f"no answer within {self._timeout.total:g} s") from err
        except aiohttp.ClientError as err:
            # Never str(err): aiohttp puts the URL (and any token in it) into its messages.
            raise NotificationFailed(type(err).__name__) from err
        if not 200 <= status < 300:
            retryable = status >= 500 or status in RETRYABLE_STATUSES
            raise NotificationFailed(f"HTTP {status}", retryable=retryable)
