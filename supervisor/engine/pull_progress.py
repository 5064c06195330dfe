"""Aggregate the engine's per-layer pull messages into one progress value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from supervisor.engine.models import PullProgress

_DONE = {"Pull complete", "Already exists", "Download complete"}


@dataclass
class PullTracker:
    image: str
    _totals: dict[str, int] = field(default_factory=dict)
    _current: dict[str, int] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)
    _layers: set[str] = field(default_factory=set)
    status: str = "starting"

    def update(self, event: dict[str, Any]) -> PullProgress:
        """Fold one engine message (``{"status", "id", "progressDetail"}``) in."""
        layer = event.get("id")
        status = str(event.get("status", ""))
        self.status = status or self.status
        if layer and status and not status.startswith(("Pulling from", "Digest:", "Status:")):
            self._layers.add(layer)
            detail = event.get("progressDetail") or {}
            if status == "Downloading" and detail.get("total"):
                self._totals[layer] = int(detail["total"])
                self._current[layer] = int(detail.get("current", 0))
            if status in _DONE:
                self._done.add(layer)
                if layer in self._totals:
                    self._current[layer] = self._totals[layer]
        return self.snapshot()

    def snapshot(self) -> PullProgress:
        return PullProgress(
            image=self.image,
            layers_total=len(self._layers),
            layers_done=len(self._done),
            bytes_done=sum(self._current.values()),
            bytes_total=sum(self._totals.values()),
            status=self.status,
        )
