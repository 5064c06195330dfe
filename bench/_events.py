"""The bulk data of the benchmarks: one ``events`` table of ~225-byte rows (heap + primary
key) whose text compresses like real data. ``bench/snapshot_bench.py`` and
``bench/downtime.py`` seed the same shape, so their figures are about the same database."""

ROW_BYTES = 225
EVENTS_SQL = """
CREATE TABLE events (
    id bigint PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL,
    payload text NOT NULL, value double precision, blob bytea);
INSERT INTO events
SELECT i, timestamptz '2024-01-01' + i * interval '1 second', 'kind-' || (i % 17),
       md5(i::text) || ' ' || md5((i * 7)::text) || ' ' || repeat(chr(97 + i % 26), 40),
       i / 7.0, decode(md5((i * 13)::text), 'hex')
FROM generate_series(1, {rows}) i;
CREATE INDEX events_at ON events (at);
"""


def events_rows(gb: float) -> int:
    """Rows for about ``gb`` GB of table on disk."""
    return max(1, int(gb * 1e9 / ROW_BYTES))
