"""Every rule of the auto-apply decision, with an injected clock and the reason it gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from supervisor.policy.decide import Rules, Situation, decide
from supervisor.policy.levels import AutoApply, allowed, step
from supervisor.policy.state import Decision, Freeze, PolicyState, VersionMark
from supervisor.policy.windows import parse_windows

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # Saturday 03:00 in Berlin
PATCH = Rules(auto_apply=AutoApply.PATCH)


def situation(
    latest: str | None = "1.4.2", current: str | None = "1.4.1", **kw: object
) -> Situation:
    return Situation(now=kw.pop("now", NOW), current=current, latest=latest, **kw)  # type: ignore[arg-type]


def state(**kw: object) -> PolicyState:
    return PolicyState(**kw)  # type: ignore[arg-type]


def old(version: str, hours: float) -> PolicyState:
    return state(first_seen={version: NOW - timedelta(hours=hours)})


def test_a_patch_in_an_open_window_old_enough_is_applied_with_its_reason() -> None:
    rules = Rules(AutoApply.PATCH, parse_windows("Sat,Sun 02:00-05:00 Europe/Berlin"),
                  maturity=timedelta(hours=24))  # fmt: skip
    decision = decide(rules, old("1.4.2", 31), situation())
    assert decision.action == "apply"
    assert decision.version == "1.4.2"
    assert decision.reason == "1.4.2 is a patch release, window open, 31 h old: applying"


def test_a_minor_release_under_patch_policy_waits_for_an_operator() -> None:
    decision = decide(PATCH, old("1.5.0", 100), situation(latest="1.5.0"))
    assert decision.action == "wait"
    assert decision.reason == "1.5.0 is a minor release, policy patch: waiting for an operator"


@pytest.mark.parametrize(
    ("policy", "latest", "action"),
    [
        (AutoApply.OFF, "1.4.2", "wait"),
        (AutoApply.PATCH, "1.4.2", "apply"),
        (AutoApply.PATCH, "1.5.0", "wait"),
        (AutoApply.MINOR, "1.5.0", "apply"),
        (AutoApply.MINOR, "2.0.0", "wait"),
        (AutoApply.MAJOR, "2.0.0", "apply"),
    ],
)
def test_levels(policy: AutoApply, latest: str, action: str) -> None:
    assert decide(Rules(policy), state(), situation(latest=latest)).action == action


def test_step_sizes() -> None:
    from packaging.version import Version

    assert step(Version("1.4.1"), Version("1.4.2")) is AutoApply.PATCH
    assert step(Version("1.4.1"), Version("1.5.0rc1")) is AutoApply.MINOR
    assert step(Version("1.4.1"), Version("2.0")) is AutoApply.MAJOR
    assert not allowed(AutoApply.OFF, AutoApply.PATCH)
    assert allowed(AutoApply.MAJOR, AutoApply.PATCH)


def test_nothing_newer_is_nothing_to_do() -> None:
    decision = decide(PATCH, state(), situation(latest="1.4.1"))
    assert (decision.action, decision.reason) == ("none", "1.4.1 runs: nothing to do")
    assert decide(PATCH, state(), situation(latest=None)).action == "none"


def test_prerelease_only_on_beta() -> None:
    stable = decide(Rules(AutoApply.MINOR), state(), situation(latest="1.5.0b1"))
    assert stable.action == "wait"
    assert "pre-release" in stable.reason
    beta = decide(Rules(AutoApply.MINOR, channel="beta"), state(), situation(latest="1.5.0b1"))
    assert beta.action == "apply"


def test_window_closed_says_when_it_opens() -> None:
    rules = Rules(AutoApply.PATCH, parse_windows("Sat,Sun 02:00-05:00 Europe/Berlin"))
    monday = NOW + timedelta(days=2)
    decision = decide(rules, state(), situation(now=monday))
    assert decision.action == "wait"
    assert decision.reason.endswith("maintenance window closed: next opens 2026-12-12 01:00 UTC")


def test_maturity_from_first_seen_and_from_image_creation() -> None:
    rules = Rules(AutoApply.PATCH, maturity=timedelta(hours=24))
    young = decide(rules, old("1.4.2", 5), situation())
    assert young.action == "wait"
    assert "5.0 h old (first seen" in young.reason
    assert "waiting until 2026-12-05 21:00 UTC" in young.reason
    # never seen before: seen now, so 0 h old
    assert decide(rules, state(), situation()).action == "wait"
    by_image = Rules(AutoApply.PATCH, maturity=timedelta(hours=24), maturity_from="image_created")
    built_long_ago = situation(created=NOW - timedelta(days=3))
    assert decide(by_image, old("1.4.2", 1), built_long_ago).action == "apply"
    built_now = situation(created=NOW - timedelta(hours=2))
    assert "(image created" in decide(by_image, old("1.4.2", 100), built_now).reason


def test_frozen_marked_skipped_snoozed() -> None:
    frozen = state(frozen=Freeze(at=NOW, reason="the automatic update to 1.4.2 ended rolled_back"))
    decision = decide(PATCH, frozen, situation())
    assert decision.action == "wait"
    assert "auto-apply frozen since" in decision.reason
    bad = VersionMark(version="1.4.2", kind="bad", at=NOW, by="run x", update_id="abc",
                      result="rolled_back")  # fmt: skip
    reason = decide(PATCH, state(marks={"1.4.2": bad}), situation()).reason
    assert reason == "1.4.2 is marked bad (run abc ended rolled_back): not applied automatically"
    skipped = VersionMark(version="1.4.2", kind="skipped", at=NOW, by="ops")
    assert "skipped by ops" in decide(PATCH, state(marks={"1.4.2": skipped}), situation()).reason
    snoozed = VersionMark(version="1.4.2", kind="snoozed", at=NOW, by="ops",
                          until=NOW + timedelta(hours=2))  # fmt: skip
    marks = state(marks={"1.4.2": snoozed})
    assert decide(PATCH, marks, situation()).action == "wait"
    later = situation(now=NOW + timedelta(hours=2))  # the snooze has run out
    assert decide(PATCH, marks, later).action == "apply"


def test_hard_pin_moves_the_stack_to_the_pin_but_never_down() -> None:
    pinned = Rules(AutoApply.PATCH, hard_pin="1.5.0", maturity=timedelta(hours=48))
    decision = decide(pinned, state(), situation(latest="1.6.0"))
    assert decision.action == "apply"  # a minor step and 0 h old: the operator chose it
    assert decision.version == "1.5.0"
    assert decision.reason.startswith("hard-pinned to 1.5.0")
    down = decide(Rules(AutoApply.PATCH, hard_pin="1.4.0"), state(), situation())
    assert down.action == "wait"
    assert "downgrade guard" in down.reason
    same = decide(Rules(AutoApply.PATCH, hard_pin="1.4.1"), state(), situation())
    assert same.action == "none"
    off = decide(Rules(AutoApply.OFF, hard_pin="1.5.0"), state(), situation())
    assert off.action == "wait"  # a pin does not turn auto-apply on


def test_busy_and_unknown_current_version_wait() -> None:
    busy = decide(PATCH, state(), situation(busy="update abc is running"))
    assert busy.action == "wait"
    assert "update abc is running" in busy.reason
    unknown = decide(PATCH, state(), situation(current="latest"))
    assert unknown.action == "wait"
    assert "running version is unknown" in unknown.reason


def test_a_repeated_decision_is_counted_not_appended() -> None:
    memory = state()
    for minute in range(3):
        at = NOW + timedelta(minutes=minute)
        memory.record(Decision(at=at, last_at=at, action="wait", version="1.5.0", reason="same"))
    memory.record(Decision(at=NOW, last_at=NOW, action="wait", version="1.5.0", reason="other"))
    assert [(d.reason, d.count) for d in memory.decisions] == [("same", 3), ("other", 1)]
    assert memory.decisions[0].last_at == NOW + timedelta(minutes=2)
