"""Running a few steps of one snapshot operation at the same time, all or nothing.

``asyncio.gather`` leaves the other awaitables running when one fails; a dump or a
restore must not leave a ``pg_dump`` streaming into a folder being removed, so
:func:`together` cancels the rest and waits for them before re-raising.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def together(*steps: Awaitable[Any]) -> list[Any]:
    """The results of ``steps``, run concurrently; on the first failure (or a
    cancellation) the others are cancelled and awaited, then the error is raised."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
