"""The decision of one tick of the periodic loop: apply a release now, wait, or nothing to do.

A pure function of the rules, the remembered state and the situation (clock included), so
every branch is tested with an injected clock, and the reason it gives is exactly the rule
that decided. Checks come in the order an operator asks "why not?": is there anything newer,
may auto-apply take it at all (off, frozen, marked, too big a step), is it old enough, is the
window open, is the stack free. The first that says no is the reason.

A hard pin names the version the operator wants: it is the candidate instead of the newest
release, and the step size and maturity do not apply to it (the operator chose it), but the
freeze, the marks, the window and the downgrade guard do, and auto-apply must not be off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from packaging.version import InvalidVersion, Version

from supervisor.policy.levels import AutoApply, allowed, step
from supervisor.policy.state import Decision, PolicyState
from supervisor.policy.windows import MaintenanceWindow, any_open, next_opening

MaturityFrom = Literal["first_seen", "image_created"]


@dataclass(frozen=True)
class Rules:
    """The effective unattended-update policy (from the policy file or the environment)."""

    auto_apply: AutoApply = AutoApply.OFF
    windows: list[MaintenanceWindow] = field(default_factory=list)
    maturity: timedelta = timedelta(0)
    maturity_from: MaturityFrom = "first_seen"
    hard_pin: str | None = None
    channel: str = "stable"


@dataclass(frozen=True)
class Situation:
    now: datetime
    current: str | None  # the running version
    latest: str | None  # the newest release of the channel, from the last check
    created: datetime | None = None  # the candidate image's creation time, when known
    busy: str | None = None  # why no run may start now (one is running, needs_intervention …)


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text is not None else None
    except InvalidVersion:
        return None


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 10 else f"{hours:.0f} h"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def decide(rules: Rules, state: PolicyState, situation: Situation) -> Decision:
    now = situation.now

    def result(action: Literal["apply", "wait", "none"], version: str | None, why: str) -> Decision:
        return Decision(at=now, last_at=now, action=action, version=version, reason=why)

    pinned = rules.hard_pin is not None
    candidate = rules.hard_pin if pinned else situation.latest
    if candidate is None:
        return result("none", None, "no release known yet (the release check has not answered)")
    target, current = _version(candidate), _version(situation.current)
    if target is None:
        return result("wait", candidate, f"{candidate} is not a version: waiting for an operator")
    if current is None:
        return result(
            "wait",
            candidate,
            f"the running version is unknown ({situation.current or 'none'}), so {candidate} "
            "cannot be compared with it: waiting for an operator",
        )
    if target <= current:
        if pinned and target < current:
            return result(
                "wait",
                candidate,
                f"hard-pinned to {candidate}, older than the running {situation.current}: "
                "the downgrade guard leaves that to an operator",
            )
        what = f"hard-pinned to {candidate}, which runs" if pinned else f"{situation.current} runs"
        return result("none", candidate, f"{what}: nothing to do")
    kind = step(current, target)
    described = f"{candidate} is a {kind.value} release"
    if target.is_prerelease and rules.channel != "beta" and not pinned:
        return result(
            "wait", candidate, f"{candidate} is a pre-release, channel stable: not applied"
        )
    if rules.auto_apply is AutoApply.OFF:
        return result("wait", candidate, f"{described}, auto-apply off: waiting for an operator")
    if state.frozen is not None:
        return result(
            "wait",
            candidate,
            f"auto-apply frozen since {_when(state.frozen.at)} ({state.frozen.reason}): "
            "waiting for an operator to unfreeze",
        )
    mark = state.mark_of(candidate, now)
    if mark is not None:
        why = {
            "bad": f"{candidate} is marked bad (run {mark.update_id} ended {mark.result})",
            "skipped": f"{candidate} was skipped by {mark.by}",
            "snoozed": f"{candidate} is snoozed until {_when(mark.until or now)} by {mark.by}",
        }[mark.kind]
        return result("wait", candidate, f"{why}: not applied automatically")
    if not pinned and not allowed(rules.auto_apply, kind):
        return result(
            "wait",
            candidate,
            f"{described}, policy {rules.auto_apply.value}: waiting for an operator",
        )
    age_text = ""
    if not pinned:
        since, source = state.first_seen.get(candidate, now), "first seen"
        if rules.maturity_from == "image_created" and situation.created is not None:
            since, source = situation.created, "image created"
        age = now - since
        age_text = f", {_hours(age)} old"
        if age < rules.maturity:
            return result(
                "wait",
                candidate,
                f"{described}, {_hours(age)} old ({source} {_when(since)}), maturity "
                f"{_hours(rules.maturity)}: waiting until {_when(since + rules.maturity)}",
            )
    if not any_open(rules.windows, now):
        opens = next_opening(rules.windows, now)
        return result(
            "wait",
            candidate,
            f"{described}, maintenance window closed: next opens {_when(opens or now)}",
        )
    if situation.busy is not None:
        return result("wait", candidate, f"{described}, but {situation.busy}: waiting")
    window = "window open" if rules.windows else "no window set"
    lead = f"hard-pinned to {candidate}" if pinned else described
    return result("apply", candidate, f"{lead}, {window}{age_text}: applying")
