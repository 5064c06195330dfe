"""Retention keeps the newest N plus every protected snapshot, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from supervisor.snapshots.retention import select_expired

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Snap:
    id: str
    created_at: datetime


def snaps(*names: str) -> list[Snap]:
    """s1 is the oldest; given in scrambled order to prove sorting."""
    made = [Snap(n, T0 + timedelta(hours=int(n[1:]))) for n in names]
    return made[1::2] + made[::2]


CASES = [
    # (snapshots, keep, protected, expected deletions oldest first)
    ((), 5, set(), []),
    (("s1", "s2", "s3"), 5, set(), []),
    (("s1", "s2", "s3", "s4", "s5"), 5, set(), []),
    (("s1", "s2", "s3", "s4", "s5", "s6", "s7"), 5, set(), ["s1", "s2"]),
    (("s1", "s2", "s3"), 1, set(), ["s1", "s2"]),
    (("s1", "s2", "s3", "s4"), 2, {"s1"}, ["s2"]),  # last-good is old: kept
    (("s1", "s2", "s3", "s4"), 2, {"s4"}, ["s1", "s2"]),  # protected among newest: no extra
    (("s1", "s2", "s3", "s4"), 1, {"s1", "s2"}, ["s3"]),  # last-good + unfinished run
    (("s1", "s2"), 1, {"s9"}, ["s1"]),  # a protected id that no longer exists
    (("s1", "s2", "s3"), 1, {"s1", "s2", "s3"}, []),
]


@pytest.mark.parametrize(("names", "keep", "protected", "expected"), CASES)
def test_retention(
    names: tuple[str, ...], keep: int, protected: set[str], expected: list[str]
) -> None:
    assert select_expired(snaps(*names), keep, protected) == expected


PARTIAL_CASES = [
    # (snapshots, partial ones, keep, protected, expected): only whole ones count toward keep
    (("s1", "s2", "s3", "s4", "s5"), {"s3", "s4", "s5"}, 2, set(), []),  # 3 failed runs
    (("s1", "s2", "s3", "s4", "s5"), {"s2", "s4"}, 2, set(), ["s1", "s2"]),
    (("s1", "s2", "s3", "s4"), {"s4"}, 1, set(), ["s1", "s2"]),  # the partial newest: kept
    (("s1", "s2", "s3"), {"s1", "s2", "s3"}, 2, set(), []),  # no whole one: nothing goes
    (("s1", "s2", "s3", "s4"), {"s2"}, 1, {"s2"}, ["s1", "s3"]),
]


@pytest.mark.parametrize(("names", "partial", "keep", "protected", "expected"), PARTIAL_CASES)
def test_partial_snapshots_do_not_count_toward_keep(
    names: tuple[str, ...], partial: set[str], keep: int, protected: set[str], expected: list[str]
) -> None:
    whole = select_expired(snaps(*names), keep, protected, whole=lambda s: s.id not in partial)
    assert whole == expected


def test_same_second_breaks_ties_by_id() -> None:
    same = [Snap("b", T0), Snap("a", T0), Snap("c", T0)]
    assert select_expired(same, 2, set()) == ["a"]


def test_keep_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        select_expired(snaps("s1"), 0, set())
