"""The internal REST API of the sidecar (aiohttp).

``create_app(settings, updates, snapshots)`` builds it around an
:class:`~supervisor.update.protocol.UpdateService` and the snapshot adapter
(:class:`~supervisor.snapshots.protocol.Snapshots`); see
``app.py`` for the route table and ``docs/api.md`` for the contract.
"""

from __future__ import annotations

from .app import ROUTES, Route, create_app
from .const import Scope
from .keys import ApiOptions

__all__ = ["ROUTES", "ApiOptions", "Route", "Scope", "create_app"]
