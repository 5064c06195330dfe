"""SnapshotService rules that need no database: retention and the disk preflight."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.exceptions import InsufficientDiskSpace
from supervisor.snapshots import SnapshotManifest, SnapshotReason, SnapshotStore
from tests.unit.test_snapshot_influx_v2 import FakeEngine, service_for


async def _empty_snapshot(store: SnapshotStore, snapshot_id: str, at: datetime) -> None:
    async with store.begin(snapshot_id) as writer:
        manifest = SnapshotManifest(
            id=snapshot_id, project=store.project, reason=SnapshotReason.PRE_UPDATE, created_at=at
        )
        await store.commit(writer, manifest)


async def test_retention_deletes_only_this_projects_unprotected_snapshots(tmp_path: Path) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    mine = [f"2025010{d}T000000Z_0000000{d}" for d in range(1, 8)]
    for day, snapshot_id in enumerate(mine, start=1):
        await _empty_snapshot(
            SnapshotStore(tmp_path, "proj"), snapshot_id, t0 + timedelta(days=day)
        )
    foreign = "20240101T000000Z_ffffffff"
    await _empty_snapshot(SnapshotStore(tmp_path, "other"), foreign, t0)
    (tmp_path / ".tmp-20240101T000000Z_eeeeeeee").mkdir()
    os.utime(tmp_path / ".tmp-20240101T000000Z_eeeeeeee", (0, 0))
    service = service_for(FakeEngine(), tmp_path, retention_keep=3)

    deleted = await service.apply_retention(protected={mine[0]})

    assert deleted == mine[1:4]
    assert sorted(os.listdir(tmp_path)) == sorted([foreign, mine[0], *mine[4:]])


async def test_preflight_refuses_before_anything_is_dumped(tmp_path: Path) -> None:
    engine = FakeEngine()
    service = service_for(engine, tmp_path, influx_token="t" * 20, min_free_bytes_margin=1 << 60)
    with pytest.raises(InsufficientDiskSpace, match="not enough free space") as err:
        await service.create(SnapshotReason.PRE_UPDATE)
    assert err.value.details["margin_bytes"] == 1 << 60
    assert os.listdir(tmp_path) == []
    assert not any(argv[0] in ("influx", "tar") for argv in engine.commands())
