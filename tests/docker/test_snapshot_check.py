"""``check``: a snapshot is proven restorable right after it is written, on the real servers.

Checksums catch bytes that changed since the snapshot was written; the full
``pg_restore`` read in the postgres container catches a dump that was wrong
when written (its checksum then matches); the InfluxDB backup's own manifest
catches a tar missing a shard. Nothing is restored and nothing is left behind.
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from supervisor.exceptions import SnapshotCorrupt
from supervisor.snapshots import SnapshotReason
from tests.docker.conftest import SnapshotFactory, rewrite_manifest_hash
from tests.support import pg_state
from tests.support.databases import InfluxHandle, PostgresHandle
from tests.support.dockercli import exec_in


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("flip", r"postgres.dump: sha256 differs from the manifest"),
        ("truncate", r"postgres.dump: \d+ bytes, expected \d+"),
        ("zeroed-at-the-source", r"pg_restore cannot read it through: .*could not uncompress"),
        ("truncated-at-the-source", r"pg_restore cannot read it through: .*end of file"),
        ("table-missing-from-the-dump", r"no data entry for public.ghost"),
    ],
)
async def test_check_passes_a_good_dump_and_refuses_a_damaged_one(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, damage: str, expected: str
) -> None:
    pg_state.seed(postgres)
    service = snapshot_service(postgres=postgres.container_id)
    manifest = await service.create(SnapshotReason.PRE_UPDATE)
    assert (await service.check(manifest.id)).id == manifest.id
    before = pg_state.state(postgres)
    folder = service.store.path_of(manifest.id)
    dump = folder / "postgres.dump"
    data = bytearray(dump.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-1000:]
    elif damage == "zeroed-at-the-source":
        data[len(data) // 2 : len(data) // 2 + 4096] = bytes(4096)
    elif damage == "truncated-at-the-source":
        del data[len(data) // 2 :]
    if damage != "table-missing-from-the-dump":
        dump.write_bytes(bytes(data))
    if damage.endswith("at-the-source"):
        rewrite_manifest_hash(folder, "postgres.dump")
        await service.verify(manifest.id)  # the checksums alone do not notice
    if damage == "table-missing-from-the-dump":
        raw = json.loads((folder / "manifest.json").read_text())
        raw["postgres"]["tables"]["public.ghost"] = {"rows": 1, "checksum": "1"}
        (folder / "manifest.json").write_text(json.dumps(raw))

    with pytest.raises(SnapshotCorrupt, match=expected):
        await service.check(manifest.id)

    assert pg_state.state(postgres) == before
    assert pg_state.databases(postgres) == ["appdb", "postgres", "template0", "template1"]
    assert pg_state.container_leftovers(postgres) == ""


async def test_check_reads_a_real_influx_1x_backup_and_refuses_one_missing_a_shard(
    influxdb: InfluxHandle, snapshot_service: SnapshotFactory
) -> None:
    influxdb.query('CREATE DATABASE "metrics"')
    influxdb.write("metrics", "cpu,host=a usage=1 1600000000000000000")
    service = snapshot_service(influxdb=influxdb.container_id)
    manifest = await service.create(SnapshotReason.PRE_UPDATE)
    await service.check(manifest.id)

    archive = service.store.path_of(manifest.id) / "influxdb.tar"
    with tarfile.open(archive) as original:
        members = [(m, original.extractfile(m)) for m in original.getmembers()]
        kept = [(m, f.read() if f else None) for m, f in members if ".s" not in m.name]
    assert len(kept) < len(members)  # a shard file was there, and is now left out
    with tarfile.open(archive, "w") as rewritten:
        for member, content in kept:
            rewritten.addfile(member, io.BytesIO(content) if content is not None else None)
    rewrite_manifest_hash(archive.parent, "influxdb.tar")

    with pytest.raises(SnapshotCorrupt, match=r"influxdb.tar is not usable: .* which is missing"):
        await service.check(manifest.id)
    leftovers = exec_in(influxdb.container_id, "sh", "-c", "ls -d /tmp/supervisor-* || true")
    assert leftovers.strip() == ""
