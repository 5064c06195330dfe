"""The snapshot manifest: what a snapshot holds, and how to prove it is intact.

``manifest.json`` is written last, into a folder that is renamed into place only
when complete, so a manifest that parses describes a whole snapshot. Every
name in it is validated on read as well as on write: a manifest is input too,
and a file name such as ``../../state/journal.json`` must never reach a path.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from supervisor.exceptions import InvalidSnapshotId
from supervisor.snapshots.const import SnapshotReason

SNAPSHOT_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z_[0-9a-f]{8}")
_FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def check_snapshot_id(value: str) -> str:
    """``value`` if it is a snapshot id (``20250102T030405Z_0123abcd``), else InvalidSnapshotId.

    Ids come from URLs and command lines; this is the only gate between them and a path.
    """
    if not isinstance(value, str) or not SNAPSHOT_ID_RE.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:80]}…"
        raise InvalidSnapshotId(
            f"invalid snapshot id {shown!r}: expected <UTC time>_<8 hex digits>, "
            "e.g. 20250102T030405Z_0123abcd (see `supervisor snapshots`)",
            snapshot_id=shown,
        )
    return value


def new_snapshot_id(now: datetime | None = None) -> str:
    """A fresh id: sortable by time, unique enough for one stack (32 random bits)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}_{secrets.token_hex(4)}"


def _id(value: str) -> str:
    try:
        return check_snapshot_id(value)
    except InvalidSnapshotId as err:
        raise ValueError(err.message) from None


def _file_name(value: str) -> str:
    if not _FILE_NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(f"not a plain file name: {value!r}")
    return value


def _sha256(value: str) -> str:
    if not _SHA256_RE.fullmatch(value):
        raise ValueError("not a sha256 hex digest")
    return value


SnapshotId = Annotated[str, AfterValidator(_id)]
FileName = Annotated[str, AfterValidator(_file_name)]
Sha256 = Annotated[str, AfterValidator(_sha256)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    name: FileName
    size: int = Field(ge=0)
    sha256: Sha256


class TableStats(_Model):
    """Row count and an order-independent checksum of a table's rows, as text."""

    rows: int = Field(ge=0)
    checksum: str


class SequenceStats(_Model):
    """A sequence's position (``last_value``, ``is_called``) as pg_dump recorded it.

    Sequences are not transactional, so pg_dump reads the live value at some moment of
    its run. ``moved_to`` is set when the value read at the end of the dump differs from
    the one read before it began (writers were active): the value pg_dump saved then lies
    between ``last_value`` and ``moved_to``, and a restore is checked against that range.
    """

    last_value: int
    is_called: bool
    moved_to: int | None = None


# How the per-table checksums were computed (see supervisor.snapshots.checksum_sql).
ChecksumMethod = Literal["text-v1", "row-v2", "row-v3"]


class PostgresDump(_Model):
    """One database, dumped in custom format, plus what a faithful restore needs."""

    database: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    server_version: str
    size_bytes: int = Field(ge=0)  # pg_database_size at dump time
    dump_file: FileName
    globals_file: FileName
    roles: list[str] = Field(default_factory=list)
    # ALTER DATABASE … SET values (``name=value``): they belong to the database object,
    # which a restore replaces, so they are carried over explicitly.
    database_settings: list[str] = Field(default_factory=list)
    # "schema.table" -> stats, taken in the very snapshot pg_dump used.
    tables: dict[str, TableStats] = Field(default_factory=dict)
    migration_revision: str | None = None
    # Snapshots written before sequences and large objects were checksummed lack these
    # (None: not checked); "text-v1" is the method of those older snapshots.
    checksum_method: ChecksumMethod = "text-v1"
    sequences: dict[str, SequenceStats] | None = None
    large_objects: TableStats | None = None  # rows = number of large objects


class InfluxBackup(_Model):
    major_version: Literal[1, 2]
    server_version: str
    archive_file: FileName
    databases: list[str] = Field(default_factory=list)  # 1.x; 2.x backs up everything


class SnapshotManifest(_Model):
    format: Literal[1] = 1
    id: SnapshotId
    project: str = Field(min_length=1)
    reason: SnapshotReason
    run_id: str | None = None
    created_at: datetime
    images: dict[str, str] = Field(default_factory=dict)  # service -> name@sha256:…
    database_versions: dict[str, str] = Field(default_factory=dict)  # postgres / influxdb
    migration_revision: str | None = None
    postgres: PostgresDump | None = None
    influxdb: InfluxBackup | None = None
    config_paths: list[str] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def file(self, name: str) -> FileEntry:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise KeyError(name)
