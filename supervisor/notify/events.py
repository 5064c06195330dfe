"""What the supervisor tells people about: the notification events and one message.

A :class:`Notice` is built once, by the code that knows what happened (the update
manager, the release policy), and then handed to :class:`supervisor.notify.dispatch.Notifier`,
which sends the same notice to every channel whose filter admits its event. A notice is
plain data (no secrets, JSON-safe ``fields``), so the webhook can serialise it as it is.

This module imports nothing but the standard library: the domain may build notices
without pulling in Apprise or aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class NotifyEvent(StrEnum):
    """The events an operator can subscribe to (``[notifications] events`` in the policy)."""

    UPDATE_AVAILABLE = "update_available"  # once per version, when a release is first seen
    STARTED = "started"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    NEEDS_INTERVENTION = "needs_intervention"
    FROZEN = "frozen"  # auto-apply froze itself after an automatic run went wrong


ALL_EVENTS: frozenset[NotifyEvent] = frozenset(NotifyEvent)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Notice:
    """One message: a short title, a plain-text body, and the facts behind it.

    ``fields`` holds JSON-safe values only (str, int, float, bool, None): the webhook
    sends them as they are. ``project`` is the Compose project the message is about, so
    one receiver can serve several stacks.
    """

    event: NotifyEvent
    title: str
    body: str
    fields: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=_now)
    project: str = ""

    def as_json(self) -> dict[str, Any]:
        """The webhook body (documented in docs/notifications.md)."""
        return {
            "event": str(self.event),
            "title": self.title,
            "body": self.body,
            "fields": dict(self.fields),
            "at": self.at.isoformat(),
            "project": self.project,
        }
