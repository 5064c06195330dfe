"""Start order from settings and Compose depends_on; pull progress aggregation."""

from __future__ import annotations

import pytest

from supervisor.engine.ordering import depends_on_from_label, start_order
from supervisor.engine.pull_progress import PullTracker
from supervisor.exceptions import ConfigError


@pytest.mark.parametrize(
    ("deps", "preferred", "expected"),
    [
        ({"app": ["python_backend"], "python_backend": []}, [], ["python_backend", "app"]),
        ({"a": [], "b": [], "c": []}, ["c", "a"], ["c", "a", "b"]),
        ({"app": ["postgres"], "worker": []}, ["worker", "app"], ["worker", "app"]),
        ({"web": ["api"], "api": ["auth"], "auth": []}, ["web"], ["auth", "api", "web"]),
    ],
)
def test_start_order(deps: dict[str, list[str]], preferred: list[str], expected: list[str]) -> None:
    assert start_order(deps, preferred) == expected


def test_cycle_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="cycle among: a, b"):
        start_order({"a": ["b"], "b": ["a"], "c": []})


def test_compose_v2_depends_on_label() -> None:
    labels = {
        "com.docker.compose.depends_on": "postgres:service_healthy:false,api:service_started:true"
    }
    assert depends_on_from_label(labels) == ("postgres", "api")
    assert depends_on_from_label({}) == ()


def test_pull_tracker_folds_layers_and_bytes() -> None:
    tracker = PullTracker("img")
    tracker.update({"status": "Pulling from stacksup/app", "id": "1.0"})
    tracker.update({"status": "Pulling fs layer", "id": "l1"})
    tracker.update({"status": "Already exists", "id": "l2"})
    mid = tracker.update(
        {"status": "Downloading", "id": "l1", "progressDetail": {"current": 50, "total": 200}}
    )
    assert (mid.layers_total, mid.layers_done, mid.bytes_done, mid.bytes_total) == (2, 1, 50, 200)
    assert mid.percent == 25
    end = tracker.update({"status": "Pull complete", "id": "l1"})
    assert (end.layers_done, end.bytes_done, end.percent) == (2, 200, 100)
