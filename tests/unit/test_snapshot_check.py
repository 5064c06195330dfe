"""Deep check of the archives that need no database: the InfluxDB backup tar and the config tar.

(The PostgreSQL part runs ``pg_restore`` in a real container: tests/docker/test_snapshot_check.py.)
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from supervisor.exceptions import SnapshotCorrupt
from supervisor.snapshots import InfluxBackup, SnapshotReason
from supervisor.snapshots.check import check_config_archive, check_influx_archive
from tests.unit.test_snapshot_influx_v2 import FakeEngine, service_for

BACKUP = InfluxBackup(major_version=1, server_version="1.6.7", archive_file="influxdb.tar")
SHARD = b"shard bytes" * 100


def _influx_tar(path: Path, manifest: Any, files: dict[str, bytes]) -> Path:
    """A tar laid out like ``tar -C DIR -cf - .`` of an ``influxd backup -portable`` DIR."""
    with tarfile.open(path, "w") as archive:
        members = {"20250101T000000Z.manifest": json.dumps(manifest).encode(), **files}
        for name, data in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _v1_manifest() -> dict[str, Any]:
    """As ``influxd backup -portable`` (1.6) writes it; its sizes are not the files' sizes."""
    return {
        "meta": {"fileName": "20250101T000000Z.meta", "size": 88},
        "limited": False,
        "files": [
            {"database": "metrics", "policy": "autogen", "shardID": 2,
             "fileName": "20250101T000000Z.s2.tar.gz", "size": 2048, "lastModified": 0},
        ],
    }  # fmt: skip


def _shard() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as shard:
        info = tarfile.TarInfo("2/000000001-000000001.tsm")
        info.size = len(SHARD)
        shard.addfile(info, io.BytesIO(SHARD))
    return buffer.getvalue()


def test_a_complete_influx_backup_reads(tmp_path: Path) -> None:
    files = {"20250101T000000Z.meta": b"met", "20250101T000000Z.s2.tar.gz": _shard()}
    check_influx_archive(_influx_tar(tmp_path / "influxdb.tar", _v1_manifest(), files), BACKUP)


@pytest.mark.parametrize(
    ("manifest", "files", "why"),
    [
        (_v1_manifest(), {"20250101T000000Z.meta": b"met"}, "s2.tar.gz, which is missing"),
        (_v1_manifest(), {"20250101T000000Z.meta": b"met",
                          "20250101T000000Z.s2.tar.gz": _shard()[:-40]}, "does not read"),
        (_v1_manifest(), {"20250101T000000Z.meta": b"met",
                          "20250101T000000Z.s2.tar.gz": SHARD}, "does not read"),
        ("not an object at all", {}, None),
    ],
)  # fmt: skip
def test_an_influx_backup_missing_what_its_manifest_lists_is_corrupt(
    tmp_path: Path, manifest: Any, files: dict[str, bytes], why: str | None
) -> None:
    path = _influx_tar(tmp_path / "influxdb.tar", manifest, files)
    if why is None:  # a manifest that lists nothing lists nothing missing: still readable
        check_influx_archive(path, BACKUP)
        return
    with pytest.raises(SnapshotCorrupt, match=f"influxdb.tar is not usable: .*{why}"):
        check_influx_archive(path, BACKUP)


def test_garbage_and_a_tar_without_manifest_are_corrupt(tmp_path: Path) -> None:
    garbage = tmp_path / "influxdb.tar"
    garbage.write_bytes(b"\x00garbage" * 200)
    with pytest.raises(SnapshotCorrupt, match="does not read as a tar|holds no"):
        check_influx_archive(garbage, BACKUP)
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(SnapshotCorrupt, match=r"holds no \*\.manifest"):
        check_influx_archive(empty, BACKUP)
    bad_json = tmp_path / "bad.tar"
    with tarfile.open(bad_json, "w") as archive:
        info = tarfile.TarInfo("./x.manifest")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"{nope"))
    with pytest.raises(SnapshotCorrupt, match="JSON manifest"):
        check_influx_archive(bad_json, BACKUP)


def test_config_archive_reads_through_or_is_corrupt(tmp_path: Path) -> None:
    source = tmp_path / "app.yml"
    source.write_bytes(b"setting: 1\n" * 50_000)
    good = tmp_path / "config.tar.gz"
    with tarfile.open(good, "w:gz") as archive:
        archive.add(source, arcname="app.yml")
    check_config_archive(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotCorrupt, match="truncated.tar.gz is not usable"):
        check_config_archive(truncated)


async def test_service_check_rejects_an_influx_archive_that_hashes_fine(tmp_path: Path) -> None:
    """The fake engine's ``tar`` writes bytes that are no tar: the checksums in the manifest
    match them (they were hashed as written), yet ``check`` refuses the snapshot."""
    service = service_for(FakeEngine(), tmp_path, influx_token="t" * 20)
    manifest = await service.create(SnapshotReason.PRE_UPDATE)
    assert (await service.verify(manifest.id)).id == manifest.id  # the checksums agree

    with pytest.raises(SnapshotCorrupt, match="influxdb.tar is not usable"):
        await service.check(manifest.id)
