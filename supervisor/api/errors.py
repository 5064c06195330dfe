"""The API's own refusals and the one JSON error envelope (rendered by ``middleware.py``).

The API's refusals live in :mod:`supervisor.exceptions` with every other error (re-exported
here for the handlers); ``envelope`` is the only shape an error body ever has.
"""

from __future__ import annotations

from typing import Any

from supervisor.exceptions import JobRunning, RestoreDisabled, UnsupportedMediaType


def envelope(error_key: str, message: str, update_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error_key": error_key, "message": message}
    if update_id is not None:
        body["update_id"] = update_id
    return body


__all__ = ["JobRunning", "RestoreDisabled", "UnsupportedMediaType", "envelope"]
