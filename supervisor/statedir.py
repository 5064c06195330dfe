"""The state directory: journal, history, last-good record and the pin file.

::

    state/
    ├── current-run.json   the run in progress (or the last one, until archived)
    ├── history.jsonl      one line per finished run, append-only
    ├── last-good.json     version + digests the stack last ran healthy
    ├── versions.env       APP_IMAGE=registry/app@sha256:…  (read by compose)
    └── FREEZE             present → no updates (path configurable)

Every whole-file write is atomic: temp file in the same directory, fsync,
``os.replace``, fsync the directory. A crash leaves either the old or the new
file, never a torn one. Files are validated with pydantic on read *and* write.
This module is the only one that touches these files.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from supervisor.exceptions import StateError
from supervisor.update.models import LastGood, RunRecord

CURRENT_RUN = "current-run.json"
HISTORY = "history.jsonl"
LAST_GOOD = "last-good.json"
PINS = "versions.env"

_PIN_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pin_variable(service: str) -> str:
    """``python_backend`` → ``PYTHON_BACKEND_IMAGE``."""
    return re.sub(r"[^A-Z0-9]", "_", service.upper()) + "_IMAGE"


def render_pins(images: Mapping[str, str]) -> bytes:
    """The env file, refusing any value that could break out of ``KEY=value``.

    Values are image references pinned by digest; anything with a quote,
    ``$``, whitespace or a newline is refused rather than escaped, because
    Compose's env-file parsing and a shell's differ and we will not bet on either.
    """
    lines = ["# Written by stack supervisor: image digests of the last good release.\n"]
    for service, image in sorted(images.items()):
        if not _PIN_VALUE_RE.match(image) or "@sha256:" not in image:
            raise StateError(f"refusing to pin {service} to {image!r}: not a name@sha256 reference")
        lines.append(f"{pin_variable(service)}={image}\n")
    return "".join(lines).encode()


class StateStore:
    """Synchronous, small and fsync-heavy: call it from a worker thread in async code."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir

    # --- current run --------------------------------------------------------------

    def write_current(self, record: RunRecord) -> None:
        atomic_write(self.dir / CURRENT_RUN, record.model_dump_json(indent=2).encode())

    def read_current(self) -> RunRecord | None:
        path = self.dir / CURRENT_RUN
        if not path.exists():
            return None
        try:
            return RunRecord.model_validate_json(path.read_bytes())
        except ValueError as err:
            raise StateError(f"{path} is not a valid run journal: {err}") from err

    # --- history ------------------------------------------------------------------

    def append_history(self, record: RunRecord) -> None:
        """Append once: a run already in the history is not written again."""
        if any(r.update_id == record.update_id for r in self.history()):
            return
        line = record.model_dump_json() + "\n"
        with open(self.dir / HISTORY, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def history(self, limit: int | None = None) -> list[RunRecord]:
        """Newest first. A torn last line (crash mid-append) is skipped, not fatal."""
        path = self.dir / HISTORY
        if not path.exists():
            return []
        records: list[RunRecord] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(RunRecord.model_validate_json(line))
            except ValueError:
                continue
        records.reverse()
        return records[:limit] if limit is not None else records

    def find(self, update_id: str) -> RunRecord | None:
        current = self.read_current()
        if current is not None and current.update_id == update_id:
            return current
        return next((r for r in self.history() if r.update_id == update_id), None)

    # --- last good and pins -------------------------------------------------------

    def read_last_good(self) -> LastGood | None:
        path = self.dir / LAST_GOOD
        if not path.exists():
            return None
        try:
            return LastGood.model_validate_json(path.read_bytes())
        except ValueError as err:
            raise StateError(f"{path} is not a valid last-good record: {err}") from err

    def write_last_good(self, last_good: LastGood) -> None:
        atomic_write(self.dir / LAST_GOOD, last_good.model_dump_json(indent=2).encode())

    def write_pins(self, images: Mapping[str, str]) -> None:
        atomic_write(self.dir / PINS, render_pins(images))

    def read_pins(self) -> dict[str, str]:
        path = self.dir / PINS
        if not path.exists():
            return {}
        pins: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                pins[key] = value
        return pins
