"""Bad input against real containers: each a clear error, and no half snapshot left behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from supervisor.api.errors import http_status
from supervisor.exceptions import (
    BackupDirUnwritable,
    BackupFailed,
    DiskFull,
    InsufficientDiskSpace,
    InvalidSnapshotId,
    SnapshotError,
)
from supervisor.snapshots import SnapshotProgress, SnapshotReason
from tests.docker.conftest import SnapshotFactory
from tests.support import pg_state
from tests.support.databases import PostgresHandle
from tests.support.dockercli import docker, exec_in

NOISE_SQL = (  # ~24 MB of incompressible rows: more than the 5 MB tmpfs can take
    "CREATE TABLE noise AS SELECT i, decode(string_agg(md5(i::text || j::text), ''), 'hex') AS b "
    "FROM generate_series(1, 3000) i, generate_series(1, 500) j GROUP BY i"
)


def _left_in(backups: Path) -> list[str]:
    return sorted(p.name for p in backups.iterdir()) if backups.exists() else []


def _dump_processes(pg: PostgresHandle) -> str:
    script = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$f; echo; done 2>/dev/null"
    listing = exec_in(pg.container_id, "sh", "-c", script)
    return "\n".join(line for line in listing.splitlines() if "pg_dump" in line or "tar" in line)


@contextmanager
def _tmpfs(mount: Path, size: str, *options: str) -> Iterator[Path]:
    mount.mkdir()
    opts = ",".join([f"size={size}", *options])
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 5 MB tmpfs, unmounted afterwards."""
    with _tmpfs(tmp_path / "small", "5m") as mount:
        yield mount


async def test_wrong_user_and_wrong_database(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    service = snapshot_service(postgres=postgres.container_id, postgres_user="intruder")
    with pytest.raises(BackupFailed, match='role "intruder" does not exist'):
        await service.create(SnapshotReason.MANUAL)
    service = snapshot_service(postgres=postgres.container_id, postgres_db="nodb")
    with pytest.raises(BackupFailed, match='database "nodb" does not exist'):
        await service.create(SnapshotReason.MANUAL)
    assert _left_in(backups) == []


async def test_wrong_password_when_the_socket_requires_one(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, tmp_path: Path
) -> None:
    """With password auth on the local socket: a wrong password is a clear error, and the
    right one (from settings, passed as PGPASSWORD) works."""
    hba = "/var/lib/postgresql/data/pg_hba.conf"
    exec_in(postgres.container_id, "sed", "-i", "s/trust$/scram-sha-256/", hba)
    postgres.psql("SELECT pg_reload_conf()")
    service = snapshot_service(postgres=postgres.container_id, postgres_password="not-it")
    with pytest.raises(BackupFailed, match="password authentication failed") as failed:
        await service.create(SnapshotReason.MANUAL)
    assert "not-it" not in str(failed.value.to_dict())
    assert _left_in(tmp_path / "backups") == []
    service = snapshot_service(postgres=postgres.container_id, postgres_password=postgres.password)
    manifest = await service.create(SnapshotReason.MANUAL)
    assert manifest.postgres is not None
    assert manifest.postgres.database == "appdb"


async def test_stopped_database_container(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, tmp_path: Path
) -> None:
    service = snapshot_service(postgres=postgres.container_id)
    docker("stop", "-t", "5", postgres.container_id)
    with pytest.raises(BackupFailed, match="is exited, not running; start it"):
        await service.create(SnapshotReason.MANUAL)
    assert _left_in(tmp_path / "backups") == []


async def test_disk_full_mid_dump_leaves_nothing(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, small_disk: Path
) -> None:
    postgres.psql(NOISE_SQL)
    # size_factor 0 switches the preflight estimate off, so the dump really runs out of disk
    service = snapshot_service(
        postgres=postgres.container_id, backup_dir=small_disk, size_factor=0.0
    )
    with pytest.raises(DiskFull, match="filled up while writing postgres.dump") as e:
        await service.create(SnapshotReason.MANUAL)
    assert isinstance(e.value, SnapshotError)
    assert e.value.error_key == "disk_full"
    assert http_status(e.value) == 507
    assert _left_in(small_disk) == []
    assert await service.list() == []
    assert os.statvfs(small_disk).f_bfree == os.statvfs(small_disk).f_blocks
    assert _dump_processes(postgres) == ""  # pg_dump was killed, not left blocked
    assert pg_state.container_leftovers(postgres) == ""


async def test_preflight_refuses_with_numbers(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, small_disk: Path
) -> None:
    postgres.psql(NOISE_SQL)
    service = snapshot_service(postgres=postgres.container_id, backup_dir=small_disk)
    estimate = await service.estimate_size()
    assert estimate > 5 * 1024 * 1024
    with pytest.raises(InsufficientDiskSpace, match=rf"\({estimate} bytes\) is needed") as e:
        await service.create(SnapshotReason.MANUAL)
    assert e.value.details["needed_bytes"] == estimate
    assert _left_in(small_disk) == []


async def test_preflight_passes_then_the_disk_fills_up_mid_dump(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, tmp_path: Path
) -> None:
    """The real estimate passes the preflight; then another writer fills the disk while
    the dump runs: DiskFull, nothing listed, the folder as it was, pg_dump gone."""
    postgres.psql(NOISE_SQL)
    with _tmpfs(tmp_path / "disk", "64m") as disk:
        service = snapshot_service(postgres=postgres.container_id, backup_dir=disk)
        estimate = await service.preflight()
        assert 20 * 2**20 < estimate < 60 * 2**20
        filler = disk / "someone-elses-file"

        def fill_when_the_dump_starts(step: SnapshotProgress) -> None:
            if step.step == "postgres":  # after create's own space check, before any byte
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                filler.write_bytes(os.urandom(free - 4 * 2**20))

        with pytest.raises(DiskFull, match="filled up while writing postgres.dump"):
            await service.create(SnapshotReason.PRE_UPDATE, progress=fill_when_the_dump_starts)

        assert _left_in(disk) == [filler.name]
        assert await service.list() == []
        assert _dump_processes(postgres) == ""
        assert pg_state.container_leftovers(postgres) == ""


async def test_preflight_refuses_a_read_only_backups_disk(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, tmp_path: Path
) -> None:
    with _tmpfs(tmp_path / "ro", "8m", "ro") as disk:
        service = snapshot_service(postgres=postgres.container_id, backup_dir=disk)
        with pytest.raises(BackupDirUnwritable, match="Read-only file system") as e:
            await service.preflight()
        assert e.value.error_key == "backup_dir_unwritable"


async def test_snapshot_ids_that_are_paths_are_refused(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    service = snapshot_service(postgres=postgres.container_id)
    for bad in ("../etc", "20250101T000000Z_0123abcd/../../x", "/etc/passwd", ""):
        with pytest.raises(InvalidSnapshotId):
            await service.restore(bad)
        with pytest.raises(InvalidSnapshotId):
            await service.delete(bad)
