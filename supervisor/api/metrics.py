"""Prometheus metrics, computed from the run history and the snapshot store at scrape time.

Why not counters bumped by the update run: the history is the journaled truth and survives
restarts, while in-process counters would reset to zero with every sidecar restart and miss
runs recovered at start-up. So each scrape refreshes :class:`RunMetrics` from
``UpdateService.history()`` and ``Snapshots.list()`` and the collector renders it.

The collector is registered in the app's own :class:`~prometheus_client.CollectorRegistry`
(never the process-global one), so several apps in one test process do not collide and the
real manager may add its own metrics to the same registry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from supervisor.damage import DamageReport
from supervisor.update.models import RunRecord
from supervisor.update.stages import END_STATES, Stage

from .snapshot_fields import manifest_id, manifest_size

_LOGGER = logging.getLogger(__name__)

HISTORY_WINDOW = 1000  # runs read per scrape
STAGE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class RunMetrics:
    """A prometheus collector over the last refreshed history and snapshot list."""

    def __init__(self) -> None:
        self.runs: Sequence[RunRecord] = ()
        self.current: RunRecord | None = None
        self.snapshots: Sequence[Mapping[str, Any]] = ()
        self._durations: dict[str, list[float]] = {}

    def refresh(
        self,
        runs: Sequence[RunRecord],
        current: RunRecord | None,
        snapshots: Sequence[Mapping[str, Any]],
    ) -> None:
        self.runs, self.current, self.snapshots = runs, current, snapshots
        durations: dict[str, list[float]] = {}
        for run in runs:
            for timing in run.stages:
                if timing.finished_at is not None:
                    seconds = (timing.finished_at - timing.started_at).total_seconds()
                    durations.setdefault(str(timing.stage), []).append(max(0.0, seconds))
        self._durations = durations

    def describe(self) -> list[Metric]:
        """The metric names, so the registry refuses a clashing collector at registration."""
        return list(RunMetrics().collect())

    def collect(self) -> Iterable[Metric]:
        runs = CounterMetricFamily(
            "supervisor_update_runs",
            f"Finished update runs by result (the last {HISTORY_WINDOW} in history)",
            labels=["result"],
        )
        finished = [run for run in self.runs if run.result is not None]
        for state in sorted(END_STATES):
            runs.add_metric([str(state)], sum(1 for r in finished if r.result is state))
        yield runs

        stages = HistogramMetricFamily(
            "supervisor_update_stage_duration_seconds",
            "How long each stage of finished runs took",
            labels=["stage"],
        )
        for stage, values in sorted(self._durations.items()):
            buckets = [(str(b), float(sum(1 for v in values if v <= b))) for b in STAGE_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            stages.add_metric([stage], buckets, sum_value=sum(values))
        yield stages

        successes = [r.finished_at for r in finished if r.result is Stage.COMPLETED]
        last = max((t for t in successes if t is not None), default=None)
        yield GaugeMetricFamily(
            "supervisor_last_success_timestamp_seconds",
            "When the last update completed (Unix time; 0 if none)",
            value=last.timestamp() if last else 0.0,
        )
        running = self.current is not None and not self.current.state.finished
        yield GaugeMetricFamily(
            "supervisor_update_running", "1 while an update runs", value=1.0 if running else 0.0
        )

        sizes = GaugeMetricFamily(
            "supervisor_snapshot_size_bytes", "Size of each snapshot", labels=["snapshot_id"]
        )
        for manifest in self.snapshots:
            sizes.add_metric([manifest_id(manifest)], float(manifest_size(manifest)))
        yield sizes
        yield GaugeMetricFamily(
            "supervisor_snapshots", "Number of complete snapshots", value=len(self.snapshots)
        )


class DamageMetrics:
    """``supervisor_state_damaged_total{file=…}``: damaged state files and lines met so far.

    Unlike the run metrics this is a process counter: damage is found while reading (history
    lines, manifests, journals set aside), not recorded anywhere that would survive a restart;
    each damaged item counts once per process (see :mod:`supervisor.damage`).
    """

    def __init__(self, report: DamageReport) -> None:
        self.report = report

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterable[Metric]:
        damaged = CounterMetricFamily(
            "supervisor_state_damaged",
            "Damaged state files, history lines and snapshot manifests skipped or set aside",
            labels=["file"],
        )
        for kind, count in sorted(self.report.counts().items()):
            damaged.add_metric([kind], float(count))
        yield damaged
