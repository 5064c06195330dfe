"""The snapshot store on a real directory: atomic commit, listing, verify, delete, ids."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.api.errors import http_status
from supervisor.exceptions import (
    BackupFailed,
    InvalidSnapshotId,
    SnapshotCorrupt,
    SnapshotNotFound,
    SnapshotWrongProject,
)
from supervisor.snapshots import SnapshotManifest, SnapshotReason, SnapshotStore
from supervisor.snapshots.models import check_snapshot_id, new_snapshot_id

BAD_IDS = [
    "../etc", "..", "20250101T000000Z_0123abcd/..", "20250101T000000Z_0123ABCD",
    "/tmp/x", "20250101T000000Z_0123abc", "x20250101T000000Z_0123abcd", "",
    "20250101T000000Z_0123abcd\n", ".tmp-20250101T000000Z_0123abcd",
]  # fmt: skip


async def _snapshot(
    store: SnapshotStore, content: bytes = b"data", at: datetime | None = None
) -> SnapshotManifest:
    snapshot_id = new_snapshot_id(at)
    async with store.begin(snapshot_id) as writer:
        async with writer.sink("postgres.dump") as sink:
            for _ in range(3):
                await sink(content)
        writer.add(sink.entry)
        manifest = SnapshotManifest(
            id=snapshot_id, project=store.project, reason=SnapshotReason.MANUAL,
            created_at=at or datetime.now(UTC), files=writer.files,
        )  # fmt: skip
        await store.commit(writer, manifest)
    return manifest


async def test_commit_list_get_verify_delete(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, "proj")
    base = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    older = await _snapshot(store, at=base)
    newer = await _snapshot(store, b"x" * 100_000, at=base + timedelta(hours=1))

    assert [m.id for m in await store.list()] == [newer.id, older.id]
    assert (await store.get(older.id)).file("postgres.dump").size == 12
    assert (await store.verify(newer.id)).total_bytes == 300_000
    assert oct(os.stat(tmp_path / older.id).st_mode & 0o777) == "0o700"
    assert sorted(os.listdir(tmp_path / older.id)) == ["manifest.json", "postgres.dump"]

    await store.delete(older.id)
    assert [m.id for m in await store.list()] == [newer.id]
    assert sorted(os.listdir(tmp_path)) == [newer.id]
    with pytest.raises(SnapshotNotFound):
        await store.get(older.id)
    with pytest.raises(SnapshotNotFound):
        await store.delete(older.id)


async def test_a_failed_snapshot_leaves_nothing_and_is_never_listed(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, "proj")

    async def dump_that_dies() -> None:
        async with store.begin(new_snapshot_id()) as writer:
            async with writer.sink("postgres.dump") as sink:
                await sink(b"half a dump")
            raise RuntimeError("pg_dump died")

    with pytest.raises(RuntimeError):
        await dump_that_dies()
    assert os.listdir(tmp_path) == []
    # an interrupted writer's folder (a crash: nobody removed it) is not a snapshot
    (tmp_path / ".tmp-20250101T000000Z_0123abcd").mkdir()
    assert await store.list() == []
    assert await store.remove_stale(older_than=3600) == []
    old = time.time() - 7200
    os.utime(tmp_path / ".tmp-20250101T000000Z_0123abcd", (old, old))
    assert await store.remove_stale(older_than=3600) == [".tmp-20250101T000000Z_0123abcd"]


async def test_commit_refuses_a_manifest_that_does_not_match(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, "proj")

    async def commit_a_ghost() -> None:
        async with store.begin(new_snapshot_id()) as writer:
            manifest = SnapshotManifest(
                id=writer.snapshot_id, project="proj", reason=SnapshotReason.MANUAL,
                created_at=datetime.now(UTC),
                files=[{"name": "ghost", "size": 1, "sha256": "0" * 64}],  # type: ignore[list-item]
            )  # fmt: skip
            await store.commit(writer, manifest)

    with pytest.raises(BackupFailed, match="does not describe the files"):
        await commit_a_ghost()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove", "extend"])
async def test_verify_finds_damage(tmp_path: Path, damage: str) -> None:
    store = SnapshotStore(tmp_path, "proj")
    manifest = await _snapshot(store, b"0123456789" * 1000)
    dump = tmp_path / manifest.id / "postgres.dump"
    data = bytearray(dump.read_bytes())
    if damage == "flip":
        data[5] ^= 1
        dump.write_bytes(bytes(data))
    elif damage == "truncate":
        dump.write_bytes(bytes(data[:-1]))
    elif damage == "extend":
        dump.write_bytes(bytes(data) + b"\0")
    else:
        dump.unlink()
    with pytest.raises(SnapshotCorrupt, match="postgres.dump") as err:
        await store.verify(manifest.id)
    assert http_status(err.value) == 422


async def test_verifying_runs_beside_the_caller_and_its_damage_wins(tmp_path: Path) -> None:
    """The re-hash runs while the caller works; a damaged file is the error raised, whether
    the caller awaited the re-hash, never did, or failed of something else meanwhile."""
    store = SnapshotStore(tmp_path, "proj")
    intact = await _snapshot(store, b"0123456789" * 1000)
    async with store.verifying(intact.id) as verified:
        assert not verified.done()  # the caller runs first
        assert (await verified).id == intact.id

    damaged = await _snapshot(store, b"abc", at=datetime(2025, 1, 1, tzinfo=UTC))
    (tmp_path / damaged.id / "postgres.dump").write_bytes(b"abd" * 3)
    with pytest.raises(SnapshotCorrupt, match="postgres.dump"):
        async with store.verifying(damaged.id):
            pass  # never awaited: still refused on the way out
    with pytest.raises(SnapshotCorrupt, match="postgres.dump") as err:
        async with store.verifying(damaged.id):
            raise RuntimeError("pg_restore failed")  # a failure the damage may have caused
    assert isinstance(err.value.__cause__, RuntimeError)
    # Damage in files the caller did not ask for does not count.
    async with store.verifying(damaged.id, names=()) as verified:
        await verified


async def test_verifying_cancelled_stops_the_rehash(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, "proj")
    manifest = await _snapshot(store)
    caught: list[asyncio.Future[SnapshotManifest]] = []

    async def restore() -> None:
        async with store.verifying(manifest.id) as verified:
            caught.append(verified)
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(restore())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert caught[0].done()


async def test_unreadable_manifests(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, "proj")
    manifest = await _snapshot(store)
    path = tmp_path / manifest.id / "manifest.json"
    data = json.loads(path.read_text())
    data["files"][0]["name"] = "../../state/journal.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SnapshotCorrupt, match="manifest.json is invalid"):
        await store.get(manifest.id)
    assert await store.list() == []  # skipped, with a warning
    other = new_snapshot_id()
    (tmp_path / other).mkdir()
    path.rename(tmp_path / other / "manifest.json")
    with pytest.raises(SnapshotCorrupt):
        await store.get(other)


async def test_another_projects_snapshot_is_refused(tmp_path: Path) -> None:
    manifest = await _snapshot(SnapshotStore(tmp_path, "alpha"))
    mine = SnapshotStore(tmp_path, "beta")
    with pytest.raises(SnapshotWrongProject, match="'alpha', not 'beta'") as err:
        mine.check_project(await mine.get(manifest.id))
    assert http_status(err.value) == 409


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_ids_are_validated_before_any_path(tmp_path: Path, bad: str) -> None:
    store = SnapshotStore(tmp_path, "proj")
    with pytest.raises(InvalidSnapshotId) as err:
        check_snapshot_id(bad)
    assert http_status(err.value) == 400
    for call in (store.get, store.verify, store.delete):
        with pytest.raises(InvalidSnapshotId):
            await call(bad)


def test_new_ids_sort_by_time() -> None:
    first = new_snapshot_id(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert first.startswith("20250102T030405Z_")
    assert check_snapshot_id(first) == first
    assert new_snapshot_id(datetime(2026, 1, 1, tzinfo=UTC)) > first
