"""From an HTTP answer back to the package's exceptions, by ``error_key``.

The API renders every :class:`~supervisor.exceptions.SupervisorError` as
``{"error_key", "message", "update_id"?}``; the client raises the class with that key again
(``UpdateRunning``, ``AlreadyCurrent`` …), so a backend handles a refusal the same whether it
came from the manager in-process or over HTTP. An unknown key (a newer sidecar) becomes a
subclass made on the fly with the answered status. Not reaching the sidecar at all is
:class:`SidecarUnreachable`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from supervisor.api.errors import http_status
from supervisor.exceptions import APIError, SidecarUnreachable, SupervisorError

__all__ = ["SidecarUnreachable", "error_from_answer"]


def _subclasses(cls: type[SupervisorError]) -> list[type[SupervisorError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


@cache
def _by_key() -> dict[tuple[str, int], type[SupervisorError]]:
    """(error_key, status) → class; subclasses after their parents, so the specific wins."""
    return {(cls.error_key, http_status(cls)): cls for cls in _subclasses(SupervisorError)}


@cache
def _unknown(error_key: str, status: int) -> type[SupervisorError]:
    base = APIError if status < 500 else SupervisorError
    return type(f"RemoteError_{error_key}", (base,), {"status": status, "error_key": error_key})


def error_from_answer(status: int, body: Any) -> SupervisorError:
    if not isinstance(body, dict) or not isinstance(body.get("error_key"), str):
        key = "bad_request" if 400 <= status < 500 else "internal_error"
        return _unknown(key, status)(f"HTTP {status} without an error envelope")
    key, message = body["error_key"], str(body.get("message", ""))
    cls = _by_key().get((key, status)) or _unknown(key, status)
    details = {"update_id": body["update_id"]} if body.get("update_id") else {}
    return cls(message, **details)
