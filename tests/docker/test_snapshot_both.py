"""PostgreSQL and InfluxDB in one snapshot, dumped at the same time, against real servers.

The two dumps are observed (wrapped, not replaced): the PostgreSQL dump and the
InfluxDB backup must overlap in time, so the backup's downtime is the longer of
the two rather than their sum; the round trip must restore both.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from supervisor.snapshots import SnapshotReason
from supervisor.snapshots.influx import InfluxSnapshots
from supervisor.snapshots.postgres import PostgresSnapshots
from tests.docker.conftest import SnapshotFactory
from tests.support import pg_state
from tests.support.databases import InfluxHandle, PostgresHandle

LINES = "\n".join(
    f"cpu,host=h{i % 5} usage={i * 0.5} {1_600_000_000 + i}000000000" for i in range(20000)
)


async def test_postgres_and_influxdb_are_dumped_at_the_same_time(
    postgres: PostgresHandle,
    influxdb: InfluxHandle,
    snapshot_service: SnapshotFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pg_state.seed(postgres)
    dumped = pg_state.state(postgres)
    influxdb.query('CREATE DATABASE "metrics"')
    influxdb.write("metrics", LINES)
    spans: dict[str, list[tuple[float, float]]] = {"pg": [], "influx": []}

    def observed(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return await method(*args, **kwargs)
            finally:
                spans[name].append((started, time.monotonic()))

        return call

    monkeypatch.setattr(PostgresSnapshots, "dump", observed("pg", PostgresSnapshots.dump))
    monkeypatch.setattr(InfluxSnapshots, "backup", observed("influx", InfluxSnapshots.backup))
    service = snapshot_service(postgres=postgres.container_id, influxdb=influxdb.container_id)

    manifest = await service.create(SnapshotReason.PRE_UPDATE)

    assert {f.name for f in manifest.files} == {
        "postgres.dump", "postgres-globals.sql", "influxdb.tar",
    }  # fmt: skip
    assert manifest.postgres is not None
    assert manifest.influxdb is not None
    [(pg_start, pg_end)], [(influx_start, influx_end)] = spans["pg"], spans["influx"]
    assert pg_start < influx_end
    assert influx_start < pg_end  # the two intervals overlap

    pg_state.change(postgres)
    influxdb.query('DROP DATABASE "metrics"')
    await service.restore(manifest.id)
    assert pg_state.state(postgres) == dumped
    result = influxdb.query('SELECT count(usage) FROM "cpu"', "metrics")["results"][0]
    assert result["series"][0]["values"][0][1] == 20000
