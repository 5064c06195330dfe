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

What a disk or a crash can still damage never stops the sidecar (see
:mod:`supervisor.damage`): a torn or undecodable history line is skipped (and the
next append starts a new line rather than gluing onto it); an undecodable
``current-run.json`` or ``last-good.json`` is renamed to ``<name>.corrupt-<time>``
and read as absent. Each is logged and counted once.

Everything here is private to the sidecar's user: files are written 0600, and
:func:`exposed_directories` names a ``state/`` or ``backups/`` that group or others
can read, for the start-up warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from supervisor.damage import CURRENT_RUN, HISTORY, LAST_GOOD, PINS, DamageReport, quarantine
from supervisor.exceptions import StateError
from supervisor.update.models import LastGood, RunRecord

__all__ = [
    "CURRENT_RUN", "HISTORY", "LAST_GOOD", "PINS", "StateStore", "atomic_write",
    "exposed_directories", "fsync_dir", "pin_variable", "render_pins", "warn_if_exposed",
]  # fmt: skip

_LOGGER = logging.getLogger(__name__)
_Model = TypeVar("_Model", bound=BaseModel)
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

_PIN_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves old or new, never half.

    The new file is 0600 whatever the umask: run records name images, hosts and snapshots.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, PRIVATE_FILE)
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


def exposed_directories(directories: Iterable[Path]) -> list[tuple[Path, int]]:
    """Each directory whose mode lets group or others in (``mode & 0o077``), with its mode.

    ``state/`` and ``backups/`` hold database dumps and run records, so they should be 0700
    and owned by the sidecar's user; a wider mode is reported, not changed (the operator owns
    the bind mount). A directory that cannot be inspected is skipped here: the start-up
    writability check reports it.
    """
    exposed: list[tuple[Path, int]] = []
    for directory in directories:
        try:
            mode = stat.S_IMODE(os.stat(directory).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            exposed.append((directory, mode))
    return exposed


def warn_if_exposed(directories: Iterable[Path]) -> list[tuple[Path, int]]:
    """Log a warning naming each exposed directory and its mode (called by ``serve``)."""
    exposed = exposed_directories(directories)
    for directory, mode in exposed:
        _LOGGER.warning(
            "%s has mode %04o: group or others can read snapshots and run records; "
            "run `chmod 0700 %s` on the host",
            directory,
            mode,
            directory,
        )
    return exposed


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

    def __init__(self, state_dir: Path, damage: DamageReport | None = None) -> None:
        self.dir = state_dir
        self.damage = damage if damage is not None else DamageReport()

    def _read_model(self, name: str, model: type[_Model]) -> _Model | None:
        """The whole file ``name`` as ``model``; None when absent or set aside as damaged."""
        path = self.dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            problem = f"cannot be read ({err.strerror})"
        else:
            try:
                return model.model_validate_json(data)
            except ValueError as err:
                problem = f"not a valid {model.__name__} ({_first_error(err)})"
        quarantine(path, name, problem, self.damage)
        return None

    # --- current run --------------------------------------------------------------

    def write_current(self, record: RunRecord) -> None:
        atomic_write(self.dir / CURRENT_RUN, record.model_dump_json(indent=2).encode())

    def read_current(self) -> RunRecord | None:
        """The journal; a damaged one is set aside (kept for the operator) and reads as none."""
        return self._read_model(CURRENT_RUN, RunRecord)

    # --- history ------------------------------------------------------------------

    def append_history(self, record: RunRecord) -> None:
        """Append once: a run already in the history is not written again.

        A last line without its newline (a crash mid-append, a truncating disk) is never
        continued: the record goes on a line of its own, so it stays readable.
        """
        if any(r.update_id == record.update_id for r in self.history()):
            return
        self._append_line(record)

    def amend_history(self, record: RunRecord) -> None:
        """Append a later version of a finished run (an acknowledgement): readers keep the last.

        The earlier line is never rewritten; history stays append-only.
        """
        self._append_line(record)

    def _append_line(self, record: RunRecord) -> None:
        # History outlives the run: the old containers' create specs (their environment,
        # database passwords included) stay in the journal only.
        dump = record.model_dump_json(exclude={"retained": {"__all__": {"old_spec"}}})
        line = (dump + "\n").encode()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.dir / HISTORY, flags, PRIVATE_FILE)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def history(self, limit: int | None = None) -> list[RunRecord]:
        """Newest first. Torn or undecodable lines are skipped and reported, never fatal."""
        path = self.dir / HISTORY
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            self.damage.report(HISTORY, str(path), f"cannot be read ({err.strerror})")
            return []
        records: list[RunRecord] = []
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append(RunRecord.model_validate_json(line))
            except ValueError as err:
                self.damage.report(
                    HISTORY,
                    f"{path} line {number}",
                    f"torn or undecodable line of {len(line)} bytes skipped ({_first_error(err)})",
                )
        latest = {r.update_id: r for r in records}  # an amended run: its last line wins
        records = list(latest.values())  # ordered by first appearance
        records.reverse()
        return records[:limit] if limit is not None else records

    def find(self, update_id: str) -> RunRecord | None:
        current = self.read_current()
        if current is not None and current.update_id == update_id:
            return current
        return next((r for r in self.history() if r.update_id == update_id), None)

    # --- last good and pins -------------------------------------------------------

    def read_last_good(self) -> LastGood | None:
        """The last-good record; a damaged one is set aside and reads as none."""
        return self._read_model(LAST_GOOD, LastGood)

    def write_last_good(self, last_good: LastGood) -> None:
        atomic_write(self.dir / LAST_GOOD, last_good.model_dump_json(indent=2).encode())

    def write_pins(self, images: Mapping[str, str]) -> None:
        atomic_write(self.dir / PINS, render_pins(images))

    def read_pins(self) -> dict[str, str]:
        """The pins; a line that is not ``KEY=name@sha256:…`` is reported and skipped."""
        path = self.dir / PINS
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return {}
        pins: dict[str, str] = {}
        for number, raw in enumerate(data.split(b"\n"), start=1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition("=")
            if re.fullmatch(r"[A-Z0-9_]+", key) and _PIN_VALUE_RE.match(value):
                pins[key] = value
            else:
                self.damage.report(PINS, f"{path} line {number}", "not KEY=image@digest; skipped")
        return pins


def _first_error(err: ValueError) -> str:
    """A short reason (pydantic's full report repeats the whole input)."""
    if isinstance(err, ValidationError) and err.errors():
        return str(err.errors()[0]["msg"])
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__
