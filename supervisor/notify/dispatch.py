"""The notifier: notices leave the run's path at :meth:`Notifier.publish` and go out later.

::

    run / policy ──publish()──▶ bounded queue ──worker task──▶ channel.send()  (each admitted
       (returns at once,          (full: the notice is         retried with backoff,  channel,
        never raises)              dropped and counted)         timed out, counted)    in parallel)

A slow or failing receiver can therefore never delay or fail an update: ``publish`` only
enqueues. One worker sends notices in order (``started`` before ``completed``); the
channels of one notice are served concurrently, each with its own retries, so one dead
service does not hold back the others for that notice. Failures are logged with the
channel's ``label`` (``apprise json://…``) and the reason, never the URL.

Lifetimes: :meth:`start` in the app's start-up, :meth:`stop` at shutdown (it drains what is
queued for a few seconds, then cancels and counts the rest as dropped). A policy reload
calls :meth:`reconfigure`, which swaps the channels for every notice sent afterwards.
Call everything from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from supervisor.exceptions import NotificationFailed

from .channels import AppriseChannel, Channel, WebhookChannel
from .config import NotificationSettings
from .events import Notice
from .stats import Counts, DeliveryStats, NotificationMetrics

_LOGGER = logging.getLogger(__name__)

QUEUE_SIZE = 100


def build_channels(settings: NotificationSettings) -> list[Channel]:
    """The channels ``settings`` describe; ValueError (naming a file or a scheme, never a
    URL) when a file cannot be read or a URL cannot be used."""
    channels: list[Channel] = [AppriseChannel(url, settings.events) for url in settings.all_urls()]
    key = settings.webhook_key()
    if settings.webhook_url is not None and key is not None:
        events = settings.webhook_events if settings.webhook_events is not None else settings.events
        url = settings.webhook_url.get_secret_value()
        channels.append(WebhookChannel(url, key, events, settings.timeout))
    return channels


def _retryable(err: BaseException) -> bool:
    return isinstance(err, NotificationFailed) and err.retryable


class Notifier:
    """Sends notices to the configured channels, off the caller's path.

    ``backoff`` is the first wait between attempts; each further wait doubles, up to
    ``backoff_max`` seconds.
    """

    def __init__(
        self,
        settings: NotificationSettings | None = None,
        *,
        queue_size: int = QUEUE_SIZE,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=queue_size)
        self._settings = NotificationSettings()
        self._channels: tuple[Channel, ...] = ()
        self._stats = DeliveryStats()
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        if settings is not None:
            self.reconfigure(settings)

    @property
    def channels(self) -> list[str]:
        """The configured channels' labels (``apprise mailto://…``): safe to show."""
        return [channel.label for channel in self._channels]

    def reconfigure(self, settings: NotificationSettings) -> None:
        """Send later notices with ``settings``. On ValueError (an unreadable file, an
        unusable URL) the channels in use stay as they were."""
        channels = tuple(build_channels(settings))
        self._settings, self._channels = settings, channels
        for channel in channels:
            self._stats.track(channel.kind, channel.events)
        _LOGGER.info(
            "notifications: %s", ", ".join(self.channels) if channels else "no channel configured"
        )

    def publish(self, notice: Notice) -> None:
        """Queue ``notice`` for every channel that admits its event. Never blocks, never
        raises: a full queue (or a stopped notifier) drops the notice and counts it."""
        try:
            targets = [c for c in self._channels if notice.event in c.events]
            if not targets:
                return
            if self._closed:
                self._drop(notice, targets, "the notifier is stopped")
                return
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            self._drop(notice, targets, f"{self._queue.maxsize} notices are already waiting")
        except Exception:  # the caller is an update run: nothing here may fail it
            _LOGGER.exception("notification %s could not be queued", notice.event)

    async def start(self) -> None:
        if self._worker is None:
            self._closed = False
            self._worker = asyncio.create_task(self._work(), name="notifier")

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Refuse new notices, send what is queued for up to ``drain_timeout`` seconds,
        then cancel; whatever was not sent is counted as dropped."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self._queue.join()
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        while not self._queue.empty():
            notice = self._queue.get_nowait()
            self._queue.task_done()
            targets = [c for c in self._channels if notice.event in c.events]
            self._drop(notice, targets, "the notifier stopped before it was sent")

    def stats(self) -> dict[tuple[str, str], Counts]:
        """Counts per (channel kind, event): a copy."""
        return self._stats.snapshot()

    def metrics(self) -> NotificationMetrics:
        """A Prometheus collector over this notifier (register it in the app's registry)."""
        return NotificationMetrics(self.stats, self._queue.qsize)

    def _drop(self, notice: Notice, targets: list[Channel], why: str) -> None:
        for channel in targets:
            self._stats.add(channel.kind, notice.event, "dropped")
        _LOGGER.warning("notification %s dropped: %s", notice.event, why)

    async def _work(self) -> None:
        while True:
            notice = await self._queue.get()
            try:
                targets = [c for c in self._channels if notice.event in c.events]
                await asyncio.gather(*(self._deliver(c, notice) for c in targets))
            except Exception:  # the worker must outlive any single notice
                _LOGGER.exception("notification %s: unexpected error", notice.event)
            finally:
                self._queue.task_done()

    async def _deliver(self, channel: Channel, notice: Notice) -> None:
        settings = self._settings
        state: RetryCallState | None = None

        def log_retry(retry_state: RetryCallState) -> None:
            _LOGGER.info(
                "notification %s via %s: attempt %d failed (%s), retrying in %.1f s",
                notice.event,
                channel.label,
                retry_state.attempt_number,
                _reason(retry_state),
                retry_state.next_action.sleep if retry_state.next_action else 0.0,
            )
            self._stats.add(channel.kind, notice.event, "retried")

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(settings.retries),
                wait=wait_exponential(multiplier=self._backoff, max=self._backoff_max),
                retry=retry_if_exception(_retryable),
                before_sleep=log_retry,
                reraise=True,
            ):
                state = attempt.retry_state
                with attempt:
                    await _send_once(channel, notice, settings.timeout)
        except asyncio.CancelledError:
            self._stats.add(channel.kind, notice.event, "dropped")
            raise
        except Exception as err:
            self._stats.add(channel.kind, notice.event, "failed")
            attempts = state.attempt_number if state is not None else 0
            reason = str(err) if isinstance(err, NotificationFailed) else type(err).__name__
            _LOGGER.warning(
                "notification %s via %s failed after %d attempt(s): %s",
                notice.event,
                channel.label,
                attempts,
                reason,
            )
        else:
            self._stats.add(channel.kind, notice.event, "sent")
            _LOGGER.debug("notification %s sent via %s", notice.event, channel.label)


async def _send_once(channel: Channel, notice: Notice, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await channel.send(notice)
    except TimeoutError as err:
        raise NotificationFailed(f"no answer within {timeout:g} s") from err


def _reason(retry_state: RetryCallState) -> str:
    err = retry_state.outcome.exception() if retry_state.outcome else None
    return str(err) if isinstance(err, NotificationFailed) else type(err).__name__
