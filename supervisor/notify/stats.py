"""What happened to the notices: counts per (channel kind, event), and their /metrics form.

Process counters, like :class:`supervisor.api.metrics.DamageMetrics`: a notice is not
journaled, so there is nothing a restart could recount. Series for every configured
channel and event it admits exist from configuration on (at zero), so an alert on
``increase(supervisor_notifications_total{outcome="failed"}[1h]) > 0`` has a series to
watch before the first failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .events import NotifyEvent

Outcome = Literal["sent", "failed", "dropped", "retried"]


@dataclass
class Counts:
    """``sent``/``failed``/``dropped`` count notices; ``retried`` counts extra attempts."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0


class DeliveryStats:
    """Counters keyed by (channel kind, event), e.g. ``("apprise:json", "completed")``."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], Counts] = {}

    def track(self, kind: str, events: Iterable[NotifyEvent]) -> None:
        """Make the zero series for a configured channel."""
        for event in events:
            self._counts.setdefault((kind, str(event)), Counts())

    def add(self, kind: str, event: NotifyEvent, outcome: Outcome) -> None:
        counts = self._counts.setdefault((kind, str(event)), Counts())
        setattr(counts, outcome, getattr(counts, outcome) + 1)

    def snapshot(self) -> dict[tuple[str, str], Counts]:
        return {key: replace(counts) for key, counts in self._counts.items()}


class NotificationMetrics:
    """Prometheus collector: register it in the app's CollectorRegistry.

    ``supervisor_notifications_total{channel,event,outcome}`` (outcome sent, failed or
    dropped), ``supervisor_notification_retries_total{channel,event}`` and the gauge
    ``supervisor_notifications_queued``.
    """

    def __init__(
        self, stats: Callable[[], dict[tuple[str, str], Counts]], queued: Callable[[], int]
    ) -> None:
        self._stats = stats
        self._queued = queued

    def describe(self) -> list[Metric]:
        return list(NotificationMetrics(dict, int).collect())

    def collect(self) -> Iterable[Metric]:
        counts = sorted(self._stats().items())
        outcomes = CounterMetricFamily(
            "supervisor_notifications",
            "Notices per channel and event: sent, failed (after every retry) or dropped "
            "(queue full, or still queued at shutdown)",
            labels=["channel", "event", "outcome"],
        )
        retries = CounterMetricFamily(
            "supervisor_notification_retries",
            "Delivery attempts after the first, per channel and event",
            labels=["channel", "event"],
        )
        for (kind, event), count in counts:
            for outcome in ("sent", "failed", "dropped"):
                outcomes.add_metric([kind, event, outcome], float(getattr(count, outcome)))
            retries.add_metric([kind, event], float(count.retried))
        yield outcomes
        yield retries
        yield GaugeMetricFamily(
            "supervisor_notifications_queued",
            "Notices waiting to be sent",
            value=float(self._queued()),
        )
