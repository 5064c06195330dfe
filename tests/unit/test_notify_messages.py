"""The wording of each notice: titles a phone can show, bodies that say what to do next."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from supervisor.notify import (
    Notice,
    NotifyEvent,
    notice_for_run,
    notice_frozen,
    notice_update_available,
)
from supervisor.notify.messages import format_duration
from supervisor.update.models import RollbackJournal, RunError, RunRecord
from supervisor.update.stages import Stage

pytestmark = pytest.mark.unit

STARTED = datetime(2024, 3, 30, 2, 0, 5, tzinfo=UTC)
SNAPSHOT = "20240330T020012Z_1a2b3c4d"


def run(state: Stage, **changes: object) -> RunRecord:
    values: dict[str, object] = {
        "update_id": "a1b2c3d4e5f6",
        "state": state,
        "result": state if state.finished else None,
        "trigger": "auto",
        "from_version": "1.4.1",
        "target_version": "1.4.2",
        "started_at": STARTED,
        "finished_at": STARTED + timedelta(minutes=4, seconds=12) if state.finished else None,
        "snapshot_id": SNAPSHOT,
    }
    values.update(changes)
    return RunRecord.model_validate(values)


HEALTH = RunError(error_key="health_check_failed", message="web never became healthy", stage=Stage.HEALTHCHECK)  # fmt: skip


def test_a_rolled_back_run_names_versions_error_duration_snapshot_and_next_step() -> None:
    record = run(Stage.ROLLED_BACK, error=HEALTH, rollback=RollbackJournal(restored=True))
    notice = notice_for_run(record, NotifyEvent.ROLLED_BACK, project="canopy")
    assert notice.title == "canopy: update 1.4.1 → 1.4.2 rolled back"
    assert notice.body.splitlines() == [
        "Update a1b2c3d4e5f6 (auto) failed at healthcheck: web never became healthy.",
        "Rolled back after 4 min 12 s: the stack runs 1.4.1 again.",
        f"Data restored from snapshot {SNAPSHOT}.",
        "Next: read the log with `supervisor status --id a1b2c3d4e5f6` and fix the cause before 1.4.2 again.",
    ]
    assert notice.at == record.finished_at
    assert notice.project == "canopy"
    assert notice.fields["duration_s"] == 252.0
    assert notice.fields["snapshot_id"] == SNAPSHOT
    assert notice.fields["error_key"] == "health_check_failed"
    assert notice.fields["data_restored"] is True


def test_a_rollback_that_did_not_restore_data_does_not_claim_it_did() -> None:
    record = run(Stage.ROLLED_BACK, error=HEALTH, rollback=RollbackJournal(restored=False))
    body = notice_for_run(record, NotifyEvent.ROLLED_BACK, project="canopy").body
    assert f"Data was not restored; snapshot {SNAPSHOT} is kept." in body
    assert "Data restored" not in body


@pytest.mark.parametrize(
    ("event", "state", "title_end", "body_has"),
    [
        (NotifyEvent.STARTED, Stage.PULL, "started", "started at 2024-03-30 02:00:05 UTC"),
        (NotifyEvent.COMPLETED, Stage.COMPLETED, "completed", "completed in 4 min 12 s; the stack runs 1.4.2"),
        (NotifyEvent.FAILED, Stage.FAILED, "failed", "the stack stays on 1.4.1"),
        (NotifyEvent.NEEDS_INTERVENTION, Stage.NEEDS_INTERVENTION, "needs intervention", "`supervisor acknowledge a1b2c3d4e5f6`"),
    ],
)  # fmt: skip
def test_each_run_event_has_its_title_and_body(
    event: NotifyEvent, state: Stage, title_end: str, body_has: str
) -> None:
    notice = notice_for_run(run(state), event, project="canopy")
    assert notice.title == f"canopy: update 1.4.1 → 1.4.2 {title_end}"
    assert body_has in notice.body
    assert notice.event is event
    assert (notice.fields["duration_s"] is None) == (event is NotifyEvent.STARTED)


def test_a_completed_run_names_its_snapshot_and_its_warnings() -> None:
    record = run(Stage.COMPLETED, warnings=["disk 91% full"])
    body = notice_for_run(record, NotifyEvent.COMPLETED, project="canopy").body
    assert f"Snapshot from before the update: {SNAPSHOT}." in body
    assert "1 warning(s): see `supervisor status --id a1b2c3d4e5f6`." in body


def test_needs_intervention_lists_what_was_kept() -> None:
    record = run(Stage.NEEDS_INTERVENTION, kept=["database app_replaced_1a2b"], error=HEALTH)
    body = notice_for_run(record, NotifyEvent.NEEDS_INTERVENTION, project="p").body
    assert "Kept for you: database app_replaced_1a2b." in body
    assert "at healthcheck: web never became healthy." in body


def test_an_unknown_source_version_and_no_project_read_plainly() -> None:
    record = run(Stage.COMPLETED, from_version=None)
    notice = notice_for_run(record, NotifyEvent.COMPLETED, project="")
    assert notice.title == "update unknown → 1.4.2 completed"


def test_a_non_run_event_is_refused_by_the_run_builder() -> None:
    with pytest.raises(ValueError, match="frozen is not a run event"):
        notice_for_run(run(Stage.COMPLETED), NotifyEvent.FROZEN, project="p")


def test_update_available_lists_the_images_and_how_to_apply() -> None:
    notice = notice_update_available(
        "1.5.0", "1.4.2", {"web": "reg/web:1.5.0", "api": "reg/api:1.5.0"}, project="canopy"
    )
    assert notice.event is NotifyEvent.UPDATE_AVAILABLE
    assert notice.title == "canopy: update 1.4.2 → 1.5.0 available"
    assert notice.body.splitlines()[:3] == [
        "Version 1.5.0 is available; the stack runs 1.4.2.",
        "  api: reg/api:1.5.0",
        "  web: reg/web:1.5.0",
    ]
    assert "`supervisor plan 1.5.0`" in notice.body
    assert notice.fields == {
        "from_version": "1.4.2",
        "to_version": "1.5.0",
        "services": {"web": "reg/web:1.5.0", "api": "reg/api:1.5.0"},
    }


def test_frozen_names_the_reason_the_bad_version_and_the_run() -> None:
    notice = notice_frozen("1.4.2 rolled back", "1.4.2", "a1b2c3d4e5f6", project="canopy")
    assert notice.title == "canopy: auto-apply frozen after 1.4.2"
    assert "Automatic updates are frozen: 1.4.2 rolled back." in notice.body
    assert (
        "Version 1.4.2 is marked bad (run a1b2c3d4e5f6). Manual updates still work." in notice.body
    )
    assert notice.fields["reason"] == "1.4.2 rolled back"


def test_every_notice_serialises_to_json_as_the_webhook_sends_it() -> None:
    notices: list[Notice] = [
        notice_for_run(run(Stage.ROLLED_BACK, error=HEALTH), NotifyEvent.ROLLED_BACK, project="p"),
        notice_update_available("1.5.0", None, {}, project="p"),
        notice_frozen("r", "1.4.2", None, project="p"),
    ]
    for notice in notices:
        body = json.loads(json.dumps(notice.as_json()))
        assert body["event"] == str(notice.event)
        assert datetime.fromisoformat(body["at"]) == notice.at
        assert set(body) == {"event", "title", "body", "fields", "at", "project"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (42, "42 s"), (60, "1 min"), (252, "4 min 12 s"), (3600, "1 h"), (3900, "1 h 5 min")],
)  # fmt: skip
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
