"""The rollback copy on a real server, through the proxy: an exact copy (rows, sequences,
schema, owner, database settings), a swap that is one transaction and idempotent, a dump
of the replaced database in the live one's name, and nothing left behind."""

from __future__ import annotations

import asyncio

import pytest

from supervisor.exceptions import BackupFailed, RestoreFailed
from supervisor.snapshots import SnapshotReason
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.protocol import CopySwap, RunDatabases
from tests.docker.conftest import SnapshotFactory
from tests.support import pg_state
from tests.support.databases import PostgresHandle

pytestmark = pytest.mark.docker

TAG = "run0copy"
SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"


async def test_copy_swap_dump_and_drop(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    service = snapshot_service(postgres=postgres.container_id)
    pg_state.seed(postgres)
    postgres.psql(f"ALTER DATABASE {postgres.database} SET work_mem TO '7MB'")
    postgres.psql(f'ALTER DATABASE {postgres.database} SET search_path TO "$user", public, "My S"')
    before = pg_state.state(postgres)
    # A session of another client (not the app) does not stop the copy: it is ended.
    idle = await asyncio.create_subprocess_exec(
        "docker", "exec", postgres.container_id, "psql", "-U", postgres.user, "-d",
        postgres.database, "-c", "SELECT pg_sleep(60)",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if postgres.psql(SLEEPING) == "1":
                break
            await asyncio.sleep(0.1)
        assert postgres.psql(SLEEPING) == "1"
        copy = await service.copy_database(TAG)
    finally:
        if idle.returncode is None:
            idle.kill()
        await idle.wait()
    assert copy == sql.copy_database_name(postgres.database, TAG)
    assert pg_state.state(postgres, copy) == before
    settings = {
        name: postgres.psql(
            "SELECT string_agg(s, ';' ORDER BY s) FROM pg_db_role_setting r "  # noqa: S608
            "JOIN pg_database d ON d.oid = r.setdatabase, "
            f"unnest(r.setconfig) s WHERE d.datname = '{name}'"
        )
        for name in (postgres.database, copy)
    }
    assert settings[copy] == settings[postgres.database]
    assert settings[copy] == 'search_path="$user", public, "My S";work_mem=7MB'

    pg_state.change(postgres)  # the new version writes
    changed = pg_state.state(postgres)
    assert changed != before
    kept = sql.kept_database_name(postgres.database, TAG)
    assert await service.run_databases(TAG) == RunDatabases(copy=copy)
    assert await service.swap_in_copy(TAG) == CopySwap(swapped=True, kept=kept)
    assert await service.run_databases(TAG) == RunDatabases(kept=kept)
    assert pg_state.state(postgres) == before  # the database as it was, by a rename
    assert pg_state.state(postgres, kept) == changed  # what the new version wrote, aside
    # A resumed rollback: reported again, nothing done again.
    assert await service.swap_in_copy(TAG) == CopySwap(swapped=True, kept=kept)
    assert pg_state.state(postgres) == before
    assert copy not in pg_state.databases(postgres)

    # The replaced database, dumped in the live one's name, restores as the live one.
    dump = await service.create(
        SnapshotReason.PRE_ROLLBACK, "run0", influxdb=False, postgres_source=kept
    )
    assert dump.postgres is not None
    assert dump.postgres.database == postgres.database
    await service.check(dump.id)
    await service.drop_kept_database(kept)
    await service.restore(dump.id)
    assert pg_state.state(postgres) == changed
    assert [d for d in pg_state.databases(postgres) if "__" in d] == []
    assert pg_state.container_leftovers(postgres) == ""


async def test_no_room_leaves_nothing_and_a_missing_copy_swaps_nothing(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    service = snapshot_service(postgres=postgres.container_id, min_free_bytes_margin=1 << 60)
    pg_state.seed(postgres)
    with pytest.raises(BackupFailed, match="no room for a rollback copy"):
        await service.copy_database(TAG)
    assert [d for d in pg_state.databases(postgres) if "__" in d] == []
    # The caller restores instead.
    assert await service.swap_in_copy(TAG) == CopySwap(swapped=False)
    assert pg_state.databases(postgres).count(postgres.database) == 1
    await service.drop_copy(TAG)  # idempotent
    assert await service.run_databases(TAG) == RunDatabases()


async def test_a_copy_swapped_in_without_a_live_database_keeps_nothing(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    """Someone dropped the live database during the failed version: the copy becomes the
    live database, and no kept database is reported (it was never made)."""
    service = snapshot_service(postgres=postgres.container_id)
    pg_state.seed(postgres)
    before = pg_state.state(postgres)
    copy = await service.copy_database(TAG)
    assert copy is not None
    postgres.psql(f'DROP DATABASE "{postgres.database}" WITH (FORCE)', "postgres")

    assert await service.swap_in_copy(TAG) == CopySwap(swapped=True)
    assert pg_state.state(postgres) == before
    assert await service.run_databases(TAG) == RunDatabases()


async def test_a_snapshot_completed_from_the_copy_restores_the_moment_of_the_copy(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    """The pre-update snapshot without PostgreSQL (taken while the app is stopped), then
    the copy's dump added to it while the live database changes: it restores the copy's
    moment, in the live database's name."""
    service = snapshot_service(postgres=postgres.container_id)
    pg_state.seed(postgres)
    before = pg_state.state(postgres)
    copy = await service.copy_database(TAG)
    assert copy is not None
    partial = await service.create(SnapshotReason.PRE_UPDATE, "run0", postgres=False)
    assert partial.postgres is None
    with pytest.raises(RestoreFailed, match="holds no PostgreSQL dump"):
        await service.restore(partial.id)  # never InfluxDB alone as if it were whole
    pg_state.change(postgres)  # the new version runs while the copy is dumped
    whole = await service.add_postgres(partial.id, copy)
    assert whole.postgres is not None
    assert whole.postgres.database == postgres.database
    assert [f.name for f in whole.files][: len(partial.files)] == [f.name for f in partial.files]
    assert await service.add_postgres(partial.id, copy) == whole  # done: nothing again
    await service.check(whole.id)
    assert (await service.list())[0] == whole
    await service.drop_copy(TAG)
    await service.restore(whole.id)
    assert pg_state.state(postgres) == before
    assert [d for d in pg_state.databases(postgres) if "__" in d] == []
    assert pg_state.container_leftovers(postgres) == ""
