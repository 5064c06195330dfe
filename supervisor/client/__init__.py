"""Async Python client of the sidecar's API, for backends and the CLI (see ``_client.py``)."""

from __future__ import annotations

from ._client import SupervisorClient
from ._errors import SidecarUnreachable, error_from_answer
from ._sse import SSEMessage, SSEParser

__all__ = ["SSEMessage", "SSEParser", "SidecarUnreachable", "SupervisorClient", "error_from_answer"]
