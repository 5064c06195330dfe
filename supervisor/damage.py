"""State files a crash or a failing disk damaged: set aside, reported, never fatal.

Every whole-file write in ``state/`` and ``backups/`` is atomic, so a torn file means a disk
problem, a hand edit or a crash in an append (``history.jsonl``). None of that may stop the
sidecar: an operator needs it running to see what happened and to restore. So a reader that
meets a damaged file or line

* skips it (a history line, a snapshot folder with an undecodable manifest), or
* :func:`quarantine`\\ s it (a whole file such as ``current-run.json``): renamed to
  ``<name>.corrupt-<UTC timestamp>`` next to the original, kept for the operator and out of the
  way of the next read;

and tells the :class:`DamageReport`, which logs a warning naming the file and counts it by
file kind. ``/metrics`` renders the counts as ``supervisor_state_damaged_total{file=…}``
(see :class:`supervisor.api.metrics.DamageMetrics`). A damaged line or folder is read again at
every listing, so it is logged and counted once per process, not once per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

# The file kinds that are counted (the ``file`` label), all present from the start at zero.
CURRENT_RUN = "current-run.json"
HISTORY = "history.jsonl"
LAST_GOOD = "last-good.json"
PINS = "versions.env"
MANIFEST = "manifest.json"
KINDS = (CURRENT_RUN, HISTORY, LAST_GOOD, PINS, MANIFEST)


class DamageReport:
    """Logs and counts damaged state per process; shared by the state and snapshot stores.

    Thread-safe: the stores are called from worker threads (``asyncio.to_thread``).
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter(dict.fromkeys(KINDS, 0))
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def report(self, kind: str, where: str, problem: str) -> bool:
        """Log and count damage at ``where`` once; False when it was reported before."""
        with self._lock:
            if (kind, where) in self._seen:
                return False
            self._seen.add((kind, where))
            self._counts[kind] += 1
        _LOGGER.warning("damaged %s at %s: %s", kind, where, problem)
        return True

    def counts(self) -> dict[str, int]:
        """Damaged items found so far, by file kind (every known kind present)."""
        with self._lock:
            return dict(self._counts)


def quarantine(path: Path, kind: str, problem: str, report: DamageReport) -> Path | None:
    """Rename the damaged ``path`` aside and report it; the new path, or None if it was gone.

    Never raises: a file that cannot even be renamed is reported and left where it is (the
    caller treats it as absent for this read and meets it again at the next one).
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None  # another reader set it aside a moment ago
    except OSError as err:
        report.report(kind, str(path), f"{problem}; could not set it aside: {err.strerror}")
        return None
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    report.report(kind, str(target), f"{problem}; moved aside to {target.name}")
    return target
