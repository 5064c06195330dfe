"""A PostgreSQL database with some of everything, and its state, for the snapshot tests.

The state is measured *independently* of the product: the schema as
``pg_dump --schema-only`` prints it, per-table ``md5(string_agg(row text
ORDER BY row text))`` (the product uses a different, order-free hash), and
every sequence's position.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from supervisor.engine.sibling import SIBLING_OF_LABEL
from tests.support.databases import PostgresHandle
from tests.support.dockercli import docker, exec_in

SEED_SQL = """
CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
CREATE TABLE customers (
    id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, name text,
    created timestamptz NOT NULL, balance numeric(12,2), tags text[], meta jsonb);
CREATE TABLE orders (
    id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id),
    invoice bigint NOT NULL DEFAULT nextval('invoice_no'), amount double precision,
    placed date, note text);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_placed ON orders (placed DESC, amount);
CREATE TABLE attachments (
    id serial PRIMARY KEY, order_id bigint REFERENCES orders(id), content bytea NOT NULL,
    digest text GENERATED ALWAYS AS (md5(content)) STORED);
CREATE VIEW big_spenders AS
    SELECT c.email, sum(o.amount) AS total FROM customers c
    JOIN orders o ON o.customer_id = c.id GROUP BY c.email HAVING sum(o.amount) > 1000;
CREATE SCHEMA audit;
CREATE TABLE audit.events (at timestamptz NOT NULL, what text);
CREATE TABLE schema_migrations (version text PRIMARY KEY);
INSERT INTO schema_migrations VALUES ('001'), ('002');
INSERT INTO customers (email, name, created, balance, tags, meta)
    SELECT 'c' || i || '@example.org', 'Customer ' || md5(i::text),
           timestamptz '2024-01-01 00:00:00+00' + i * interval '37 minutes',
           (i * 7.13)::numeric(12,2), ARRAY['t' || (i % 5), 'x'], jsonb_build_object('n', i)
    FROM generate_series(1, 20000) i;
INSERT INTO orders (customer_id, amount, placed, note)
    SELECT 1 + (i % 20000), i / 3.0, date '2024-01-01' + (i % 400), repeat(md5(i::text), 2)
    FROM generate_series(1, 69000) i;
INSERT INTO attachments (order_id, content)
    SELECT i, decode(md5(i::text) || '00ff00' || md5((i * 31)::text), 'hex')
    FROM generate_series(1, 10000) i;
INSERT INTO audit.events SELECT now(), 'event ' || i FROM generate_series(1, 1000) i;
ANALYZE;
"""

CHANGE_SQL = """
UPDATE customers SET balance = balance + 1 WHERE id % 10 = 0;
DELETE FROM attachments WHERE id > 9000;
INSERT INTO orders (customer_id, amount) SELECT 1, 5 FROM generate_series(1, 500);
ALTER TABLE customers ADD COLUMN loyalty int;
DROP VIEW big_spenders;
CREATE TABLE added_later (x int);
TRUNCATE audit.events;
"""

TABLES_SQL = (
    "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)
SEQUENCES_SQL = "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1"


@dataclass(frozen=True)
class PgState:
    schema: str
    tables: dict[str, str]  # table -> "count:md5"
    sequences: dict[str, str]  # sequence -> "last_value:is_called"


def seed(pg: PostgresHandle, database: str | None = None) -> None:
    exec_in(
        pg.container_id,
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", database or pg.database,
        stdin=SEED_SQL,
    )  # fmt: skip


def change(pg: PostgresHandle) -> None:
    exec_in(
        pg.container_id,
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", pg.database,
        stdin=CHANGE_SQL,
    )  # fmt: skip


def state(pg: PostgresHandle, database: str | None = None) -> PgState:
    database = database or pg.database
    text = exec_in(pg.container_id, "pg_dump", "--schema-only", "-U", pg.user, "-d", database)
    # \restrict / \unrestrict carry a random key per dump (PostgreSQL 15.14+).
    schema = "\n".join(
        line for line in text.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )
    tables: dict[str, str] = {}
    for table in pg.psql(TABLES_SQL, database).split():
        tables[table] = pg.psql(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' "  # noqa: S608
            f"ORDER BY t::text)), '') FROM {table} t",
            database,
        )
    sequences = {
        name: pg.psql(f"SELECT last_value || ':' || is_called FROM {name}", database)  # noqa: S608
        for name in pg.psql(SEQUENCES_SQL, database).split()
    }
    return PgState(schema, tables, sequences)


def databases(pg: PostgresHandle) -> list[str]:
    return pg.psql("SELECT datname FROM pg_database ORDER BY 1").split()


def container_leftovers(pg: PostgresHandle, settle: float = 15.0) -> str:
    """Our scratch directories and sessions left in the container, and sibling containers
    left beside it, in any state (should be none). A sibling stopped at the end of an
    operation is removed by the engine a moment later: it gets ``settle`` seconds."""
    dirs = exec_in(pg.container_id, "sh", "-c", "ls -d /tmp/supervisor-* 2>/dev/null || true")
    sessions = pg.psql(
        "SELECT string_agg(application_name, ',') FROM pg_stat_activity "
        "WHERE application_name LIKE 'supervisor-%'"
    )
    deadline = time.monotonic() + settle
    while (siblings := _siblings(pg)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return (dirs + sessions + siblings).strip()


def _siblings(pg: PostgresHandle) -> str:
    return docker(
        "ps", "-a", "--format", "{{.Names}} {{.Status}}", "--filter",
        f"label={SIBLING_OF_LABEL}={pg.container_id}",
    )  # fmt: skip


def server_generation(pg: PostgresHandle) -> str:
    """Changes when the server restarts, a crash restart included (the postmaster then
    starts a new checkpointer; ``pg_postmaster_start_time()`` stays the same)."""
    return pg.psql(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
        database="postgres",
    )
