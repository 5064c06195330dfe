"""What the HTTP API and the CLI ask of the update machinery.

:class:`supervisor.update.manager.UpdateManager` implements it; API tests may
use a fake. Every method raises :mod:`supervisor.exceptions` API errors
(``InvalidVersion``, ``AlreadyCurrent``, ``UpdateRunning``, ``NoUpdate``,
``UpdateNotFound``, ``NotCancellable`` …) that map straight to HTTP statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from supervisor.update.models import RunEvent, RunRecord, StartRequest


class UpdateService(Protocol):
    async def start(self, request: StartRequest, trigger: str = "api") -> RunRecord:
        """Validate (target exists, not a downgrade, not frozen, none running) and start.

        Returns once the run is journaled and running in the background.
        """
        ...

    def status(self, update_id: str | None = None) -> RunRecord:
        """The given run, or the current/last one when ``update_id`` is None."""
        ...

    def events(
        self, update_id: str | None = None, after: int | None = None
    ) -> AsyncIterator[RunEvent]:
        """The run's events with id > ``after``, then live ones; ends after ``result``."""
        ...

    async def cancel(self, update_id: str) -> RunRecord: ...

    def blocking_run(self) -> RunRecord | None:
        """The ``needs_intervention`` run that blocks starts until acknowledged, if any."""
        ...

    async def acknowledge(self, update_id: str, by: str, note: str = "") -> RunRecord:
        """An admin takes over a ``needs_intervention`` run; starts are allowed again."""
        ...

    async def wait(self, update_id: str) -> RunRecord:
        """Until the run has ended."""
        ...

    async def version_info(self) -> dict[str, Any]:
        """``GET /admin/version``: current per service, latest, last result."""
        ...

    async def check(self) -> dict[str, Any]:
        """Refresh and return the latest available release."""
        ...

    async def plan(self, target_version: str | None = None, force: bool = False) -> dict[str, Any]:
        """Dry run: what an update would change and what would block it."""
        ...

    def history(self, limit: int = 50) -> list[RunRecord]: ...
