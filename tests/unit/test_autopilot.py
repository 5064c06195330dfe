"""Unattended updates end to end over fake adapters: the real manager, autopilot, API.

The clock is injected; the engine, registry and snapshots are the Protocol fakes, the notifier
is a recording sink (an edge). What runs is the production decision, start, self-freeze and
API code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from supervisor.notify.events import Notice, NotifyEvent
from supervisor.policy.autopilot import Autopilot
from tests.support.api_world import ApiWorld, api_world, auth
from tests.support.fakes import digest_of

pytestmark = pytest.mark.unit

SATURDAY_NIGHT = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # 03:00 in Berlin


class Recorder:
    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def publish(self, notice: Notice) -> None:
        self.notices.append(notice)

    def events(self) -> list[NotifyEvent]:
        return [n.event for n in self.notices]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def auto(tmp_path: Path) -> AsyncIterator[tuple[ApiWorld, Autopilot, Recorder, Clock]]:
    async with api_world(
        tmp_path, auto_apply="patch", maintenance_window="Sat,Sun 02:00-05:00 Europe/Berlin"
    ) as world:
        pilot, recorder, clock = world.runtime.autopilot, Recorder(), Clock(SATURDAY_NIGHT)
        pilot.notices, pilot.clock = recorder, clock
        yield world, pilot, recorder, clock


async def ended(world: ApiWorld, update_id: str) -> str:
    record = await world.manager.wait(update_id)
    await world.runtime.autopilot.settle()
    return record.state.value


async def test_a_patch_in_the_window_is_applied_with_trigger_auto(auto: Any) -> None:
    world, pilot, recorder, _clock = auto
    await world.manager.check()
    decision = await pilot.tick()
    assert decision.action == "apply"
    assert decision.reason == "1.4.2 is a patch release, window open, 0.0 h old: applying"
    assert decision.update_id is not None
    record = world.manager.status(decision.update_id)
    assert record.trigger == "auto"
    assert await ended(world, decision.update_id) == "completed"
    assert recorder.events() == [
        NotifyEvent.UPDATE_AVAILABLE, NotifyEvent.STARTED, NotifyEvent.COMPLETED,
    ]  # fmt: skip
    completed = recorder.notices[-1]
    assert completed.fields["to_version"] == "1.4.2"
    assert completed.fields["snapshot_id"] == world.manager.status(decision.update_id).snapshot_id
    after = await pilot.tick()
    assert (after.action, after.reason) == ("none", "1.4.2 runs: nothing to do")
    assert recorder.events().count(NotifyEvent.UPDATE_AVAILABLE) == 1  # once per version


async def test_a_bad_automatic_run_marks_the_version_and_freezes(auto: Any) -> None:
    world, pilot, recorder, _clock = auto
    world.engine.unhealthy_versions.add("1.4.2")
    await world.manager.check()
    decision = await pilot.tick()
    assert await ended(world, decision.update_id) == "rolled_back"
    assert recorder.events()[-2:] == [NotifyEvent.ROLLED_BACK, NotifyEvent.FROZEN]
    view = await pilot.view()
    assert view["frozen"]["reason"] == "the automatic update to 1.4.2 ended rolled_back"
    assert view["bad_versions"] == ["1.4.2"]
    again = await pilot.tick()
    assert again.action == "wait"
    assert "auto-apply frozen since" in again.reason
    # the freeze survives a restart: it is in the state directory
    reloaded = type(pilot.store)(world.settings.state_dir).load()
    assert reloaded.frozen is not None
    assert reloaded.marks["1.4.2"].kind == "bad"

    app = world.app()
    async with TestClient(TestServer(app)) as client:
        version = await (await client.get("/admin/version", headers=auth())).json()
        assert version["auto_apply"]["frozen"]["version"] == "1.4.2"
        assert version["auto_apply"]["bad_versions"] == ["1.4.2"]
        badge = await (await client.get("/admin/badge.json", headers=auth())).json()
        assert badge["message"].endswith("auto-apply frozen")
        # a manual update still works: the freeze is auto-apply's only
        world.engine.unhealthy_versions.clear()
        manual = await client.post("/admin/update/start", headers=auth(),
                                   json={"target_version": "1.4.2"})  # fmt: skip
        assert manual.status == 202
        run_id = (await manual.json())["update_id"]
        assert await ended(world, run_id) == "completed"
        unfreeze = await client.post("/admin/policy/unfreeze", headers=auth(),
                                     json={"operator": "ops", "note": "fixed in 1.4.2"})  # fmt: skip
        assert unfreeze.status == 200
        twice = await client.post("/admin/policy/unfreeze", headers=auth(), json={})
        assert twice.status == 409
        assert (await twice.json())["error_key"] == "not_frozen"
    assert (await pilot.view())["frozen"] is None


async def test_a_minor_release_under_patch_is_reported_not_applied(auto: Any) -> None:
    world, pilot, recorder, _clock = auto
    world.registry.tags = {"1.4.1": digest_of("1.4.1"), "1.5.0": digest_of("1.5.0")}
    await world.manager.check()
    decision = await pilot.tick()
    assert decision.action == "wait"
    assert decision.reason == "1.5.0 is a minor release, policy patch: waiting for an operator"
    assert world.manager.current_update_id is None
    assert recorder.events() == [NotifyEvent.UPDATE_AVAILABLE]


async def test_window_and_maturity_hold_a_release_back_until_due(tmp_path: Path) -> None:
    async with api_world(tmp_path, auto_apply="patch", maturity_hours="24",
                         maintenance_window="Sat,Sun 02:00-05:00 Europe/Berlin") as world:  # fmt: skip
        pilot, clock = world.runtime.autopilot, Clock(datetime(2026, 12, 2, 12, tzinfo=UTC))
        pilot.notices, pilot.clock = Recorder(), clock
        await world.manager.check()
        first = await pilot.tick()  # Wednesday: first seen now
        assert first.action == "wait"
        assert "maturity 24 h" in first.reason
        clock.now += timedelta(days=1, hours=1)  # Thursday: mature, but the window is closed
        closed = await pilot.tick()
        assert "maintenance window closed: next opens 2026-12-05 01:00 UTC" in closed.reason
        clock.now = SATURDAY_NIGHT
        due = await pilot.tick()
        assert due.action == "apply"
        assert "62 h old" in due.reason
        assert await ended(world, due.update_id or "") == "completed"
        reasons = [d["reason"] for d in (await pilot.view())["decisions"]]
        assert reasons[-1] == first.reason  # newest first


async def test_skip_snooze_and_clear_over_the_api(auto: Any) -> None:
    world, pilot, _recorder, clock = auto
    clock.now = SATURDAY_NIGHT - timedelta(hours=1)  # 02:00 in Berlin: the window opens
    async with TestClient(TestServer(world.app())) as client:  # its loop ticks after a check
        skip = await client.post("/admin/policy/versions", headers=auth(),
                                 json={"version": "1.4.2", "action": "skip", "note": "known bug"})  # fmt: skip
        assert skip.status == 200
        await world.manager.check()
        assert (await skip.json())["mark"]["kind"] == "skipped"
        assert "was skipped by admin token (api)" in (await pilot.tick()).reason
        snooze = await client.post("/admin/policy/versions", headers=auth(),
                                   json={"version": "1.4.2", "action": "snooze", "hours": 2})  # fmt: skip
        assert snooze.status == 200
        assert "snoozed until 2026-12-05 03:00 UTC" in (await pilot.tick()).reason
        clock.now += timedelta(hours=2, minutes=1)
        due = await pilot.tick()
        assert due.action == "apply", due.reason
        for body, key in [
            ({"version": "1.4.2", "action": "snooze"}, "bad_request"),
            ({"version": "1.4.2", "action": "skip", "hours": 3}, "bad_request"),
            ({"version": "not a version", "action": "skip"}, "invalid_version"),
            ({"version": "1.4.2", "action": "delete"}, "bad_request"),
            ({"version": "9.9.9", "action": "clear"}, "mark_not_found"),
        ]:
            answer = await client.post("/admin/policy/versions", headers=auth(), json=body)
            assert 400 <= answer.status < 500, body
            assert (await answer.json())["error_key"] == key, body
        denied = await client.post("/admin/policy/versions", headers=auth("read-token-0123456789abcdef"),
                                   json={"version": "1.4.2", "action": "skip"})  # fmt: skip
        assert denied.status == 403
        view = await (await client.get("/admin/policy", headers=auth())).json()
        assert view["auto_apply"] == "patch"
        assert view["windows"] == ["Sat,Sun 02:00-05:00 Europe/Berlin"]
        assert view["config"]["settings"]["auto_apply"] == {"value": "patch", "source": "env"}
        assert view["config"]["settings"]["maturity_hours"]["source"] == "default"


async def test_a_failing_tick_start_is_recorded_not_raised(auto: Any) -> None:
    world, pilot, _recorder, _clock = auto
    await world.manager.check()
    world.settings.freeze_file.write_text("maintenance\n")
    decision = await pilot.tick()
    assert decision.action == "wait"
    assert "updates are frozen by" in decision.reason


async def test_a_damaged_policy_state_starts_frozen(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "policy-state.json").write_text("{not json")
    async with api_world(tmp_path, auto_apply="patch") as world:
        pilot = world.runtime.autopilot
        pilot.notices = Recorder()
        view = await pilot.view()
        assert "damaged" in view["frozen"]["reason"]
        assert list((tmp_path / "state").glob("policy-state.json.corrupt-*"))
