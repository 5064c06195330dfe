"""The disk preflight: refuse a snapshot that would fill the backups disk.

A disk that fills up mid-dump leaves a stopped stack with no snapshot, so the
update run checks first, in ``preflight`` while the old version still serves:
the backups folder must take a new file, and the estimated size of the new
snapshot plus a margin (``SUPERVISOR_MIN_FREE_BYTES_MARGIN``) must fit in the
free space. ``create`` checks the space again (the disk may have filled since).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from supervisor.exceptions import BackupDirUnwritable, InsufficientDiskSpace


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


# Not a snapshot id and not ``.tmp-``: never listed, never swept by retention.
_PROBE_PREFIX = ".preflight-"


def check_writable(directory: Path) -> None:
    """BackupDirUnwritable unless a new private file can be created, written and removed.

    Blocking (call it in a thread). A real write rather than ``os.access``: a read-only
    mount, a full inode table or another owner are only found out by trying. A missing
    folder is created (0700), as the first snapshot would.
    """
    probe = directory / f"{_PROBE_PREFIX}{secrets.token_hex(4)}"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        raise BackupDirUnwritable(
            f"the backups folder {directory} cannot be written by the sidecar "
            f"(uid {os.getuid()}): {err.strerror or err}; fix its owner or mount "
            "(it must be writable) and try again",
            directory=str(directory),
        ) from err
