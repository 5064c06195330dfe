"""Which snapshots to delete: keep the newest N, and never one that is still referred to.

A pure function so that the rule is pinned by a table of cases. "Protected"
ids are those the last-good record or an unfinished run refers to: deleting
them would take away the data a rollback or a crash recovery restores. They are
kept *in addition to* the newest N, so protection never pushes a recent
snapshot out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Protocol


class Dated(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


def select_expired(snapshots: Iterable[Dated], keep: int, protected: Collection[str]) -> list[str]:
    """Ids to delete, oldest first. ``keep`` < 1 is refused: it would delete everything."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    newest_first = sorted(snapshots, key=lambda s: (s.created_at, s.id), reverse=True)
    expired = [s.id for s in newest_first[keep:] if s.id not in protected]
    return expired[::-1]
