"""SnapshotService rules that need no database: retention, the disk preflight, refusals."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.api.errors import http_status
from supervisor.const import Role
from supervisor.exceptions import (
    BackupDirUnwritable,
    BackupFailed,
    InsufficientDiskSpace,
    SnapshotError,
)
from supervisor.snapshots import SnapshotManifest, SnapshotReason, SnapshotStore
from supervisor.snapshots.models import PostgresDump
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


async def test_retention_counts_only_whole_snapshots_when_postgres_is_managed(
    tmp_path: Path,
) -> None:
    """Failed runs left pre-update snapshots without their database dump and a
    pre-rollback dump (the failed version's data): they do not push the whole ones out.
    Without a postgres service a snapshot without PostgreSQL is whole; a pre-rollback
    dump never is."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    store = SnapshotStore(tmp_path, "proj")
    whole = [f"2025010{d}T000000Z_0000000{d}" for d in range(1, 5)]
    partial = [f"2025010{d}T000000Z_0000000{d}" for d in range(5, 7)]
    failed_data = "20250107T000000Z_00000007"
    dump = PostgresDump(
        database="app", owner="app", encoding="UTF8", collate="C", ctype="C",
        server_version="15", size_bytes=1, dump_file="postgres.dump",
        globals_file="postgres-globals.sql",
    )  # fmt: skip
    for day, snapshot_id in enumerate([*whole, *partial, failed_data], start=1):
        async with store.begin(snapshot_id) as writer:
            await store.commit(writer, SnapshotManifest(
                id=snapshot_id, project="proj", created_at=t0 + timedelta(days=day),
                reason=(SnapshotReason.PRE_ROLLBACK if snapshot_id == failed_data
                        else SnapshotReason.PRE_UPDATE),
                postgres=None if snapshot_id in partial else dump,
            ))  # fmt: skip
    service = service_for(FakeEngine(), tmp_path, retention_keep=2)

    async def with_postgres(role: Role) -> str | None:
        return "pg-cid" if role is Role.POSTGRES else None

    service._locate = with_postgres
    assert await service.apply_retention(protected=set()) == whole[:2]
    assert sorted(os.listdir(tmp_path)) == sorted([*whole[2:], *partial, failed_data])

    service = service_for(FakeEngine(), tmp_path, retention_keep=2)  # no postgres service
    assert await service.apply_retention(protected=set()) == whole[2:]


async def test_preflight_refuses_before_anything_is_dumped(tmp_path: Path) -> None:
    engine = FakeEngine()
    service = service_for(engine, tmp_path, influx_token="t" * 20, min_free_bytes_margin=1 << 60)
    with pytest.raises(InsufficientDiskSpace, match="not enough free space") as err:
        await service.create(SnapshotReason.PRE_UPDATE)
    assert err.value.details["margin_bytes"] == 1 << 60
    assert os.listdir(tmp_path) == []
    assert not any(argv[0] in ("influx", "tar") for argv in engine.commands())


async def test_preflight_returns_the_estimate_and_leaves_nothing(tmp_path: Path) -> None:
    engine = FakeEngine()
    backups = tmp_path / "backups"  # missing: created 0700, as the first snapshot would
    service = service_for(engine, backups, influx_token="t" * 20)
    service.options = replace(service.options, backup_dir=backups)

    estimate = await service.preflight()

    assert estimate == await service.estimate_size()
    assert os.listdir(backups) == []  # the probe file is gone
    assert backups.stat().st_mode & 0o777 == 0o700
    assert not any(argv[0] in ("influx", "tar") for argv in engine.commands())


async def test_preflight_refuses_a_full_disk_with_the_numbers(tmp_path: Path) -> None:
    service = service_for(
        FakeEngine(), tmp_path, influx_token="t" * 20, min_free_bytes_margin=1 << 60
    )
    with pytest.raises(InsufficientDiskSpace, match="not enough free space") as err:
        await service.preflight()
    assert err.value.details["margin_bytes"] == 1 << 60
    assert err.value.details["needed_bytes"] == await service.estimate_size()
    assert os.listdir(tmp_path) == []


async def test_preflight_refuses_a_backups_folder_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the backups folder should be")
    service = service_for(FakeEngine(), tmp_path, influx_token="t" * 20)
    service.options = replace(service.options, backup_dir=blocker / "backups")
    with pytest.raises(BackupDirUnwritable, match="cannot be written") as err:
        await service.preflight()
    assert err.value.error_key == "backup_dir_unwritable"
    assert http_status(err.value) == 507


async def test_preflight_needs_the_database_containers_running(tmp_path: Path) -> None:
    service = service_for(FakeEngine(running=False), tmp_path, influx_token="t" * 20)
    with pytest.raises(BackupFailed, match="is exited, not running"):
        await service.preflight()


async def test_kept_names_and_scratch_names_do_not_mix(tmp_path: Path) -> None:
    """No postgres here: both drops are refused before any engine call."""
    engine = FakeEngine()
    service = service_for(engine, tmp_path, influx_token="t" * 20)
    with pytest.raises(SnapshotError, match="no postgres service"):
        await service.drop_kept_database("appdb__old_run1")
    assert engine.calls == []


async def test_exec_timeout_bounds_the_short_commands(tmp_path: Path) -> None:
    """SUPERVISOR_EXEC_TIMEOUT reaches the one-command probes; a dump keeps the backup timeout."""
    from supervisor.config import load_settings
    from supervisor.snapshots.options import SnapshotOptions

    settings = load_settings(
        {
            "SUPERVISOR_COMPOSE_PROJECT": "proj",
            "SUPERVISOR_SERVICES": "app=app",
            "SUPERVISOR_BACKUP_DIR": str(tmp_path),
            "SUPERVISOR_STATE_DIR": str(tmp_path),
            "SUPERVISOR_EXEC_TIMEOUT": "42",
            "SUPERVISOR_BACKUP_TIMEOUT": "900",
            "SUPERVISOR_SIGNATURE_POLICY": "off",
        }
    )
    options = SnapshotOptions.from_settings(settings)
    assert (options.exec_timeout, options.timeout) == (42.0, 900.0)
    engine = FakeEngine()
    service = service_for(engine, tmp_path, influx_token="t" * 20, exec_timeout=42.0)
    await service.preflight()
    probes = [timeout for argv, timeout in engine.timeouts if argv == ["influxd", "version"]]
    assert probes == [42.0]
