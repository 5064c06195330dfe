"""Maintenance windows in their own zone's wall time: weekdays, midnight, DST, parsing."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from supervisor.policy.windows import MaintenanceWindow, any_open, next_opening, parse_windows

pytestmark = pytest.mark.unit

BERLIN_WEEKEND = MaintenanceWindow.parse("Sat,Sun 02:00-05:00 Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (utc(2026, 12, 5, 0, 59), False),  # Sat 01:59 CET
        (utc(2026, 12, 5, 1, 0), True),  # Sat 02:00 CET: the start is inside
        (utc(2026, 12, 5, 3, 59), True),  # Sat 04:59 CET
        (utc(2026, 12, 5, 4, 0), False),  # Sat 05:00 CET: the end is outside
        (utc(2026, 12, 6, 2, 0), True),  # Sun 03:00 CET
        (utc(2026, 12, 7, 2, 0), False),  # Mon 03:00 CET: not a window day
        (utc(2026, 7, 4, 0, 30), True),  # Sat 02:30 CEST (summer: UTC+2)
        (utc(2026, 7, 4, 3, 0), False),  # Sat 05:00 CEST
    ],
)
def test_weekday_window_in_its_zone(moment: datetime, inside: bool) -> None:
    assert BERLIN_WEEKEND.contains(moment) is inside


def test_spring_forward_night_the_skipped_hour_never_opens_the_window() -> None:
    """2026-03-29 Europe/Berlin: 02:00 CET jumps to 03:00 CEST."""
    assert not BERLIN_WEEKEND.contains(utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert BERLIN_WEEKEND.contains(utc(2026, 3, 29, 1, 0))  # 03:00 CEST: inside, 2 real hours
    assert not BERLIN_WEEKEND.contains(utc(2026, 3, 29, 3, 0))  # 05:00 CEST
    gap = MaintenanceWindow.parse("Sun 02:00-03:00 Europe/Berlin")
    assert not any(gap.contains(utc(2026, 3, 29, 0, m)) for m in range(0, 60, 5))
    assert not any(gap.contains(utc(2026, 3, 29, 1, m)) for m in range(0, 60, 5))


def test_fall_back_night_the_repeated_hour_is_inside_twice() -> None:
    """2026-10-25 Europe/Berlin: 03:00 CEST falls back to 02:00 CET; 4 real hours."""
    assert BERLIN_WEEKEND.contains(utc(2026, 10, 25, 0, 0))  # 02:00 CEST
    assert BERLIN_WEEKEND.contains(utc(2026, 10, 25, 1, 30))  # 02:30 CET (second time)
    assert BERLIN_WEEKEND.contains(utc(2026, 10, 25, 3, 59))  # 04:59 CET
    assert not BERLIN_WEEKEND.contains(utc(2026, 10, 25, 4, 0))


def test_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = MaintenanceWindow.parse("Fri 22:00-02:00")
    assert friday_night.crosses_midnight
    assert friday_night.contains(utc(2026, 12, 4, 23, 0))  # Fri 23:00
    assert friday_night.contains(utc(2026, 12, 5, 1, 59))  # Sat 01:59: still Friday's window
    assert not friday_night.contains(utc(2026, 12, 5, 2, 0))
    assert not friday_night.contains(utc(2026, 12, 5, 23, 0))  # Sat 23:00: not a window day
    assert not friday_night.contains(utc(2026, 12, 4, 1, 0))  # Fri 01:00 is Thursday's night


def test_next_opening_across_days_and_dst() -> None:
    assert BERLIN_WEEKEND.next_open(utc(2026, 11, 30, 10, 0)) == utc(2026, 12, 5, 1, 0)
    assert BERLIN_WEEKEND.next_open(utc(2026, 7, 1)) == utc(2026, 7, 4, 0, 0)  # CEST
    # an open window opens "now"
    assert BERLIN_WEEKEND.next_open(utc(2026, 12, 5, 2, 0)) == utc(2026, 12, 5, 2, 0)
    # spring forward (Sun 2026-03-29): the local start 02:00 does not exist; the window
    # opens at the first real instant after the gap, 03:00 CEST = 01:00 UTC
    opening = BERLIN_WEEKEND.next_open(utc(2026, 3, 28, 12, 0))
    assert opening == utc(2026, 3, 29, 1, 0)
    assert BERLIN_WEEKEND.contains(opening)
    nightly = parse_windows("Mon-Fri 22:00-02:00 America/New_York; Sat,Sun 03:00-04:00")
    assert next_opening(nightly, utc(2026, 12, 5, 2, 30)) == utc(2026, 12, 5, 3, 0)


def test_no_window_means_any_time_and_several_windows_any_of_them() -> None:
    assert any_open([], utc(2026, 1, 1, 12, 0))
    windows = parse_windows("Sat 02:00-03:00 UTC; Wed 12:00-13:00 UTC")
    assert any_open(windows, utc(2026, 12, 2, 12, 30))  # Wednesday
    assert not any_open(windows, utc(2026, 12, 3, 12, 30))  # Thursday


@pytest.mark.parametrize(
    ("text", "days", "start", "end", "tz"),
    [
        ("02:00-05:00", (0, 1, 2, 3, 4, 5, 6), time(2), time(5), "UTC"),
        ("daily 2:00-5:30 UTC", (0, 1, 2, 3, 4, 5, 6), time(2), time(5, 30), "UTC"),
        ("Mon-Fri 22:00-06:00 Europe/Berlin", (0, 1, 2, 3, 4), time(22), time(6), "Europe/Berlin"),
        ("Sat-Mon 01:00-02:00", (0, 5, 6), time(1), time(2), "UTC"),
        ("saturday,Sunday 01:00-02:00", (5, 6), time(1), time(2), "UTC"),
    ],
)
def test_parsing(text: str, days: tuple[int, ...], start: time, end: time, tz: str) -> None:
    window = MaintenanceWindow.parse(text)
    assert (window.days, window.start, window.end, window.tz) == (days, start, end, tz)
    assert MaintenanceWindow.parse(str(window)) == window  # its text form reads back


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2-4", "must be like"),
        ("Sat 25:00-03:00", "hours must be"),
        ("Sat 02:00-02:00", "window is empty"),
        ("Funday 02:00-03:00", "is not a weekday"),
        ("Sat 02:00-03:00 Europe/Atlantis", "is not a time zone"),
    ],
)
def test_bad_windows_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MaintenanceWindow.parse(text)
