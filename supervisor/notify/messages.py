"""The wording of every notice: one concise title and a few lines of body per event.

Titles read well in a phone notification (``canopy: update 1.4.1 → 1.4.2 rolled back``);
bodies say what happened, how long it took, which snapshot holds the data from before,
and what the operator should do next. The same facts go into ``Notice.fields`` for
machines (the webhook). Nothing here holds a secret: run errors are the same messages
``GET /admin/update/status`` already serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from supervisor.update.models import RunRecord

from .events import Notice, NotifyEvent

_OUTCOME = {
    NotifyEvent.STARTED: "started",
    NotifyEvent.COMPLETED: "completed",
    NotifyEvent.ROLLED_BACK: "rolled back",
    NotifyEvent.FAILED: "failed",
    NotifyEvent.NEEDS_INTERVENTION: "needs intervention",
}
RUN_EVENTS = frozenset(_OUTCOME)


def _prefix(project: str) -> str:
    return f"{project}: " if project else ""


def _version(value: str | None) -> str:
    return value or "unknown"


def format_duration(seconds: float) -> str:
    """``42 s``, ``4 min 12 s``, ``1 h 5 min``: what a person reads at a glance."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def notice_for_run(record: RunRecord, event: NotifyEvent, *, project: str) -> Notice:
    """The notice for a run that started or ended (``event`` is one of :data:`RUN_EVENTS`)."""
    if event not in RUN_EVENTS:
        raise ValueError(f"{event} is not a run event")
    now = datetime.now(UTC)
    ended = record.finished_at or now
    duration = None if event is NotifyEvent.STARTED else (ended - record.started_at)
    duration_s = None if duration is None else round(max(0.0, duration.total_seconds()), 1)
    took = format_duration(duration_s) if duration_s is not None else ""
    source, target = _version(record.from_version), _version(record.target_version)
    run = f"Update {record.update_id} ({record.trigger})"
    status = f"`supervisor status --id {record.update_id}`"
    error = record.error
    what = _sentence(f"at {error.stage}: {error.message}") if error else "(no error recorded)."
    restored = record.rollback is not None and record.rollback.restored

    lines: list[str]
    if event is NotifyEvent.STARTED:
        lines = [
            f"{run} started at {record.started_at:%Y-%m-%d %H:%M:%S %Z}.",
            "Another message follows when it ends.",
        ]
    elif event is NotifyEvent.COMPLETED:
        lines = [f"{run} completed in {took}; the stack runs {target}."]
        if record.snapshot_id:
            lines.append(f"Snapshot from before the update: {record.snapshot_id}.")
        if record.warnings:
            lines.append(f"{len(record.warnings)} warning(s): see {status}.")
    elif event is NotifyEvent.ROLLED_BACK:
        lines = [
            f"{run} failed {what}",
            f"Rolled back after {took}: the stack runs {source} again.",
        ]
        if record.snapshot_id and restored:
            lines.append(f"Data restored from snapshot {record.snapshot_id}.")
        elif record.snapshot_id:
            lines.append(f"Data was not restored; snapshot {record.snapshot_id} is kept.")
        lines.append(f"Next: read the log with {status} and fix the cause before {target} again.")
    elif event is NotifyEvent.FAILED:
        lines = [
            f"{run} failed after {took} {what}",
            f"Nothing needed rolling back: the stack stays on {source}.",
            f"Next: read the log with {status}.",
        ]
    else:  # NEEDS_INTERVENTION
        lines = [f"{run} stopped after {took} {what}", "It could not finish or roll back alone."]
        if record.kept:
            lines.append("Kept for you: " + ", ".join(record.kept) + ".")
        if record.snapshot_id:
            lines.append(f"Snapshot from before the update: {record.snapshot_id}.")
        lines.append(
            "Updates stay blocked until an operator repairs the stack and runs "
            f"`supervisor acknowledge {record.update_id}`."
        )

    fields: dict[str, Any] = {
        "update_id": record.update_id,
        "trigger": record.trigger,
        "from_version": record.from_version,
        "to_version": record.target_version,
        "state": str(record.state),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration_s": duration_s,
        "snapshot_id": record.snapshot_id,
        "error": error.message if error else None,
        "error_key": error.error_key if error else None,
        "error_stage": str(error.stage) if error else None,
        "data_restored": restored,
        "services": sorted(record.services),
    }
    return Notice(
        event=event,
        title=f"{_prefix(project)}update {source} → {target} {_OUTCOME[event]}",
        body="\n".join(lines),
        fields=fields,
        at=record.started_at if event is NotifyEvent.STARTED else ended,
        project=project,
    )


def notice_update_available(
    version: str, current: str | None, services: Mapping[str, str], *, project: str
) -> Notice:
    """A release was seen for the first time (the policy sends this once per version).

    ``services`` maps each managed service to the image the release would run."""
    lines = [f"Version {version} is available; the stack runs {_version(current)}."]
    lines += [f"  {name}: {image}" for name, image in sorted(services.items())]
    lines.append(
        f"See what it would change with `supervisor plan {version}`; apply it with "
        f"`supervisor update {version}`, or let the auto-apply policy decide."
    )
    return Notice(
        event=NotifyEvent.UPDATE_AVAILABLE,
        title=f"{_prefix(project)}update {_version(current)} → {version} available",
        body="\n".join(lines),
        fields={"from_version": current, "to_version": version, "services": dict(services)},
        project=project,
    )


def notice_frozen(reason: str, version: str, update_id: str | None, *, project: str) -> Notice:
    """Auto-apply froze itself after an automatic run of ``version`` went wrong."""
    run = f" (run {update_id})" if update_id else ""
    return Notice(
        event=NotifyEvent.FROZEN,
        title=f"{_prefix(project)}auto-apply frozen after {version}",
        body="\n".join(
            [
                f"Automatic updates are frozen: {reason}.",
                f"Version {version} is marked bad{run}. Manual updates still work.",
                "Next: fix the cause, then unfreeze auto-apply (runbook: unattended updates).",
            ]
        ),
        fields={"to_version": version, "update_id": update_id, "reason": reason},
        project=project,
    )
