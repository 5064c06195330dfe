"""The client lifecycle of an in-memory registry: nothing to open or close.

The registry Protocol is an async context manager with ``close``; the test registries that
hold everything in memory (tests/support/fakes.py, signer_registry.py) share this.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class NothingToClose:
    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
