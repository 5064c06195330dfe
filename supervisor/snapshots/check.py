"""Deep verification of a snapshot: proof that it can be restored, before anything needs it.

::

    SnapshotService.check(id)
      1. every file re-hashed against manifest.json          (SnapshotStore.verify)
      2. postgres.dump readable in the postgres container (supervisor.snapshots.in_place)
         pg_restore --list        the archive's table of contents reads, and has
                                  a TABLE DATA entry for every table in the manifest
         pg_restore --file=/dev/null   every data block reads and decompresses
      3. influxdb.tar: a tar, holding the backup tool's *.manifest (JSON) and every
         file that manifest lists; 1.x shard archives (*.tar.gz) read through
      4. config.tar.gz: a readable gzip tar

Why more than the checksums: a checksum proves the bytes are the ones written,
not that what was written is a dump (a tool that wrote garbage at the source
hashes fine). ``--list`` alone reads only the header: it passes a truncated or
garbled dump, so the full read is what catches those; it needs no database and
runs at about 100 MB/s of dump inside the container. Any damage raises
:class:`SnapshotCorrupt`; not being able to check (the container is down) raises
another :class:`SnapshotError`, never a false "corrupt".
"""

from __future__ import annotations

import asyncio
import json
import logging
import tarfile
from pathlib import Path
from typing import Any

from supervisor.exceptions import CommandFailed, EngineError, SnapshotCorrupt, SnapshotError
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.models import FileEntry, InfluxBackup, PostgresDump
from supervisor.snapshots.pg_commands import stderr_of
from supervisor.snapshots.postgres import PostgresSnapshots
from supervisor.snapshots.workdir import ContainerWorkdir

_LOGGER = logging.getLogger(__name__)
# pg_restore could not open the file (it went away, permissions): says nothing of its bytes.
_OPEN_FAILED = "could not open input file"


async def check_postgres_dump(
    pg: PostgresSnapshots, folder: Path, dump: PostgresDump, entry: FileEntry, tag: str
) -> None:
    """Step 2: the dump reads as a whole with the server's own pg_restore."""
    await pg.ensure_running(SnapshotError)
    try:
        async with pg.readable(folder, entry, tag) as (work, path):
            await _read_dump(pg, work, path, dump, entry)
    except EngineError as err:
        raise SnapshotError(f"cannot check {entry.name}: {err.message}") from err
    _LOGGER.info("%s reads through (%d bytes, %d tables)", entry.name, entry.size, len(dump.tables))


async def _read_dump(
    pg: PostgresSnapshots, work: ContainerWorkdir, path: str, dump: PostgresDump, entry: FileEntry
) -> None:
    try:
        listing = await work.output(sql.pg_restore_list(path))
    except CommandFailed as err:
        if _OPEN_FAILED in stderr_of(err):  # not the dump's fault: never a false "corrupt"
            raise SnapshotError(f"cannot check {entry.name}: {stderr_of(err)}") from err
        why = f"pg_restore --list cannot read it: {stderr_of(err)}"
        raise _corrupt(dump, entry, why) from err
    if "Format: CUSTOM" not in listing:
        raise _corrupt(dump, entry, "pg_restore --list does not see a custom-format archive")
    missing = _tables_without_data(dump, listing)
    if missing:
        raise _corrupt(dump, entry, f"no data entry for {', '.join(missing[:10])}")
    try:
        await work.run("read", sql.pg_restore_read(path), timeout=pg.timeout)
    except CommandFailed as err:
        why = f"pg_restore cannot read it through: {stderr_of(err)}"
        raise _corrupt(dump, entry, why) from err


def _tables_without_data(dump: PostgresDump, listing: str) -> list[str]:
    present = sql.table_data_entries(listing)
    missing = []
    for key in sorted(dump.tables):
        try:
            parts = sql.split_table_key(key)
        except (ValueError, IndexError):
            continue  # an odd name the listing cannot be matched against: not evidence
        if " " in "".join(parts):
            continue  # ambiguous in the listing (see table_data_entries)
        if parts not in present:
            missing.append(key)
    return missing


def _corrupt(dump: PostgresDump, entry: FileEntry, why: str) -> SnapshotCorrupt:
    return SnapshotCorrupt(
        f"{entry.name} (database {dump.database!r}) is not a usable dump: {why}",
        file=entry.name,
    )


def check_influx_archive(path: Path, backup: InfluxBackup) -> None:
    """Step 3 (blocking: call it in a thread)."""
    try:
        with tarfile.open(path, mode="r:") as archive:
            members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
            manifests = [name for name in members if name.endswith(".manifest")]
            if not manifests:
                raise _bad(path, "it holds no *.manifest from the backup tool")
            for name in manifests:
                handle = archive.extractfile(members[name])
                assert handle is not None
                for file_name in _listed_files(json.loads(handle.read())):
                    member = members.get(file_name)
                    if member is None:
                        raise _bad(path, f"{name} lists {file_name}, which is missing")
                    if file_name.endswith(".tar.gz"):  # a 1.x shard: it must read through
                        _read_through(archive, member)
    except (tarfile.TarError, OSError, EOFError, ValueError, UnicodeDecodeError) as err:
        raise _bad(path, f"it does not read as a tar with a JSON manifest ({err})") from err
    _LOGGER.info("%s reads (InfluxDB %s backup)", path.name, backup.server_version)


def _read_through(archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    handle = archive.extractfile(member)
    assert handle is not None
    with tarfile.open(fileobj=handle, mode="r:gz") as shard:
        for inner in shard:
            content = shard.extractfile(inner) if inner.isfile() else None
            while content is not None and content.read(1 << 20):
                pass


def _listed_files(node: Any) -> list[str]:
    """Every ``"fileName"`` anywhere in a 1.x or 2.x backup manifest. (Its ``size`` values
    are not the sizes of the files: 1.x records the shard's size before compression.)"""
    found: list[str] = []
    if isinstance(node, dict):
        name = node.get("fileName")
        if isinstance(name, str) and name:
            found.append(name)
        for value in node.values():
            found += _listed_files(value)
    elif isinstance(node, list):
        for value in node:
            found += _listed_files(value)
    return found


def check_config_archive(path: Path) -> None:
    """Step 4 (blocking): every member of the gzip tar reads."""
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                if member.isfile():
                    handle = archive.extractfile(member)
                    assert handle is not None
                    while handle.read(1 << 20):
                        pass
    except (tarfile.TarError, OSError, EOFError) as err:
        raise _bad(path, f"it does not read as a gzip tar ({err})") from err


def _bad(path: Path, why: str) -> SnapshotCorrupt:
    return SnapshotCorrupt(f"{path.name} is not usable: {why}", file=path.name)


async def check_local_archives(
    folder: Path, influx: tuple[InfluxBackup, FileEntry] | None, config: FileEntry | None
) -> None:
    """Steps 3 and 4, in a worker thread."""
    if influx is not None:
        await asyncio.to_thread(check_influx_archive, folder / influx[1].name, influx[0])
    if config is not None:
        await asyncio.to_thread(check_config_archive, folder / config.name)
