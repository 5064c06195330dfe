"""PostgreSQL snapshots against a real server, through the docker-proxy.

The acceptance case: a database with several tables, indexes, a sequence, a
view, a bytea column and ~100k rows is dumped, changed, restored, and is then
identical to the dumped state, measured independently of the product
(schema dump, per-table md5 of the ordered rows, sequence positions).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from supervisor.api.errors import http_status
from supervisor.exceptions import RestoreFailed, SnapshotCorrupt
from supervisor.snapshots import SnapshotReason
from supervisor.snapshots import store as store_module
from supervisor.snapshots.models import FileEntry
from tests.docker.conftest import SnapshotFactory, rewrite_manifest_hash
from tests.support import pg_state
from tests.support.databases import PostgresHandle
from tests.support.dockercli import ENGINE_SOCKET


async def test_dump_change_restore_is_identical(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    pg_state.seed(postgres)
    dumped = pg_state.state(postgres)
    assert sum(int(v.split(":")[0]) for v in dumped.tables.values()) >= 100_000
    service = snapshot_service(postgres=postgres.container_id)
    images = {"app": "registry.example/app@sha256:" + "a" * 64}
    steps: list[str] = []

    manifest = await service.create(
        SnapshotReason.PRE_UPDATE, run_id="run-1", images=images,
        progress=lambda p: steps.append(p.step),
    )  # fmt: skip

    assert steps[0] == "preflight"
    assert steps[-1] == "done"
    assert "postgres" in steps
    assert manifest.reason is SnapshotReason.PRE_UPDATE
    assert manifest.run_id == "run-1"
    assert manifest.images == images
    assert manifest.project == "snaptest"
    assert manifest.migration_revision == "002"
    assert manifest.database_versions["postgres"].startswith("15.")
    assert manifest.postgres is not None
    assert manifest.postgres.tables["public.customers"].rows == 20_000
    assert {f.name for f in manifest.files} == {"postgres.dump", "postgres-globals.sql"}
    folder = service.store.path_of(manifest.id)
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["id"] == manifest.id
    assert "PGPASSWORD" not in (folder / "postgres-globals.sql").read_text()
    assert [m.id for m in await service.list()] == [manifest.id]

    pg_state.change(postgres)
    for _ in range(3):
        postgres.psql("SELECT nextval('invoice_no')")
    assert pg_state.state(postgres) != dumped

    restored = await service.restore(manifest.id)

    assert restored.id == manifest.id
    after = pg_state.state(postgres)
    assert after.schema == dumped.schema
    assert after.tables == dumped.tables
    assert after.sequences == dumped.sequences
    assert pg_state.databases(postgres) == ["appdb", "postgres", "template0", "template1"]
    assert pg_state.container_leftovers(postgres) == ""


async def test_scratch_copy_for_a_rehearsal(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    pg_state.seed(postgres)
    dumped = pg_state.state(postgres)
    service = snapshot_service(postgres=postgres.container_id)
    manifest = await service.create(SnapshotReason.MANUAL)
    pg_state.change(postgres)
    live = pg_state.state(postgres)

    await service.restore_postgres_into(manifest.id, "appdb_rehearsal")

    assert pg_state.state(postgres, "appdb_rehearsal") == dumped
    assert pg_state.state(postgres) == live  # the live database was not touched
    with pytest.raises(RestoreFailed, match="exists already"):
        await service.restore_postgres_into(manifest.id, "appdb_rehearsal")
    with pytest.raises(RestoreFailed, match="refusing"):
        await service.restore_postgres_into(manifest.id, "appdb")
    await service.drop_database("appdb_rehearsal")
    assert "appdb_rehearsal" not in pg_state.databases(postgres)
    with pytest.raises(Exception, match="only scratch copies"):
        await service.drop_database("appdb")
    assert pg_state.container_leftovers(postgres) == ""


async def test_snapshot_while_the_app_writes_still_verifies(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    """Counts and checksums describe exactly what pg_dump saw, even under writes."""
    pg_state.seed(postgres)
    service = snapshot_service(postgres=postgres.container_id)
    writer = await asyncio.create_subprocess_exec(  # inserts for ~10 s, committing each row
        "docker", "-H", ENGINE_SOCKET, "exec", postgres.container_id, "psql", "-X", "-q",
        "-U", postgres.user, "-d", postgres.database, "-c",
        "DO $$ BEGIN FOR i IN 1..200 LOOP INSERT INTO audit.events VALUES (now(), 'w'); "
        "COMMIT; PERFORM pg_sleep(0.05); END LOOP; END $$",
    )  # fmt: skip
    try:
        await asyncio.sleep(1)
        manifest = await service.create(SnapshotReason.MANUAL)
    finally:
        await asyncio.wait_for(writer.wait(), timeout=120)
    assert manifest.postgres is not None
    dumped_events = manifest.postgres.tables["audit.events"].rows
    assert 1000 < dumped_events < 1200
    await service.restore(manifest.id)  # verified against the held snapshot's stats
    assert postgres.psql("SELECT count(*) FROM audit.events") == str(dumped_events)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_corrupt_dump_is_refused_before_anything_is_restored(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, damage: str
) -> None:
    pg_state.seed(postgres)
    service = snapshot_service(postgres=postgres.container_id)
    manifest = await service.create(SnapshotReason.MANUAL)
    pg_state.change(postgres)
    before = pg_state.state(postgres)
    commits = postgres.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'appdb'")
    dump = service.store.path_of(manifest.id) / "postgres.dump"
    data = bytearray(dump.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[-1000:]
    dump.write_bytes(bytes(data))

    with pytest.raises(SnapshotCorrupt, match="postgres.dump") as refused:
        await service.restore(manifest.id)

    assert http_status(refused.value) == 422
    with pytest.raises(SnapshotCorrupt):
        await service.restore_postgres_into(manifest.id, "scratch")
    assert pg_state.databases(postgres) == ["appdb", "postgres", "template0", "template1"]
    assert pg_state.state(postgres) == before
    # pg_state.state itself runs a handful of read-only transactions; no restore step ran.
    after = postgres.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'appdb'")
    assert int(after) - int(commits) < 50
    # The re-hash ran beside the scratch database and the sibling: neither is left.
    assert pg_state.container_leftovers(postgres) == ""


async def test_the_rehash_runs_beside_the_scratch_database_and_pg_restore_waits(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files' re-hash is not waited for alone (docs/snapshots.md, restore step 1): the
    scratch database is created while it runs, and pg_restore starts only after it."""
    pg_state.seed(postgres)
    service = snapshot_service(postgres=postgres.container_id)
    manifest = await service.create(SnapshotReason.MANUAL)
    real_hash = store_module.hash_file
    tables_while_hashing: list[str] = []

    def slow_hash(path: Path) -> FileEntry:
        deadline = time.monotonic() + 30
        while "scratch" not in pg_state.databases(postgres):
            assert time.monotonic() < deadline, "no scratch database while the files were hashed"
            time.sleep(0.05)
        sql = "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        tables_while_hashing.append(postgres.psql(sql, "scratch"))
        return real_hash(path)

    monkeypatch.setattr(store_module, "hash_file", slow_hash)
    await service.restore_postgres_into(manifest.id, "scratch")

    assert tables_while_hashing == ["0", "0"]  # the dump and the globals; nothing restored yet
    assert int(postgres.psql("SELECT count(*) FROM customers", "scratch")) > 0


async def test_a_dump_that_does_not_restore_leaves_the_live_database(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, tmp_path: Path
) -> None:
    """A dump whose checksum matches but which pg_restore rejects (written wrong at the
    source): the new database is dropped and the live one is as it was."""
    pg_state.seed(postgres)
    service = snapshot_service(postgres=postgres.container_id)
    manifest = await service.create(SnapshotReason.MANUAL)
    folder = service.store.path_of(manifest.id)
    dump = folder / "postgres.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = bytes(4096)
    dump.write_bytes(bytes(data))
    rewrite_manifest_hash(folder, "postgres.dump")
    pg_state.change(postgres)
    before = pg_state.state(postgres)

    with pytest.raises(RestoreFailed, match="(?s)pg_restore into 'appdb__restore_.*left as it was"):
        await service.restore(manifest.id)

    assert pg_state.state(postgres) == before
    assert pg_state.databases(postgres) == ["appdb", "postgres", "template0", "template1"]
    assert pg_state.container_leftovers(postgres) == ""
