"""The disk preflight: refuse a snapshot that would fill the backups disk.

A disk that fills up mid-dump leaves a stopped stack with no snapshot, so the
update run checks first: the estimated size of the new snapshot plus a margin
(``SUPERVISOR_MIN_FREE_BYTES_MARGIN``) must fit in the free space.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from supervisor.exceptions import InsufficientDiskSpace


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def check_free_space(
    directory: Path,
    needed: int,
    margin: int,
    usage: Callable[[Path], DiskUsage] = lambda path: DiskUsage(*shutil.disk_usage(path)),
) -> int:
    """Free bytes in ``directory``; InsufficientDiskSpace unless ``needed + margin`` fit."""
    free = usage(directory).free
    if needed + margin > free:
        raise InsufficientDiskSpace(
            f"not enough free space in {directory} for a snapshot: about {_human(needed)} "
            f"({needed} bytes) is needed plus a margin of {_human(margin)} ({margin} bytes), "
            f"but only {_human(free)} ({free} bytes) is free; free space, delete old snapshots "
            "or lower SUPERVISOR_MIN_FREE_BYTES_MARGIN",
            needed_bytes=needed,
            margin_bytes=margin,
            free_bytes=free,
            directory=str(directory),
        )
    return free
