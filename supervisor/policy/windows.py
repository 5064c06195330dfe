"""Maintenance windows: when an unattended update may *start*.

A window is read and checked in its own time zone's wall-clock time, because that is how an
operator thinks of it ("Saturday and Sunday, 02:00 to 05:00 in Berlin"). Checking wall time
instead of adding hours to a UTC instant is what makes it right across DST changes:

- on the spring-forward night the local hour 02:00-03:00 does not exist, so a window of
  ``02:00-05:00`` lasts two real hours that night, and one of ``02:00-03:00`` does not open;
- on the fall-back night 02:00-03:00 happens twice, and both are inside the window.

A window whose end is before its start crosses midnight; its weekdays name the day it opens
on (``Fri 22:00-02:00`` includes Saturday 01:00). A run only *starts* inside a window; one
that started inside may finish outside (a rollback must never be cut short by a clock).

Text form (environment and policy file alike)::

    [Mon,Tue,…|Mon-Fri|daily] HH:MM-HH:MM [Area/City|UTC]

Weekdays default to every day and the zone to UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = r"(\d{1,2}):(\d{2})"
_PATTERN = re.compile(
    rf"\s*(?:(?P<days>[A-Za-z,\-]+)\s+)?{_TIME}\s*-\s*{_TIME}(?:\s+(?P<zone>\S+))?\s*"
)


_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str) -> int:
    name = name.strip().lower()
    for number, (short, full) in enumerate(zip(DAYS, _FULL, strict=True)):
        if name in (short, full):
            return number
    raise ValueError(f"{name!r} is not a weekday (use Mon, Tue, … Sun, Mon-Fri or daily)")


def _days(text: str) -> tuple[int, ...]:
    """``Sat,Sun``, ``Mon-Fri``, ``Sat-Mon`` (wraps the week), ``daily`` → 0 = Monday."""
    if text.lower() == "daily":
        return tuple(range(7))
    chosen: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        day, end = _day(first), _day(last) if dash else _day(first)
        chosen.add(day)
        while day != end:
            day = (day + 1) % 7
            chosen.add(day)
    return tuple(sorted(chosen))


def zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone (e.g. Europe/Berlin or UTC)") from None


class MaintenanceWindow(BaseModel):
    """One window: weekdays (0 = Monday), a start and end wall time, and a time zone."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    days: tuple[int, ...] = tuple(range(7))
    start: time
    end: time
    tz: str = "UTC"

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        match = _PATTERN.fullmatch(text)
        if not match:
            raise ValueError(
                "must be like 'Sat,Sun 02:00-05:00 Europe/Berlin' "
                "([weekdays] HH:MM-HH:MM [time zone], 24-hour)"
            )
        h1, m1, h2, m2 = (int(g) for g in match.group(2, 3, 4, 5))
        if max(h1, h2) > 23 or max(m1, m2) > 59:
            raise ValueError("hours must be 00-23 and minutes 00-59")
        if (h1, m1) == (h2, m2):
            raise ValueError("start and end are equal, so the window is empty")
        days = _days(match["days"]) if match["days"] else tuple(range(7))
        return cls(days=days, start=time(h1, m1), end=time(h2, m2), tz=match["zone"] or "UTC")

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware; a naive one is taken as UTC) is inside the window."""
        local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone(self.tz))
        now, weekday = local.time().replace(tzinfo=None), local.weekday()
        if not self.crosses_midnight:
            return weekday in self.days and self.start <= now < self.end
        return (weekday in self.days and now >= self.start) or (
            (weekday - 1) % 7 in self.days and now < self.end
        )

    def next_open(self, after: datetime) -> datetime:
        """The first moment after ``after`` at which the window is open (UTC)."""
        after = after if after.tzinfo else after.replace(tzinfo=UTC)
        if self.contains(after):
            return after.astimezone(UTC)
        local_zone = zone(self.tz)
        first: date = after.astimezone(local_zone).date()
        for offset in range(-1, 9):
            day = first + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            # A start inside a spring-forward gap maps to the first real instant after it.
            opening = datetime.combine(day, self.start, tzinfo=local_zone).astimezone(UTC)
            if opening > after:
                return opening
        raise ValueError("the window never opens")  # unreachable: days is never empty

    def __str__(self) -> str:
        days = "daily" if len(self.days) == 7 else ",".join(DAYS[d].title() for d in self.days)
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.tz}"


def parse_windows(text: str) -> list[MaintenanceWindow]:
    """Several windows in one environment variable, separated by ``;``."""
    return [MaintenanceWindow.parse(part) for part in text.split(";") if part.strip()]


def any_open(windows: list[MaintenanceWindow], moment: datetime) -> bool:
    """No window configured means any time; otherwise at least one must be open."""
    return not windows or any(window.contains(moment) for window in windows)


def next_opening(windows: list[MaintenanceWindow], after: datetime) -> datetime | None:
    return min((window.next_open(after) for window in windows), default=None)
