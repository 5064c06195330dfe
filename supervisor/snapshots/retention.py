"""Which snapshots to delete: keep the newest N, and never one that is still referred to.

A pure function so that the rule is pinned by a table of cases. "Protected"
ids are those the last-good record or an unfinished run refers to: deleting
them would take away the data a rollback or a crash recovery restores. They are
kept *in addition to* the newest N, so protection never pushes a recent
snapshot out.

Only *whole* snapshots count toward N: those that can bring a known-good
version back. A partial one (a pre-update snapshot whose database dump, to
come from the rollback copy, never completed; a rollback's InfluxDB-only
backup) or a pre-rollback dump (the failed version's data) cannot: three
failed runs must not push the last whole snapshot out. Such a snapshot is
kept while it is newer than the oldest of the N whole ones, and expires with it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Protocol, TypeVar


class Dated(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


D = TypeVar("D", bound=Dated)


def select_expired(
    snapshots: Iterable[D],
    keep: int,
    protected: Collection[str],
    whole: Callable[[D], bool] = lambda _: True,
) -> list[str]:
    """Ids to delete, oldest first. ``keep`` < 1 is refused: it would delete everything.
    ``whole`` tells the snapshots that count toward ``keep`` (see the module docstring)."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    newest_first = sorted(snapshots, key=lambda s: (s.created_at, s.id), reverse=True)
    counted, cut = 0, len(newest_first)
    for index, snapshot in enumerate(newest_first):
        if whole(snapshot):
            counted += 1
            if counted == keep:
                cut = index + 1
                break
    expired = [s.id for s in newest_first[cut:] if s.id not in protected]
    return expired[::-1]
