"""The SQL of the PostgreSQL checksums, as pure functions (the I/O is in :mod:`.pg_checksums`).

What is proven equal between the dumped and the restored database:

* every user table: ``count(*)`` and the **sum** of a 64-bit hash of each row;
* every sequence: ``last_value`` and ``is_called``;
* the large objects: their number and the sum of a hash of each 1 MiB chunk
  (object id, offset, ``md5`` of the bytes).

Why a sum: it does not depend on the order in which rows are read, so no row is
sorted (the old ``md5(string_agg(… ORDER BY …))`` sorted whole tables), and partial
sums over parts of a table (ranges of its pages, read by separate connections in
parallel) add up to the sum over the table. It keeps duplicate rows apart from
none: two equal rows add their hash twice (an ``xor`` would cancel them). It is
exact (``sum(bigint)`` is ``numeric``), so nothing wraps around.

The row hash (method ``row-v3``, PostgreSQL 14 and later) is
``hash_record_extended(ROW(…), 0)``: each column is hashed by its type's own hash
function, which is about three times cheaper than printing the row as text. Only
types whose hash tells apart exactly what their text form does are hashed as
values (integers, ``bool``, ``text``/``varchar``/``name`` with the "C" collation,
``bytea``, ``uuid``, dates and times); ``real`` and ``double precision`` are hashed
as their binary form (``float4send``/``float8send``: printing a float is a fifth of
the whole row hash's cost), with every NaN as the one NaN the text ``NaN`` reads back
as (``'inf' - 'inf'`` stores another bit pattern, and the dump carries only the
text); every other column is hashed as its text (``numeric`` 1.0 and 1.00 are equal
but print differently, case-insensitive collations hash alike). A float's binary
form tells apart exactly what its text does: the text is the shortest that reads
back to the same bits (``extra_float_digits`` 3), ``-0`` included.
Method ``row-v2`` (snapshots of before) hashed floats as their text; method
``text-v1`` (older servers, older snapshots) hashes ``ROW(r.*)::text`` with
``hashtextextended``. A snapshot is verified by the method it was taken with.
The output settings are fixed first (:data:`STABLE_OUTPUT`) so that a value's
text is the same at dump and at restore.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from supervisor.snapshots.models import ChecksumMethod

ROW_V3_METHOD: ChecksumMethod = "row-v3"
ROW_V2_METHOD: ChecksumMethod = "row-v2"  # floats as text; snapshots of before
ROW_METHOD = ROW_V3_METHOD  # what a new snapshot is taken with (PostgreSQL 14 and later)
# The methods that hash column values (and so can split a table into page ranges).
ROW_METHODS: frozenset[ChecksumMethod] = frozenset({ROW_V3_METHOD, ROW_V2_METHOD})
TEXT_METHOD: ChecksumMethod = "text-v1"
ROW_METHOD_MIN_VERSION = 140000  # hash_record_extended and TID range scans
LARGE_OBJECT_CHUNK = 1 << 20
# A table smaller than this (8 KiB pages) is never split: one scan is cheap enough.
MIN_CHUNK_BLOCKS = 4096

STABLE_OUTPUT = (
    "SET datestyle TO ISO, YMD; SET timezone TO 'UTC'; SET intervalstyle TO postgres; "
    "SET extra_float_digits TO 3; SET bytea_output TO hex"
)
# The sidecar's sessions use exactly the parallelism it chose (never the server's
# parallel workers on top): during a dump, pg_dump must keep its CPU. And no JIT: a
# checksum query's cost passes jit_above_cost, and compiling it cost more than it saved
# (half of the bench table, 1.1 million rows: 350 ms with JIT, 300 ms without; the whole
# table, where the optimized code pays for itself: 600 ms against 590).
SERIAL = "SET max_parallel_workers_per_gather TO 0; SET jit TO off"

# Type oids (fixed in pg_type.dat) whose hash equality is identity of the text form.
_VALUE_HASHED = {
    16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4",
    25: "text", 26: "oid", 1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp",
    1184: "timestamptz", 2950: "uuid",
}  # fmt: skip
# real, double precision: their binary form, with every NaN as the canonical one.
_BINARY_FLOAT = {700: ("float4send", "7fc00000"), 701: ("float8send", "7ff8000000000000")}
_USER_RELATION = (
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = '{kind}' AND n.nspname <> 'information_schema' "
    "AND n.nspname !~ '^pg_(catalog|toast|temp_)' "
    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
    "AND d.objid = c.oid AND d.deptype = 'e')"
)
# Tables of the snapshot, their size in pages and their columns: what the work is split by.
PLAN_SQL = (
    "SELECT 'plan=' || coalesce(json_agg(json_build_object("  # noqa: S608 (a constant)
    "'k', format('%I.%I', n.nspname, c.relname), 's', n.nspname, 'n', c.relname, "
    "'b', pg_relation_size(c.oid) / current_setting('block_size')::int, "
    "'c', (SELECT coalesce(json_agg(json_build_array(a.attname, a.atttypid::bigint) "
    "ORDER BY a.attnum), '[]') FROM pg_attribute a "
    "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)"
    ") ORDER BY n.nspname, c.relname), '[]') " + _USER_RELATION.format(kind="r")
)
_SEQUENCE_VALUE = (
    "format('SELECT last_value::text || '':'' || is_called::text AS v FROM %I.%I', "
    "n.nspname, c.relname)"
)
# Every sequence's ``last_value:is_called`` (``query_to_xml`` reads each one: no function
# needs to be created). A constant: no value is interpolated into it.
SEQUENCES_SQL = (
    "SELECT 'sequences=' || coalesce(json_object_agg(format('%I.%I', n.nspname, c.relname), "
    f"(xpath('/row/v/text()', query_to_xml({_SEQUENCE_VALUE}, false, true, '')))[1]::text "
    "ORDER BY n.nspname, c.relname), '{}') " + _USER_RELATION.format(kind="S")
)
# lo_open(…, INV_READ) reads as of the transaction's snapshot; lo_lseek64 to the end is
# the size, which needs no access to pg_largeobject (superusers only).
LARGE_OBJECTS_PART = (
    "SELECT 'l' AS kind, '' AS k, (count(*) FILTER (WHERE o.off = 0))::text AS a, "  # noqa: S608
    "coalesce(sum(hashtextextended(m.oid::text || ':' || o.off::text || ':' || "
    f"md5(lo_get(m.oid, o.off, {LARGE_OBJECT_CHUNK})), 0)), 0)::text AS b "
    "FROM pg_largeobject_metadata m, "
    "LATERAL (SELECT lo_lseek64(lo_open(m.oid, 262144), 0, 2) AS size) s, "
    f"LATERAL generate_series(0, greatest(s.size - 1, 0), {LARGE_OBJECT_CHUNK}) AS o(off)"
)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class TablePlan:
    """A table to checksum: its ``schema.table`` key, size in pages and columns."""

    key: str
    schema: str
    name: str
    blocks: int
    columns: tuple[tuple[str, int], ...]  # (name, type oid)


@dataclass(frozen=True)
class Piece:
    """Pages ``[first, last)`` of a table (``last`` None: to the end, whatever its size)."""

    table: TablePlan
    first: int
    last: int | None

    @property
    def weight(self) -> int:
        end = self.table.blocks if self.last is None else self.last
        return max(1, end - self.first)


def parse_plan(text: str) -> list[TablePlan]:
    raw: list[dict[str, Any]] = json.loads(text)
    return [
        TablePlan(
            key=item["k"],
            schema=item["s"],
            name=item["n"],
            blocks=int(item["b"]),
            columns=tuple((str(name), int(oid)) for name, oid in item["c"]),
        )
        for item in raw
    ]


def method_for(server_version_num: int) -> ChecksumMethod:
    return ROW_METHOD if server_version_num >= ROW_METHOD_MIN_VERSION else TEXT_METHOD


def row_hash(table: TablePlan, method: ChecksumMethod) -> str:
    """The 64-bit hash of one row ``r`` of ``table`` (see the module docstring)."""
    if method == TEXT_METHOD:
        return "hashtextextended(ROW(r.*)::text, 0)"
    if not table.columns:
        return "0::bigint"
    values = []
    for name, type_oid in table.columns:
        column = f"r.{quote_ident(name)}"
        if method == ROW_V3_METHOD and type_oid in _BINARY_FLOAT:
            send, nan = _BINARY_FLOAT[type_oid]
            values.append(
                f"CASE WHEN {column} = 'NaN' THEN decode('{nan}', 'hex') ELSE {send}({column}) END"
            )
        elif type_oid not in _VALUE_HASHED:
            values.append(f'{column}::text COLLATE "C"')
        elif _VALUE_HASHED[type_oid] in ("text", "varchar", "name"):
            values.append(f'{column} COLLATE "C"')
        else:
            values.append(column)
    return f"hash_record_extended(ROW({', '.join(values)}), 0)"


def split_work(tables: list[TablePlan], workers: int, splittable: bool) -> list[list[Piece]]:
    """At most ``workers`` lists of pieces of about equal size, one per connection.

    A table larger than a worker's share is cut into ranges of pages (``splittable``:
    the server has TID range scans); the pieces go largest first to the least loaded
    worker. The last range of a table is open-ended, so rows on pages added since the
    plan was read are not missed.
    """
    workers = max(1, workers)
    total = sum(max(1, t.blocks) for t in tables)
    share = max(MIN_CHUNK_BLOCKS, math.ceil(total / workers))
    pieces: list[Piece] = []
    for table in tables:
        count = math.ceil(table.blocks / share) if splittable else 1
        if count <= 1:
            pieces.append(Piece(table, 0, None))
            continue
        step = math.ceil(table.blocks / count)
        bounds = [i * step for i in range(count)]
        pieces += [Piece(table, b, b + step) for b in bounds[:-1]]
        pieces.append(Piece(table, bounds[-1], None))
    bins: list[list[Piece]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for piece in sorted(pieces, key=lambda p: (-p.weight, p.table.key, p.first)):
        target = loads.index(min(loads))
        bins[target].append(piece)
        loads[target] += piece.weight
    return [b for b in bins if b]


def piece_sql(piece: Piece, method: ChecksumMethod) -> str:
    """One row ``('t', key, count, sum)`` for ``piece``."""
    table = f"{quote_ident(piece.table.schema)}.{quote_ident(piece.table.name)}"
    where = []
    if piece.first > 0:
        where.append(f"r.ctid >= '({piece.first},0)'::tid")
    if piece.last is not None:
        where.append(f"r.ctid < '({piece.last},0)'::tid")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return (
        f"SELECT 't' AS kind, {quote_literal(piece.table.key)} AS k, count(*)::text AS a, "  # noqa: S608
        f"coalesce(sum({row_hash(piece.table, method)}), 0)::text AS b "
        f"FROM {table} AS r{condition}"
    )


# One ``psql -c`` argument may not exceed 128 KiB (Linux's MAX_ARG_STRLEN), and a whole
# argv about 2 MiB: a database with thousands of tables needs several statements, and
# several commands per connection's share.
MAX_STATEMENT_CHARS = 60_000
MAX_COMMAND_CHARS = 1_000_000


def _union(parts: list[str]) -> str:
    union = " UNION ALL ".join(f"({part})" for part in parts)
    return f"SELECT 'part=' || json_agg(json_build_array(x.kind, x.k, x.a, x.b)) FROM ({union}) x"  # noqa: S608


def job_commands(
    pieces: list[Piece], method: ChecksumMethod, large_objects: bool = False
) -> list[list[str]]:
    """One connection's share as commands (each a list of statements for one ``psql``):
    one command of one statement unless the share is too long for one argument."""
    parts = [piece_sql(piece, method) for piece in pieces]
    if large_objects:
        parts.append(LARGE_OBJECTS_PART)
    if not parts:
        raise ValueError("a checksum job needs at least one part")
    statements: list[list[str]] = [[]]
    for part in parts:
        if statements[-1] and sum(len(p) + 20 for p in statements[-1]) + len(part) > (
            MAX_STATEMENT_CHARS
        ):
            statements.append([])
        statements[-1].append(part)
    commands: list[list[str]] = [[]]
    for statement in (_union(group) for group in statements):
        if commands[-1] and sum(map(len, commands[-1])) + len(statement) > MAX_COMMAND_CHARS:
            commands.append([])
        commands[-1].append(statement)
    return commands


def part_lines(output: str) -> list[str]:
    """The JSON of every ``part=`` line of a job's output."""
    return [line[5:] for line in output.splitlines() if line.startswith("part=")]


def in_snapshot(snapshot: str, *commands: str) -> list[str]:
    """``commands`` in a read-only transaction that sees exactly the exported ``snapshot``."""
    return [
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        f"SET TRANSACTION SNAPSHOT {quote_literal(snapshot)}",
        *commands,
        "COMMIT",
    ]


@dataclass
class Totals:
    """Partial results added up: per table ``[rows, hash sum]``, and the large objects."""

    tables: dict[str, list[int]]
    large_objects: list[int] | None = None

    def add(self, text: str) -> None:
        for kind, key, count, total in json.loads(text):
            if kind == "t":
                entry = self.tables.setdefault(key, [0, 0])
            elif kind == "l":
                entry = self.large_objects = self.large_objects or [0, 0]
            else:
                raise ValueError(f"unexpected checksum row kind {kind!r}")
            entry[0] += int(count)
            entry[1] += int(total)


def parse_sequences(text: str) -> dict[str, tuple[int, bool]]:
    """``sequences=`` JSON (``{"public.s": "42:true"}``) → ``{"public.s": (42, True)}``."""
    raw: dict[str, str | None] = json.loads(text)
    found: dict[str, tuple[int, bool]] = {}
    for key, value in raw.items():
        if value is None:
            raise ValueError(f"sequence {key} could not be read")
        number, _, called = value.partition(":")
        found[key] = (int(number), called == "true")
    return found
