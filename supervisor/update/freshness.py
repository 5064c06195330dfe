"""What the last release check found, and whether the running stack is behind it.

The check runs at start-up and then periodically (``supervisor serve``), and on demand
(``POST /admin/update/check``). :class:`ReleaseWatch` keeps its outcome: the newest release
of the channel with its per-service digests and when it was seen, or the error of the last
attempt. ``update_available`` is never stored: :func:`service_freshness` compares the
release with the stack as it runs *now*, so it is right after every run and every check
without anyone remembering to recompute it.

Per service it reports what a UI needs (the shape of seed 003's ``components``): current tag
and digest, latest tag and digest, ``update_available`` and ``last_checked``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from packaging.version import InvalidVersion, Version

from supervisor.exceptions import SupervisorError
from supervisor.update.models import iso_z, utcnow
from supervisor.update.release import Release

_LOGGER = logging.getLogger(__name__)
RETRY_AFTER_FAILURE = 60.0  # a failed check is retried after 1, 2, 4 … minutes, up to the interval


@dataclass(frozen=True)
class CheckFailure:
    error_key: str
    message: str
    at: datetime


class ReleaseWatch:
    """The outcome of the last release check (kept in memory; a restart checks again)."""

    def __init__(self) -> None:
        self.release: Release | None = None
        self.channel: str | None = None
        self.checked_at: datetime | None = None  # the last *successful* check
        self.failure: CheckFailure | None = None  # the last attempt, if it failed
        self.checked = asyncio.Event()  # set after each successful check (auto-apply waits)

    def succeeded(self, release: Release, channel: str, at: datetime | None = None) -> None:
        self.release, self.channel = release, channel
        self.checked_at = at or utcnow()
        self.failure = None
        self.checked.set()  # the auto-apply loop decides on it now

    def failed(self, err: Exception, at: datetime | None = None) -> None:
        """Keep the last good answer; remember why this attempt failed (no paths, no URLs)."""
        if isinstance(err, SupervisorError):
            key, message = err.error_key, err.message
        else:
            key, message = "check_failed", f"the release check failed ({type(err).__name__})"
        self.failure = CheckFailure(key, message, at or utcnow())

    def latest(self) -> dict[str, Any] | None:
        """The newest release known, or None before the first successful check."""
        if self.release is None:
            return None
        return {
            "version": self.release.version,
            "channel": self.channel,
            "services": {name: str(ref) for name, ref in self.release.images.items()},
            "checked_at": iso_z(self.checked_at),
        }

    def check_status(self) -> dict[str, Any]:
        failure = self.failure
        return {
            "checked_at": iso_z(self.checked_at),
            "error": None
            if failure is None
            else {
                "error_key": failure.error_key,
                "message": failure.message,
                "at": iso_z(failure.at),
            },
        }


async def check_periodically(
    check: Callable[[], Awaitable[dict[str, Any]]],
    first_delay: float,
    interval: Callable[[], float],
) -> None:
    """Check shortly after start-up, then every ``interval()`` seconds (read anew each time: a
    policy reload may change it); retry failures sooner.

    A failure (registry down while the stack boots, say) is kept by the watch and reported
    in ``/admin/version``; it must not leave ``latest`` unknown for a whole interval.
    """
    await asyncio.sleep(first_delay)
    retry = RETRY_AFTER_FAILURE
    while True:
        try:
            latest = await check()
        except Exception as err:
            _LOGGER.warning(
                "release check failed (%s); next try in %.0f s", err, min(retry, interval())
            )
            await asyncio.sleep(min(retry, interval()))
            retry *= 2
            continue
        _LOGGER.info("release check: latest %s", latest.get("version"))
        retry = RETRY_AFTER_FAILURE
        await asyncio.sleep(interval())


def _behind(
    latest: str | None, current: str | None, latest_digest: str | None, current_digest: str | None
) -> bool:
    """Is ``latest`` an update for what runs? Versions decide; digests when a version is unknown."""
    if latest is None:
        return False
    try:
        if current is not None:
            return Version(latest) > Version(current)
    except InvalidVersion:
        pass
    return latest_digest is not None and latest_digest != current_digest


def service_freshness(
    watch: ReleaseWatch,
    name: str,
    current_tag: str | None,
    current_digest: str | None,
) -> dict[str, Any]:
    """One service as seed 003 reports a component, with digests."""
    release = watch.release
    latest: dict[str, str | None] | None = None
    if release is not None and name in release.images:
        latest = {"tag": release.version, "digest": release.images[name].digest}
    return {
        "current": {"tag": current_tag, "digest": current_digest},
        "latest": latest,
        "update_available": latest is not None
        and _behind(latest["tag"], current_tag, latest["digest"], current_digest),
        "last_checked": iso_z(watch.checked_at),
    }
