"""The on-disk event log of a run: the same ids after a restart, bounded, never fatal to a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.update import events as events_module
from supervisor.update.events import EventLog, event_log_path, replay
from supervisor.update.models import RunRecord
from supervisor.update.stages import Stage

pytestmark = pytest.mark.unit


def path_for(tmp_path: Path, update_id: str = "a1b2c3d4e5f6") -> Path:
    return event_log_path(tmp_path / "state", update_id)


def test_a_reopened_log_continues_the_sequence_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = path_for(tmp_path)
    first = EventLog(path)
    first.emit("phase", {"state": "pull", "message": "Pulling images"})
    first.emit("progress", {"state": "pull", "progress": 7})
    first.emit("log", {"state": "pull", "message": "pulling"})
    with path.open("a") as handle:
        handle.write('{"id": 4, "event": "log", "da')  # killed mid-write
    again = EventLog(path)
    assert [e.id for e in again.snapshot()] == [1, 2, 3]
    assert again.snapshot() == first.snapshot()
    event = again.emit("phase", {"state": "verify", "message": "Verifying"})
    assert event is not None
    assert event.id == 4
    assert again.emit("progress", {"state": "pull", "progress": 7}) is None  # throttle kept
    assert [e.id for e in EventLog.load(path).snapshot()] == [1, 2, 3, 4]
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert oct(path.parent.stat().st_mode & 0o777) == oct(0o700)


def test_replay_of_an_ended_run_ends_with_its_result_with_a_stable_id(tmp_path: Path) -> None:
    path = path_for(tmp_path)
    log = EventLog(path)
    log.emit("phase", {"state": "preflight", "message": "Checking"})
    # killed between the journal's "failed" and the result event
    record = RunRecord(update_id="a1b2c3d4e5f6", state=Stage.FAILED, result=Stage.FAILED)
    result = {"state": "failed", "update_id": record.update_id}
    once, twice = replay(path, record, result), replay(path, record, result)
    assert once.snapshot() == twice.snapshot()
    assert [(e.id, e.event) for e in once.snapshot()] == [(1, "phase"), (2, "result")]
    without_file = replay(path_for(tmp_path, "ffffffffffff"), record, result)
    assert [e.event for e in without_file.snapshot()] == ["phase", "result"]


def test_the_log_is_bounded_but_keeps_phases_and_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "MAX_EVENTS", 10)
    log = EventLog(path_for(tmp_path))
    for n in range(30):
        log.emit("log", {"message": f"line {n}"})
    log.emit("phase", {"state": "stop", "message": "Stopping"})
    log.emit("result", {"state": "completed"})
    kept = EventLog.load(path_for(tmp_path)).snapshot()
    assert len(kept) == 13  # ten lines, one note that the rest is left out, phase, result
    assert "left out" in kept[10].data["message"]
    assert [e.event for e in kept[-2:]] == ["phase", "result"]
    assert [e.id for e in kept] == list(range(1, 14))


def test_only_the_newest_runs_keep_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "KEEP_FILES", 3)
    for n in range(5):
        path = path_for(tmp_path, f"run{n}")
        EventLog(path).emit("phase", {"state": "preflight", "message": "Checking"})
        os.utime(path, (1000 + n, 1000 + n))
    left = sorted(p.stem for p in (tmp_path / "state" / "events").glob("*.jsonl"))
    assert left == ["run2", "run3", "run4"]


def test_a_log_that_cannot_be_written_does_not_stop_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")  # state/events cannot be created
    log = EventLog(path_for(tmp_path))
    first = log.emit("phase", {"state": "pull", "message": "Pulling"})
    second = log.emit("phase", {"state": "verify", "message": "Verifying"})
    assert first is not None
    assert second is not None
    assert (first.id, second.id) == (1, 2)


def test_ids_that_could_leave_the_directory_are_refused(tmp_path: Path) -> None:
    for bad in ("../escape", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ValueError, match="run id"):
            event_log_path(tmp_path, bad)
