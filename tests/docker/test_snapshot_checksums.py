"""The restore-side checksums catch what they must, on a real server, through the proxy.

How a damaged restore is produced without reaching into the product: snapshots are
taken of a chain of states S0, S1, … where each state differs from the one before
in exactly one thing (a changed row, a missing row, a moved sequence, a changed
large object). Snapshot i's manifest is then given the checksums recorded for
snapshot i-1: restoring it restores S_i for real while the manifest describes
S_{i-1}, exactly as if the restore had changed that one thing. The product's
verification (parallel connections, order-independent sums, sequences, large
objects) must refuse it, name that one thing, and drop the scratch copy.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from supervisor.exceptions import RestoreFailed
from supervisor.snapshots import SnapshotReason, SnapshotService
from supervisor.snapshots import checksum_sql as cs
from supervisor.snapshots.models import SnapshotManifest
from supervisor.snapshots.postgres import PostgresSnapshots
from tests.docker.conftest import SnapshotFactory
from tests.support import pg_state
from tests.support.databases import PostgresHandle

# Floats are hashed by their bits: -0 is not 0, and a NaN made by arithmetic (another
# bit pattern than the text 'NaN' reads back as) must still verify after a restore.
READINGS_SQL = (
    "CREATE TABLE readings (v float8, w real); INSERT INTO readings VALUES ('-0', '-0'), "
    "('inf'::float8 - 'inf'::float8, 'inf'::real - 'inf'::real), ('NaN', 'NaN'), "
    "(0.1, 0.1), ('Infinity', '-Infinity'), (NULL, NULL);"
)
LARGE_OBJECTS_SQL = (
    "SELECT lo_from_bytea(0, decode(repeat('0123456789abcdef', 200000), 'hex')); "
    "SELECT lo_from_bytea(0, 'small');"
    # Duplicate rows: an xor of row hashes cancels them, the sum must not.
    "CREATE TABLE dupes (v text); INSERT INTO dupes VALUES ('same'), ('same'), ('other');"
)
CHANGES = [
    ("changed row", "UPDATE customers SET name = 'Mallory' WHERE id = 5",
     r"table public\.customers: same row count, different content"),
    ("missing row", "DELETE FROM orders WHERE id = 69000",
     r"table public\.orders: 68999 rows, 69000 when dumped"),
    ("changed sequence", "SELECT setval('invoice_no', 5000)",
     r"sequence public\.invoice_no: last_value 5000 \(is_called True\), \d+ "
     r"\(is_called True\) when dumped"),
    ("changed large object",
     "SELECT lo_put((SELECT min(oid) FROM pg_largeobject_metadata), 1000000, 'X')",
     r"large objects: same number \(2\), different content"),
    # Both copies of a duplicate changed alike: an xor of row hashes would not notice.
    ("changed duplicates", "UPDATE dupes SET v = 'changed' WHERE v = 'same'",
     r"table public\.dupes: same row count, different content"),
    ("float sign", "UPDATE readings SET v = 0 WHERE v::text = '-0'",
     r"table public\.readings: same row count, different content"),
]  # fmt: skip


def _graft_checksums(service: SnapshotService, target: str, source: SnapshotManifest) -> None:
    """Give snapshot ``target`` the checksums recorded for ``source``."""
    assert source.postgres is not None
    path = service.store.path_of(target) / "manifest.json"
    raw = json.loads(path.read_text())
    recorded = source.postgres.model_dump(mode="json")
    for key in ("tables", "sequences", "large_objects", "checksum_method"):
        raw["postgres"][key] = recorded[key]
    path.write_text(json.dumps(raw))


async def test_restore_verification_catches_each_kind_of_difference(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory
) -> None:
    pg_state.seed(postgres)
    postgres.psql(LARGE_OBJECTS_SQL)
    postgres.psql(READINGS_SQL)
    service = snapshot_service(postgres=postgres.container_id)
    previous = await service.create(SnapshotReason.MANUAL)
    assert previous.postgres is not None
    assert previous.postgres.checksum_method == "row-v3"
    assert previous.postgres.large_objects is not None
    assert previous.postgres.large_objects.rows == 2
    assert previous.postgres.sequences is not None
    assert set(previous.postgres.sequences) >= {"public.invoice_no", "public.orders_id_seq"}
    assert previous.postgres.tables["public.dupes"].rows == 3
    # The intact snapshot restores and verifies (tables, sequences, large objects).
    await service.restore_postgres_into(previous.id, "intact")
    assert postgres.psql("SELECT count(*) FROM pg_largeobject_metadata", "intact") == "2"
    await service.drop_database("intact")

    failures: dict[str, str] = {}
    for what, change, _ in CHANGES:
        postgres.psql(change)
        current = await service.create(SnapshotReason.MANUAL)
        _graft_checksums(service, current.id, previous)
        with pytest.raises(RestoreFailed) as refused:
            await service.restore_postgres_into(current.id, "tampered")
        failures[what] = refused.value.message
        assert len(refused.value.details["problems"]) == 1, refused.value.message
        assert "tampered" not in pg_state.databases(postgres)  # the scratch copy was dropped
        previous = current

    for what, _, expected in CHANGES:
        assert re.search(f"the restored copy differs from the dump: {expected}", failures[what]), (
            what,
            failures[what],
        )
    assert pg_state.container_leftovers(postgres) == ""


async def test_a_snapshot_taken_with_row_v2_still_verifies(
    postgres: PostgresHandle, snapshot_service: SnapshotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot taken before row-v3 (floats hashed as their text) is verified by the
    method it was taken with, and still catches a changed float."""
    postgres.psql(READINGS_SQL)
    service = snapshot_service(postgres=postgres.container_id)
    with monkeypatch.context() as patch:
        patch.setattr(cs, "ROW_METHOD", cs.ROW_V2_METHOD)  # the dump side of before
        old = await service.create(SnapshotReason.MANUAL)
    assert old.postgres is not None
    assert old.postgres.checksum_method == "row-v2"
    await service.restore_postgres_into(old.id, "old_intact")
    await service.drop_database("old_intact")
    postgres.psql("UPDATE readings SET w = 0.2 WHERE w = 0.1::real")
    changed = await service.create(SnapshotReason.MANUAL)
    assert changed.postgres is not None
    assert changed.postgres.checksum_method == "row-v3"
    _graft_checksums(service, changed.id, old)
    with pytest.raises(RestoreFailed, match=r"table public\.readings: same row count"):
        await service.restore_postgres_into(changed.id, "old_tampered")


@pytest.mark.parametrize(("cpus", "connections"), [(4, 2), (2, 1)])
async def test_checksums_split_a_large_table_over_connections(
    postgres: PostgresHandle,
    snapshot_service: SnapshotFactory,
    monkeypatch: pytest.MonkeyPatch,
    cpus: int,
    connections: int,
) -> None:
    """A table bigger than a worker's share is read in page ranges by separate connections;
    the parts add up to the same figures at dump and at restore, and the full restore
    (with the swap) verifies. After a restore the verification runs beside pg_restore's
    index builds (``restore_jobs`` of them) and takes only the CPUs they leave: on a
    container of two CPUs, one connection reading the table whole. (The smallest range
    is lowered so that a small table is split, and the container's CPU count is the
    parameter; the split itself is the product's.)"""
    postgres.psql(
        "CREATE TABLE wide (id int, pad text); "
        "INSERT INTO wide SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 50000) i; "
        "INSERT INTO wide SELECT * FROM wide WHERE id <= 10"  # duplicates, in other pages
    )
    monkeypatch.setattr(cs, "MIN_CHUNK_BLOCKS", 16)
    splits: list[list[list[cs.Piece]]] = []
    real_split = cs.split_work

    def recording_split(*args: Any, **kwargs: Any) -> list[list[cs.Piece]]:
        splits.append(real_split(*args, **kwargs))
        return splits[-1]

    monkeypatch.setattr(cs, "split_work", recording_split)

    async def count_cpus(self: PostgresSnapshots) -> int:
        return cpus

    monkeypatch.setattr(PostgresSnapshots, "_count_cpus", count_cpus)
    service = snapshot_service(postgres=postgres.container_id, restore_jobs=2)
    manifest = await service.create(SnapshotReason.MANUAL)
    assert manifest.postgres is not None
    assert manifest.postgres.tables["public.wide"].rows == 50010
    postgres.psql("DELETE FROM wide WHERE id % 2 = 0")

    await service.restore(manifest.id)

    assert postgres.psql("SELECT count(*) FROM wide") == "50010"
    restore_split = splits[-1]
    # One connection per CPU the two pg_restore jobs leave (at least one, at most
    # restore_jobs): several each read a range of the table's pages, one reads it whole.
    assert len(restore_split) == connections
    assert all(piece.table.key == "public.wide" for share in restore_split for piece in share)
    if connections == 1:
        assert [(p.first, p.last) for p in restore_split[0]] == [(0, None)]
