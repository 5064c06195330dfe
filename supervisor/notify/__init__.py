"""Notifications: tell someone what the supervisor did, off the update's path.

``events`` (what a notice is), ``messages`` (the wording per event) and ``config`` (the
``[notifications]`` policy table) import no network library, so the domain may use them.
The sending side lives in ``dispatch`` (:class:`~supervisor.notify.dispatch.Notifier`) and
``channels`` (Apprise, the signed webhook): import those from where the app is wired.
"""

from .config import NotificationSettings
from .events import ALL_EVENTS, Notice, NotifyEvent
from .messages import notice_for_run, notice_frozen, notice_update_available
from .signing import verify_signature

__all__ = [
    "ALL_EVENTS",
    "Notice",
    "NotificationSettings",
    "NotifyEvent",
    "notice_for_run",
    "notice_frozen",
    "notice_update_available",
    "verify_signature",
]
