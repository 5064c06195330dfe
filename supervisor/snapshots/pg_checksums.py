"""Measuring a PostgreSQL database's checksums on several connections at once, and comparing.

::

    plan (one session)      tables + sizes in pages + column types, sequences
       │
       ├─ job 1 ─ psql ─▶  pages [0, n) of the big table, small tables …
       ├─ job 2 ─ psql ─▶  pages [n, ∞) of the big table, large objects …   (≤ workers jobs)
       └─ added up: per table rows and hash sum (order-independent: parts add up)

At dump time every job joins the snapshot pg_dump uses (``SET TRANSACTION
SNAPSHOT``) and runs *while* pg_dump runs; after a restore the jobs read the
restored copy, one connection per worker, bounded by the cores of the database
container. The SQL is in :mod:`.checksum_sql`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.exceptions import CommandFailed, SnapshotError
from supervisor.snapshots import checksum_sql as cs
from supervisor.snapshots import pg_commands as sql
from supervisor.snapshots.models import (
    ChecksumMethod,
    PostgresDump,
    SequenceStats,
    TableStats,
)
from supervisor.snapshots.pg_commands import stderr_of
from supervisor.snapshots.workdir import ContainerWorkdir

if TYPE_CHECKING:  # postgres.py runs the dump-side checksums from here
    from supervisor.snapshots.postgres import PostgresSnapshots

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measured:
    """What a database holds, in the terms of the manifest."""

    tables: dict[str, TableStats]
    sequences: dict[str, tuple[int, bool]]
    large_objects: TableStats


async def run_jobs(
    pg: PostgresSnapshots,
    database: str,
    tables: list[cs.TablePlan],
    method: ChecksumMethod,
    workers: int,
    *,
    snapshot: str | None = None,
    work: ContainerWorkdir | None = None,
    error: type[SnapshotError],
) -> tuple[dict[str, TableStats], TableStats]:
    """Table and large-object checksums on up to ``workers`` connections at once.

    With ``snapshot`` every connection sees exactly that exported snapshot. With
    ``work`` the jobs are killed in the container if this call is cancelled.
    """
    bins = cs.split_work(tables, workers, splittable=method in cs.ROW_METHODS) or [[]]
    # The large objects go with the lightest share.
    light = min(range(len(bins)), key=lambda i: sum(p.weight for p in bins[i]))
    shares = [cs.job_commands(b, method, large_objects=i == light) for i, b in enumerate(bins)]
    outputs = await asyncio.gather(
        *(
            _run_share(pg, database, commands, f"sum{i}", snapshot, work, error)
            for i, commands in enumerate(shares)
        )
    )
    totals = cs.Totals(tables={})
    for commands, text in zip(shares, outputs, strict=True):
        parts = cs.part_lines(text)
        if len(parts) != sum(map(len, commands)):
            raise error(
                f"the checksum queries on {database!r} returned too little: {text[-200:]!r}"
            )
        for part in parts:
            totals.add(part)
    tables_found = {k: TableStats(rows=v[0], checksum=str(v[1])) for k, v in totals.tables.items()}
    count, total = totals.large_objects or [0, 0]
    return tables_found, TableStats(rows=count, checksum=str(total))


async def _run_share(
    pg: PostgresSnapshots,
    database: str,
    commands: list[list[str]],
    name: str,
    snapshot: str | None,
    work: ContainerWorkdir | None,
    error: type[SnapshotError],
) -> str:
    """One connection's share: its commands one after the other."""
    outputs = []
    for number, statements in enumerate(commands):
        label = name if number == 0 else f"{name}-{number}"
        outputs.append(await _run_one(pg, database, statements, label, snapshot, work, error))
    return "\n".join(outputs)


async def _run_one(
    pg: PostgresSnapshots,
    database: str,
    statements: list[str],
    name: str,
    snapshot: str | None,
    work: ContainerWorkdir | None,
    error: type[SnapshotError],
) -> str:
    commands = [cs.STABLE_OUTPUT, cs.SERIAL, *statements]
    if snapshot is not None:
        commands = cs.in_snapshot(snapshot, *commands)
    if work is None:
        return await pg.query(
            database, *commands, error=error, purpose="checksum", timeout=pg.timeout
        )
    out = bytearray()

    async def collect(chunk: bytes) -> None:
        out.extend(chunk)

    try:
        await work.run(
            name,
            sql.psql(pg.credentials.user, database, *commands),
            stdout=collect,
            env=pg.env(f"checksum-{name}"),
            timeout=pg.timeout,
        )
    except CommandFailed as err:
        raise error(f"the checksums of {database!r} failed: {stderr_of(err)}") from err
    return out.decode("utf-8", "replace")


async def measure(
    pg: PostgresSnapshots, database: str, method: ChecksumMethod, error: type[SnapshotError]
) -> Measured:
    """Everything :func:`differences` compares, of a database nobody writes to (a copy just
    restored), while ``pg_restore`` builds its indexes (``restore_jobs`` processes): on
    one connection per CPU of the container those leave free (at least one, at most
    ``restore_jobs``).

    Why not more: beside ``pg_restore``'s index builds, which keep every CPU busy, a
    second connection only takes CPU from them, and it costs more than it gives: a
    table split between connections is read as page ranges (TID range scans), which
    pass through the shared buffers without the ring a plain sequential scan reads
    through. Measured on two CPUs (0.5 GB table, post-data of two indexes, 0.93 s alone):
    1.30 s with two connections, 1.22 s with one.
    """
    planned, cpus = await asyncio.gather(
        pg.query(database, cs.PLAN_SQL, cs.SEQUENCES_SQL, error=error, purpose="plan"),
        pg.cpus(),
    )
    tagged = sql.tagged_lines(planned)
    tables = cs.parse_plan(tagged["plan"])
    workers = max(1, min(pg.restore_jobs, cpus - pg.restore_jobs))
    found, large_objects = await run_jobs(pg, database, tables, method, workers, error=error)
    return Measured(found, cs.parse_sequences(tagged["sequences"]), large_objects)


def sequence_stats(
    before: Mapping[str, tuple[int, bool]], after: Mapping[str, tuple[int, bool]]
) -> dict[str, SequenceStats]:
    """Positions read before and after pg_dump → what the manifest records (see
    :class:`SequenceStats`: a range when writers moved a sequence meanwhile)."""
    stats: dict[str, SequenceStats] = {}
    for key, (value, called) in before.items():
        moved = after.get(key, (value, called))
        stats[key] = SequenceStats(
            last_value=value,
            is_called=called,
            moved_to=None if moved == (value, called) else moved[0],
        )
    return stats


def compare_stats(
    expected: Mapping[str, TableStats], actual: Mapping[str, TableStats]
) -> list[str]:
    """Human-readable differences between the dumped and the restored tables."""
    problems = [f"table {t} is missing" for t in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected table {t}" for t in sorted(actual.keys() - expected.keys())]
    for table in sorted(expected.keys() & actual.keys()):
        want, got = expected[table], actual[table]
        if want.rows != got.rows:
            problems.append(f"table {table}: {got.rows} rows, {want.rows} when dumped")
        elif want.checksum != got.checksum:
            problems.append(f"table {table}: same row count, different content")
    return problems


def compare_sequences(
    expected: Mapping[str, SequenceStats], actual: Mapping[str, tuple[int, bool]]
) -> list[str]:
    problems = [f"sequence {s} is missing" for s in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected sequence {s}" for s in sorted(actual.keys() - expected.keys())]
    for name in sorted(expected.keys() & actual.keys()):
        want, (value, called) = expected[name], actual[name]
        if want.moved_to is None:
            if (value, called) != (want.last_value, want.is_called):
                problems.append(
                    f"sequence {name}: last_value {value} (is_called {called}), "
                    f"{want.last_value} (is_called {want.is_called}) when dumped"
                )
            continue
        low, high = sorted((want.last_value, want.moved_to))
        if not low <= value <= high:
            problems.append(
                f"sequence {name}: last_value {value}, between {low} and {high} when dumped"
            )
    return problems


def compare_large_objects(expected: TableStats, actual: TableStats) -> list[str]:
    if expected.rows != actual.rows:
        return [f"large objects: {actual.rows}, {expected.rows} when dumped"]
    if expected.checksum != actual.checksum:
        return [f"large objects: same number ({actual.rows}), different content"]
    return []


def differences(dump: PostgresDump, measured: Measured) -> list[str]:
    """Everything in which ``measured`` differs from what the manifest recorded (parts the
    manifest lacks, from older snapshots, are not compared)."""
    problems = compare_stats(dump.tables, measured.tables)
    if dump.sequences is not None:
        problems += compare_sequences(dump.sequences, measured.sequences)
    if dump.large_objects is not None:
        problems += compare_large_objects(dump.large_objects, measured.large_objects)
    return problems
