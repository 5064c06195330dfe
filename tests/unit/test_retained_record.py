"""A retained container's recorded spec survives the journal but is never served."""

from __future__ import annotations

import pytest

from supervisor.update.actions import from_record, to_record
from supervisor.update.models import RetainedRecord, RunRecord
from tests.support.fakes import FakeEngine, image_of

pytestmark = pytest.mark.unit


async def test_spec_round_trips_through_the_journal_and_stays_out_of_the_status_body() -> None:
    engine = FakeEngine("1.0.0")
    (app,) = engine.by_service("app")
    engine.containers[app.id].labels = {"secret-ish": "DATABASE_URL=postgres://app:pw@db/app"}
    retained = await engine.prepare_recreate(app.id, "r1")
    record = RunRecord(update_id="r1", retained=[to_record(retained)])

    journaled = RunRecord.model_validate_json(record.model_dump_json())
    assert from_record(journaled.retained[0]) == retained
    assert journaled.retained[0].old_spec["body"]["Image"] == image_of("1.0.0")

    served = record.public()
    assert "old_spec" not in served["retained"][0]
    assert "pw@db" not in str(served)
    assert served["retained"][0]["old_image"] == image_of("1.0.0")
    assert RunRecord.model_validate(served).retained[0].old_spec == {}
    # Journals written before these fields existed still load.
    old_style = record.retained[0].model_dump(exclude={"old_image", "old_image_id", "old_spec"})
    assert RetainedRecord.model_validate(old_style).old_spec == {}
