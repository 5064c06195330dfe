"""Configuration files in a snapshot: a ``config.tar.gz`` of the configured paths.

These are paths *in the sidecar's file system* (for example the app's config
volume mounted read-only into the sidecar). They are archived so that an
operator can recover them, and are not restored automatically: a read-only
mount could not be written back, and config is the operator's to change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from supervisor.exceptions import BackupFailed
from supervisor.snapshots.const import CONFIG_ARCHIVE_FILE
from supervisor.snapshots.models import FileEntry
from supervisor.snapshots.sink import write_error
from supervisor.snapshots.store import SnapshotWriter

_LOGGER = logging.getLogger(__name__)


def _archive(paths: Sequence[Path], target: Path) -> None:
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise BackupFailed(
            f"configured config path(s) not found in the sidecar: {', '.join(missing)}; "
            "mount them or remove them from the setting"
        )
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            for path in paths:
                archive.add(path, arcname=str(path).lstrip("/"), recursive=True)
            archive.close()
            raw.flush()
            os.fsync(raw.fileno())
    except OSError as err:
        raise write_error(target, err, 0) from err


async def archive_config(writer: SnapshotWriter, paths: Sequence[Path]) -> FileEntry:
    """Write ``config.tar.gz`` of ``paths`` (absolute) into the snapshot being written."""
    target = writer.path / CONFIG_ARCHIVE_FILE
    await asyncio.to_thread(_archive, paths, target)
    entry = await writer.add_path(CONFIG_ARCHIVE_FILE)
    _LOGGER.info("archived %d config path(s): %d bytes", len(paths), entry.size)
    return entry
