"""The API's own refusals and the one JSON error envelope (rendered by ``middleware.py``).

These sit under the package's root error like every other one (candidates to move into
``supervisor/exceptions.py``); ``envelope`` is the only shape an error body ever has.
"""

from __future__ import annotations

from typing import Any

from supervisor.exceptions import APIError, Forbidden


class UnsupportedMediaType(APIError):
    status = 415
    error_key = "unsupported_media_type"


class RestoreDisabled(Forbidden):
    """Restoring over HTTP is off (``SUPERVISOR_RESTORE_OVER_HTTP``): an operator decision."""

    error_key = "restore_disabled"


class JobRunning(APIError):
    """A snapshot or restore job is already running."""

    status = 409
    error_key = "job_running"


def envelope(error_key: str, message: str, update_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error_key": error_key, "message": message}
    if update_id is not None:
        body["update_id"] = update_id
    return body
