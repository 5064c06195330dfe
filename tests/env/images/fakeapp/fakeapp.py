"""A small application with real Postgres migrations, at several versions.

Each version behaves in a way the supervisor's tests need:

* 1.0.0 baseline; 1.1.0 good (adds a column and backfills it);
* 1.2.0 migration fails half-way, leaving committed damage behind;
* 1.3.0 migrates fine but never becomes healthy;
* 1.4.0 is healthy at first and crashes after CRASH_AFTER seconds.

Commands: ``serve`` (HTTP on $PORT), ``migrate`` (one-shot), ``healthcheck``.
"""

import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("APP_VERSION", "0.0.0")

MIGRATIONS = {
    "001": [
        "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now())",
    ],
    "002": [
        "ALTER TABLE items ADD COLUMN category text",
        "UPDATE items SET category = 'general' WHERE category IS NULL",
        "ALTER TABLE items ALTER COLUMN category SET DEFAULT 'general'",
    ],
    # Runs statement by statement outside a transaction: the first two commit,
    # the third fails, and the database is left half-migrated.
    "003": [
        "CREATE TABLE item_tags (item_id bigint REFERENCES items(id), tag text)",
        "UPDATE items SET name = name || ' (migrated)'",
        "ALTER TABLE items ADD COLUMN price numeric NOT NULL DEFAULT (1 / 0)",
    ],
}
NON_TRANSACTIONAL = {"003"}

BEHAVIOUR = {
    "1.0.0": {"migrations": ["001"], "health": "ok"},
    "1.1.0": {"migrations": ["001", "002"], "health": "ok"},
    "1.2.0": {"migrations": ["001", "002", "003"], "health": "ok"},
    "1.3.0": {"migrations": ["001", "002"], "health": "never"},
    "1.4.0": {"migrations": ["001", "002"], "health": "crash"},
}.get(VERSION, {"migrations": ["001", "002"], "health": "ok"})


def connect():
    import psycopg2

    return psycopg2.connect(
        host=os.environ.get("POSTGRES_HOST", "postgres"),
        port=int(os.environ.get("POSTGRES_PORT", "5432")),
        user=os.environ.get("POSTGRES_USER", "postgres"),
        password=os.environ.get("POSTGRES_PASSWORD", ""),
        dbname=os.environ.get("POSTGRES_DB", "postgres"),
        connect_timeout=3,
    )


def applied_migrations(cur):
    cur.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur.execute("SELECT version FROM schema_migrations")
    return {row[0] for row in cur.fetchall()}


def migrate():
    conn = connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        done = applied_migrations(cur)
    for name in BEHAVIOUR["migrations"]:
        if name in done:
            print(f"migration {name}: already applied", flush=True)
            continue
        print(f"migration {name}: applying", flush=True)
        with conn.cursor() as cur:
            if name in NON_TRANSACTIONAL:
                for statement in MIGRATIONS[name]:
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (name,))
            else:
                cur.execute("BEGIN")
                for statement in MIGRATIONS[name]:
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (name,))
                cur.execute("COMMIT")
        print(f"migration {name}: done", flush=True)
    print(f"database at {BEHAVIOUR['migrations'][-1]} for version {VERSION}", flush=True)


def database_ready():
    """Healthy only when the database answers and holds this version's schema."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            done = applied_migrations(cur)
            conn.commit()
        missing = [m for m in BEHAVIOUR["migrations"] if m not in done]
        return not missing, missing
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/version":
            self._send(200, {"version": VERSION})
        elif self.path == "/health":
            if BEHAVIOUR["health"] == "never":
                self._send(503, {"status": "broken", "version": VERSION})
                return
            try:
                ready, missing = database_ready()
            except Exception as err:
                self._send(503, {"status": "database unavailable", "error": str(err)})
                return
            if ready:
                self._send(200, {"status": "ok", "version": VERSION})
            else:
                self._send(503, {"status": "schema behind", "missing": missing})
        elif self.path == "/":
            page = f"<html><body><h1>fake app {VERSION}</h1></body></html>"
            self._send(200, page.encode(), "text/html")
        else:
            self._send(404, {"error": "not found"})

    def log_message(self, format, *args):
        pass


def serve():
    if BEHAVIOUR["health"] == "crash":
        delay = float(os.environ.get("CRASH_AFTER", "6"))

        def crash():
            time.sleep(delay)
            print(f"version {VERSION}: crashing after {delay}s", flush=True)
            os._exit(3)

        threading.Thread(target=crash, daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler)
    print(f"fake app {VERSION} listening", flush=True)
    server.serve_forever()


def healthcheck():
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
    try:
        urllib.request.urlopen(url, timeout=2)
    except Exception as err:
        print(err)
        sys.exit(1)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    {"serve": serve, "migrate": migrate, "healthcheck": healthcheck}[command]()
