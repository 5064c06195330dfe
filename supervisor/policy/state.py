"""What unattended updates remember across restarts: marks on versions, the freeze, when each
release was first seen, which ones were announced, and the recent decisions.

It lives in ``<state_dir>/policy-state.json``, written atomically after every change: a
freeze that a restart forgot would let the sidecar apply the very version that just failed.
A damaged file is set aside (like every state file) and the sidecar starts *frozen*, saying
why, rather than with a blank memory that would re-apply a version marked bad.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.damage import DamageReport, quarantine
from supervisor.statedir import atomic_write
from supervisor.update.models import utcnow

POLICY_STATE = "policy-state.json"
KEEP_DECISIONS = 200
KEEP_FIRST_SEEN = 200

Action = Literal["apply", "wait", "none"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionMark(_Model):
    """An operator's skip or snooze, or the sidecar's own ``bad`` mark after a failed run."""

    version: str
    kind: Literal["skipped", "snoozed", "bad"]
    at: datetime
    by: str
    note: str = ""
    until: datetime | None = None  # snoozed: until then
    update_id: str | None = None  # bad: the run that failed
    result: str | None = None  # bad: how it ended


class Freeze(_Model):
    """Auto-apply stopped itself; only an operator lifts it."""

    at: datetime
    reason: str
    version: str | None = None
    update_id: str | None = None


class Decision(_Model):
    """One decision of the periodic loop; a repeated one is counted, not appended again."""

    at: datetime
    last_at: datetime
    count: int = 1
    action: Action
    version: str | None = None
    reason: str
    update_id: str | None = None  # the run an ``apply`` started

    def same_as(self, other: Decision) -> bool:
        return (self.action, self.version, self.reason) == (
            other.action,
            other.version,
            other.reason,
        )


class PolicyState(_Model):
    first_seen: dict[str, datetime] = Field(default_factory=dict)
    marks: dict[str, VersionMark] = Field(default_factory=dict)  # version → its mark
    frozen: Freeze | None = None
    announced: list[str] = Field(default_factory=list)  # "update available" sent once each
    decisions: list[Decision] = Field(default_factory=list)

    def record(self, decision: Decision) -> Decision:
        """Append, or count a repeat of the last decision (a quiet loop stays one line)."""
        last = self.decisions[-1] if self.decisions else None
        if last is not None and last.same_as(decision) and decision.update_id is None:
            last.last_at, last.count = decision.at, last.count + 1
            return last
        self.decisions = [*self.decisions, decision][-KEEP_DECISIONS:]
        return decision

    def seen(self, version: str, at: datetime) -> datetime:
        """When ``version`` was first seen (now, if never before)."""
        if version not in self.first_seen:
            self.first_seen[version] = at
            while len(self.first_seen) > KEEP_FIRST_SEEN:
                del self.first_seen[min(self.first_seen, key=self.first_seen.__getitem__)]
        return self.first_seen[version]

    def mark_of(self, version: str, now: datetime) -> VersionMark | None:
        """The version's mark still in force (an expired snooze is none)."""
        mark = self.marks.get(version)
        if mark is not None and mark.kind == "snoozed" and mark.until and mark.until <= now:
            return None
        return mark


class PolicyStore:
    """Reads and writes :class:`PolicyState`; synchronous (call from a thread in async code)."""

    def __init__(self, state_dir: Path, damage: DamageReport | None = None) -> None:
        self.path = state_dir / POLICY_STATE
        self.damage = damage if damage is not None else DamageReport()

    def load(self) -> PolicyState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return PolicyState()
        except OSError as err:
            problem = f"cannot be read ({err.strerror})"
        else:
            try:
                return PolicyState.model_validate_json(data)
            except (ValidationError, ValueError) as err:
                problem = f"not valid policy state ({str(err).splitlines()[0]})"
        moved = quarantine(self.path, POLICY_STATE, problem, self.damage)
        where = f" (kept as {moved.name})" if moved else ""
        return PolicyState(
            frozen=Freeze(
                at=utcnow(),
                reason=f"the policy state file was damaged{where}: its marks and freeze are "
                "lost, so auto-apply stays frozen until an operator has looked",
            )
        )

    def save(self, state: PolicyState) -> None:
        atomic_write(self.path, json.dumps(state.model_dump(mode="json"), indent=1).encode())
