"""Fault injection for the real-engine crash tests: hold the run at a named point.

A no-op unless ``STACKSUP_FAULT_HOLD`` is set, which production never does.
"""

from __future__ import annotations

import asyncio
import logging
import os

_LOGGER = logging.getLogger(__name__)


async def fault_point(name: str) -> None:
    """Fault injection for the crash tests: pause at a named point after it is journaled.

    ``STACKSUP_FAULT_HOLD=<point>:<seconds>`` (outside the ``SUPERVISOR_``
    settings on purpose) lets the real-engine crash tests kill the process at
    an exact point even when the work around it takes milliseconds: every
    stage boundary (``backup``) and the steps inside the rollback
    (``rollback.pre-rollback-taken`` …, see :mod:`supervisor.update.rollback`).
    Unset in production: a no-op.
    """
    hold = os.environ.get("STACKSUP_FAULT_HOLD")
    if hold:
        point, _, seconds = hold.rpartition(":")
        if point == name:
            _LOGGER.warning("fault injection: holding %s for %s s", name, seconds)
            await asyncio.sleep(float(seconds or 5))
