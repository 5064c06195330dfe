"""The PostgreSQL checksums' SQL builders, work split and comparisons (pure functions).

The real server proves the SQL runs and catches damage (tests/docker/
test_snapshot_checksums.py); these pin what cannot be seen from outside: which
columns are hashed as values and which as text, that the work split covers every
page exactly once, and that partial sums add up.
"""

from __future__ import annotations

import itertools
import json

import pytest

from supervisor.snapshots import checksum_sql as cs
from supervisor.snapshots.models import PostgresDump, SequenceStats, TableStats
from supervisor.snapshots.pg_checksums import (
    Measured,
    compare_large_objects,
    compare_sequences,
    compare_stats,
    differences,
    sequence_stats,
)


def table(
    key: str = "public.t", blocks: int = 10, columns: tuple[tuple[str, int], ...] = ()
) -> cs.TablePlan:
    schema, name = key.split(".")
    return cs.TablePlan(key=key, schema=schema, name=name, blocks=blocks, columns=columns)


def test_row_hash_hashes_exact_types_as_values_and_the_rest_as_text() -> None:
    t = table(columns=(("id", 20), ("Name", 25), ("amount", 1700), ("x", 701), ("at", 1184)))
    assert cs.row_hash(t, cs.ROW_METHOD) == (
        'hash_record_extended(ROW(r."id", r."Name" COLLATE "C", r."amount"::text COLLATE "C", '
        "CASE WHEN r.\"x\" = 'NaN' THEN decode('7ff8000000000000', 'hex') "
        'ELSE float8send(r."x") END, r."at"), 0)'
    )
    # Snapshots taken with row-v2 are verified as they were taken: floats as text.
    assert cs.row_hash(t, cs.ROW_V2_METHOD) == (
        'hash_record_extended(ROW(r."id", r."Name" COLLATE "C", r."amount"::text COLLATE "C", '
        'r."x"::text COLLATE "C", r."at"), 0)'
    )
    real = table(columns=(("f", 700),))
    assert cs.row_hash(real, cs.ROW_METHOD) == (
        "hash_record_extended(ROW(CASE WHEN r.\"f\" = 'NaN' THEN decode('7fc00000', 'hex') "
        'ELSE float4send(r."f") END), 0)'
    )
    assert cs.row_hash(t, cs.TEXT_METHOD) == "hashtextextended(ROW(r.*)::text, 0)"
    assert cs.row_hash(table(columns=()), cs.ROW_METHOD) == "0::bigint"


def test_method_depends_on_the_server_version() -> None:
    assert cs.method_for(150004) == cs.ROW_METHOD
    assert cs.method_for(140000) == cs.ROW_METHOD
    assert cs.method_for(130011) == cs.TEXT_METHOD


def test_piece_sql_quotes_names_and_bounds_pages() -> None:
    t = table('we"ird.T', blocks=100_000, columns=(("id", 23),))
    whole = cs.piece_sql(cs.Piece(t, 0, None), cs.ROW_METHOD)
    assert 'FROM "we""ird"."T" AS r' in whole
    assert "'we\"ird.T' AS k" in whole
    assert "ctid" not in whole
    middle = cs.piece_sql(cs.Piece(t, 10, 20), cs.ROW_METHOD)
    assert middle.endswith("WHERE r.ctid >= '(10,0)'::tid AND r.ctid < '(20,0)'::tid")
    last = cs.piece_sql(cs.Piece(t, 20, None), cs.ROW_METHOD)
    assert last.endswith("WHERE r.ctid >= '(20,0)'::tid")  # open-ended: pages added later


def test_split_work_covers_every_page_once_and_balances() -> None:
    big = table("public.big", blocks=100_000)
    small = [table(f"public.s{i}", blocks=10 * i) for i in range(1, 6)]
    bins = cs.split_work([big, *small], 2, splittable=True)
    assert len(bins) == 2
    pieces = [p for b in bins for p in b]
    ranges = sorted((p.first, p.last) for p in pieces if p.table is big)
    assert ranges[0][0] == 0
    assert ranges[-1][1] is None
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end == start  # contiguous, no gap, no overlap
    assert {p.table.key for p in pieces} == {t.key for t in [big, *small]}
    loads = [sum(p.weight for p in b) for b in bins]
    assert max(loads) - min(loads) <= 0.1 * sum(loads)


def test_split_work_without_tid_range_scans_keeps_tables_whole() -> None:
    big = table("public.big", blocks=100_000)
    bins = cs.split_work([big, table("public.s", 5)], 2, splittable=False)
    assert sorted((p.table.key, p.first, p.last) for b in bins for p in b) == [
        ("public.big", 0, None), ("public.s", 0, None),
    ]  # fmt: skip
    # Small databases are not split at all, and never give more jobs than workers.
    assert len(cs.split_work([table(blocks=100)], 8, splittable=True)) == 1
    assert cs.split_work([], 2, splittable=True) == []


def test_job_commands_union_the_parts_and_stay_under_the_argument_limit() -> None:
    t = table(columns=(("id", 23),))
    [[sql]] = cs.job_commands([cs.Piece(t, 0, None)], cs.ROW_METHOD, large_objects=True)
    assert sql.startswith("SELECT 'part=' || json_agg(")
    assert sql.count(" UNION ALL ") == 1
    assert "pg_largeobject_metadata" in sql
    with pytest.raises(ValueError, match="at least one part"):
        cs.job_commands([], cs.ROW_METHOD)
    many = [
        cs.Piece(table(f"public.t{i:05}", columns=(("id", 23),)), 0, None) for i in range(20_000)
    ]
    commands = cs.job_commands(many, cs.ROW_METHOD)
    statements = [s for command in commands for s in command]
    assert len(commands) > 1
    assert max(map(len, statements)) <= cs.MAX_STATEMENT_CHARS
    assert max(sum(map(len, c)) for c in commands) <= cs.MAX_COMMAND_CHARS
    assert sum(s.count("SELECT 't' AS kind") for s in statements) == 20_000
    assert cs.part_lines("x\npart=[1]\npart=[2]\n") == ["[1]", "[2]"]
    assert cs.in_snapshot("0003-1", "SELECT 1") == [
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "SET TRANSACTION SNAPSHOT '0003-1'", "SELECT 1", "COMMIT",
    ]  # fmt: skip


def test_partial_sums_add_up_and_duplicates_count() -> None:
    totals = cs.Totals(tables={})
    # Two halves of one table; a duplicate row adds its hash twice (an xor would cancel).
    totals.add(json.dumps([["t", "public.t", "2", "-5"], ["t", "public.u", "0", "0"]]))
    totals.add(json.dumps([["t", "public.t", "1", "12345678901234567890123"], ["l", "", "2", "9"]]))
    assert totals.tables == {"public.t": [3, 12345678901234567890118], "public.u": [0, 0]}
    assert totals.large_objects == [2, 9]
    with pytest.raises(ValueError, match="kind"):
        totals.add(json.dumps([["x", "", "0", "0"]]))


def test_plan_and_sequences_parse() -> None:
    plan = cs.parse_plan('[{"k": "public.t", "s": "public", "n": "t", "b": 3, "c": [["id", 20]]}]')
    assert plan == [cs.TablePlan("public.t", "public", "t", 3, (("id", 20),))]
    assert cs.parse_sequences('{"public.s": "42:true", "a.b": "1:false"}') == {
        "public.s": (42, True), "a.b": (1, False),
    }  # fmt: skip
    with pytest.raises(ValueError, match="could not be read"):
        cs.parse_sequences('{"public.s": null}')


def test_sequences_moved_during_the_dump_become_a_range() -> None:
    before = {"public.quiet": (5, True), "public.busy": (100, True)}
    after = {"public.quiet": (5, True), "public.busy": (130, True)}
    stats = sequence_stats(before, after)
    assert stats["public.quiet"] == SequenceStats(last_value=5, is_called=True)
    assert stats["public.busy"] == SequenceStats(last_value=100, is_called=True, moved_to=130)
    assert compare_sequences(stats, {"public.quiet": (5, True), "public.busy": (117, True)}) == []
    assert compare_sequences(stats, {"public.quiet": (6, True), "public.busy": (131, True)}) == [
        "sequence public.busy: last_value 131, between 100 and 130 when dumped",
        "sequence public.quiet: last_value 6 (is_called True), 5 (is_called True) when dumped",
    ]
    assert compare_sequences(stats, {"public.quiet": (5, False), "public.new": (1, False)}) == [
        "sequence public.busy is missing",
        "unexpected sequence public.new",
        "sequence public.quiet: last_value 5 (is_called False), 5 (is_called True) when dumped",
    ]


def test_compare_names_each_difference() -> None:
    want = {"t": TableStats(rows=3, checksum="1"), "u": TableStats(rows=1, checksum="2")}
    got = {"t": TableStats(rows=3, checksum="9"), "v": TableStats(rows=0, checksum="0")}
    assert compare_stats(want, got) == [
        "table u is missing", "unexpected table v", "table t: same row count, different content",
    ]  # fmt: skip
    assert compare_stats(want, {**want, "u": TableStats(rows=0, checksum="0")}) == [
        "table u: 0 rows, 1 when dumped"
    ]
    assert compare_stats(want, dict(want)) == []
    lo = TableStats(rows=2, checksum="7")
    assert compare_large_objects(lo, TableStats(rows=1, checksum="7")) == [
        "large objects: 1, 2 when dumped"
    ]
    assert compare_large_objects(lo, TableStats(rows=2, checksum="8")) == [
        "large objects: same number (2), different content"
    ]


def test_older_snapshots_are_compared_on_what_they_recorded() -> None:
    dump = PostgresDump(
        database="appdb", owner="app", encoding="UTF8", collate="C", ctype="C",
        server_version="15.4", size_bytes=1, dump_file="postgres.dump",
        globals_file="postgres-globals.sql", tables={"public.t": TableStats(rows=1, checksum="5")},
    )  # fmt: skip
    assert dump.checksum_method == cs.TEXT_METHOD  # the method of snapshots before row-v2
    measured = Measured(
        tables={"public.t": TableStats(rows=1, checksum="5")},
        sequences={"public.s": (9, True)},
        large_objects=TableStats(rows=4, checksum="1"),
    )
    assert differences(dump, measured) == []  # no sequences / large objects recorded
    newer = dump.model_copy(
        update={"sequences": {}, "large_objects": TableStats(rows=0, checksum="0")}
    )
    assert differences(newer, measured) == [
        "unexpected sequence public.s", "large objects: 4, 0 when dumped",
    ]  # fmt: skip
