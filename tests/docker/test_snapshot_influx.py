"""InfluxDB 1.x snapshots against a real server: points written, snapshot, database
dropped, restored, the same points read back. (2.x is covered by contract tests in
tests/unit/test_snapshot_influx_v2.py: no 2.x server is obtainable here.)"""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.exceptions import RestoreFailed, SnapshotCorrupt
from supervisor.snapshots import SnapshotReason
from tests.docker.conftest import SnapshotFactory
from tests.support.databases import InfluxHandle
from tests.support.dockercli import docker, exec_in

LINES = "\n".join(
    f"cpu,host=h{i % 7},region=eu usage={i * 0.37},count={i}i {1_600_000_000 + i}000000000"
    for i in range(2000)
)


def _points(influx: InfluxHandle, db: str, measurement: str) -> list[Any]:
    query = f'SELECT * FROM "{measurement}" ORDER BY time'  # noqa: S608 (test data)
    result = influx.query(query, db)["results"][0]
    return [s["values"] for s in result.get("series", [])]


async def test_influx_v1_round_trip(
    influxdb: InfluxHandle, snapshot_service: SnapshotFactory
) -> None:
    influx = influxdb
    for db in ("metrics", "other db"):
        influx.query(f'CREATE DATABASE "{db}"')
    influx.write("metrics", LINES)
    influx.write("other db", "mem,host=a free=1i 1600000000000000000")
    metrics, other = _points(influx, "metrics", "cpu"), _points(influx, "other db", "mem")
    assert len(metrics[0]) == 2000
    service = snapshot_service(influxdb=influx.container_id)

    manifest = await service.create(SnapshotReason.PRE_UPDATE)

    assert manifest.influxdb is not None
    assert manifest.influxdb.major_version == 1
    assert sorted(manifest.influxdb.databases) == ["metrics", "other db"]
    assert manifest.database_versions["influxdb"].startswith("1.")
    assert [f.name for f in manifest.files] == ["influxdb.tar"]

    influx.query('DROP DATABASE "metrics"')
    influx.write("other db", "mem,host=b free=2i 1600000001000000000")
    assert _points(influx, "other db", "mem") != other

    await service.restore(manifest.id)

    assert _points(influx, "metrics", "cpu") == metrics
    assert _points(influx, "other db", "mem") == other
    leftovers = exec_in(influx.container_id, "sh", "-c", "ls -d /tmp/supervisor-* || true")
    assert leftovers.strip() == ""


async def test_influx_refusals(influxdb: InfluxHandle, snapshot_service: SnapshotFactory) -> None:
    influxdb.query('CREATE DATABASE "metrics"')
    influxdb.write("metrics", LINES)
    service = snapshot_service(influxdb=influxdb.container_id)
    manifest = await service.create(SnapshotReason.MANUAL)
    archive = service.store.path_of(manifest.id) / "influxdb.tar"
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(SnapshotCorrupt, match="influxdb.tar"):
        await service.restore(manifest.id)
    assert len(_points(influxdb, "metrics", "cpu")[0]) == 2000  # untouched

    docker("stop", "-t", "2", influxdb.container_id)
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(RestoreFailed, match="InfluxDB container .* is exited, not running"):
        await service.restore(manifest.id)
