"""A small application with real Postgres migrations, at several versions.

Each version behaves in a way the supervisor's tests need:

* 1.0.0 baseline; 1.1.0 good (adds a column and backfills it);
* 1.2.0 migration fails half-way, leaving committed damage behind;
* 1.3.0 migrates fine but never becomes healthy;
* 1.4.0 is healthy at first and crashes after CRASH_AFTER seconds.

Commands: ``serve`` (HTTP on $PORT), ``migrate`` (one-shot), ``healthcheck``. The
database is ``DATABASE_URL`` when set (it then wins over every ``POSTGRES_*``
variable, as in most frameworks: the rehearsal isolation test relies on that),
else ``POSTGRES_HOST`` / ``POSTGRES_DB`` / ….

It is also the reference integration of the update sidecar (docs/integration.md),
in one of two roles chosen by the environment, on top of the behaviour above:

* backend (``SUPERVISOR_URL`` set, ``SUPERVISOR_TOKEN_FILE`` naming the admin token
  file): forwards ``/admin/update/*`` and ``/admin/version`` to the sidecar unchanged
  (method, path, query, body, status, SSE streamed as it comes) with the token added
  server-side, and serves ``/`` with the update badge from the sidecar's
  ``/admin/badge.json`` (plus ``/badge.json`` and ``/badge.svg``);
* web front (``BACKEND_URL`` set): forwards everything but ``/health`` and
  ``/version`` to the backend, as a browser-facing app would.

``/items`` (GET: row count; POST: add a row) lets a demo write data through the app.
"""

import html
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("APP_VERSION", "0.0.0")
SIDECAR_URL = os.environ.get("SUPERVISOR_URL", "").rstrip("/")
SIDECAR_TOKEN_FILE = os.environ.get("SUPERVISOR_TOKEN_FILE", "")
BACKEND_URL = os.environ.get("BACKEND_URL", "").rstrip("/")
# Response headers worth passing back from the sidecar (hop-by-hop ones never are).
FORWARDED_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Location",
    "Allow",
    "Retry-After",
    "X-Accel-Buffering",
)
# The sidecar's badge colour names as CSS colours (the same as its badge.svg).
BADGE_COLOURS = {
    "green": "#4c1",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "grey": "#9f9f9f",
}

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

    url = os.environ.get("DATABASE_URL")
    if url:
        # Like most frameworks: one URL, when set, wins over every POSTGRES_* variable
        # (so an override of POSTGRES_DB alone does not move it to another database).
        return psycopg2.connect(url, connect_timeout=3)
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
        cur.execute("SELECT current_database(), to_regclass('public.items') IS NOT NULL")
        database, has_items = cur.fetchone()
        if has_items:
            cur.execute("SELECT count(*) FROM items")
            rows = cur.fetchone()[0]
        print(
            f"database {database} on {conn.info.host}: {rows if has_items else 'no'} items",
            flush=True,
        )
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


def sidecar_token():
    """The admin token, read per request so a rotated secret file is picked up."""
    with open(SIDECAR_TOKEN_FILE, encoding="utf-8") as handle:
        return handle.read().strip()


def upstream(base, method, path, body=None, headers=None, timeout=30):
    """One request to ``base`` (the sidecar or the backend); the open response."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    return conn.getresponse()


def fetch_badge():
    """The sidecar's badge.json, or a grey 'unavailable' one: the page never fails on it."""
    try:
        reply = upstream(
            SIDECAR_URL,
            "GET",
            "/admin/badge.json",
            headers={"Authorization": f"Bearer {sidecar_token()}"},
            timeout=5,
        )
        data = json.loads(reply.read())
        if reply.status == 200:
            return data
        detail = data.get("error_key", reply.status)
    except (OSError, ValueError) as err:
        detail = type(err).__name__
    return {
        "state": "unavailable",
        "message": f"sidecar unavailable ({detail})",
        "color": "grey",
        "version": None,
        "time": None,
        "label": "update",
    }


def e(value):
    """Escaped for HTML; a dash for a missing value."""
    return html.escape(str(value if value is not None else "-"))


def render_page(badge):
    colour = BADGE_COLOURS.get(badge.get("color"), BADGE_COLOURS["grey"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fake app {e(VERSION)}</title>
<style>
 body {{ font-family: "DejaVu Sans", Verdana, sans-serif; margin: 2em; color: #222; }}
 .badge {{ display: inline-flex; font-size: 18px; border-radius: 4px; overflow: hidden; }}
 .badge span {{ padding: 6px 12px; color: #fff; }}
 .badge-label {{ background: #555; }}
 dt {{ font-weight: bold; margin-top: .5em; }}
</style></head>
<body>
<h1>fake app {e(VERSION)}</h1>
<p>Update status from the supervisor sidecar (through this backend; the browser holds no
sidecar token):</p>
<div id="update-badge" class="badge" data-state="{e(badge.get("state"))}">
 <span class="badge-label">{e(badge.get("label") or "update")}</span><span
  class="badge-message" id="badge-message" style="background: {colour}">{e(badge.get("message"))}</span>
</div>
<dl>
 <dt>Running version</dt><dd id="running-version">{e(VERSION)}</dd>
 <dt>Last update</dt><dd id="last-state">{e(badge.get("state"))}</dd>
 <dt>Its target version</dt><dd id="last-version">{e(badge.get("version"))}</dd>
 <dt>Finished (UTC)</dt><dd id="last-time">{e(badge.get("time"))}</dd>
</dl>
<p><img id="badge-svg" src="/badge.svg" alt="update badge"></p>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _forward(self, base, path, token=None):
        """Pass the request to ``base`` unchanged and stream the answer back.

        The caller's Authorization header is never passed on: towards the sidecar the
        backend's own token is used. SSE (text/event-stream) is copied as it arrives.
        """
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {
            k: v
            for k in ("Content-Type", "Accept", "Last-Event-ID")
            if (v := self.headers.get(k)) is not None
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            reply = upstream(base, self.command, path, body, headers, timeout=60)
        except OSError as err:
            self._send(502, {"error_key": "upstream_unreachable", "message": str(err)})
            return
        self.send_response(reply.status)
        for name in FORWARDED_HEADERS:
            if (value := reply.getheader(name)) is not None:
                self.send_header(name, value)
        if (reply.getheader("Content-Type") or "").startswith("text/event-stream"):
            self.end_headers()  # HTTP/1.0: the end of the stream closes the connection
            while chunk := reply.read1(65536):
                self.wfile.write(chunk)
                self.wfile.flush()
            return
        data = reply.read()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _integration(self):
        """Routes of the reference integration; True when this request was one of them."""
        path = urllib.parse.urlsplit(self.path).path
        if BACKEND_URL and path not in ("/health", "/version"):
            self._forward(BACKEND_URL, self.path)
            return True
        if not SIDECAR_URL:
            return False
        if path == "/" and self.command == "GET":
            self._send(200, render_page(fetch_badge()).encode(), "text/html; charset=utf-8")
            return True
        forwarded = path.startswith("/admin/update/") or path == "/admin/version"
        badge = path in ("/badge.json", "/badge.svg") and self.command == "GET"
        if forwarded or badge:
            try:
                token = sidecar_token()
            except OSError as err:
                self._send(500, {"error_key": "token_unreadable", "message": str(err)})
                return True
            self._forward(SIDECAR_URL, self.path if forwarded else "/admin" + path, token)
            return True
        if path.startswith("/admin/"):
            self._send(404, {"error_key": "not_found", "message": "not forwarded"})
            return True
        return False

    def _items(self):
        conn = connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                if self.command == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    data = json.loads(self.rfile.read(length) or b"{}") if length else {}
                    cur.execute(
                        "INSERT INTO items (name) VALUES (%s)",
                        (str(data.get("name") or f"added by {VERSION}"),),
                    )
                cur.execute("SELECT count(*) FROM items")
                count = cur.fetchone()[0]
        finally:
            conn.close()
        self._send(201 if self.command == "POST" else 200, {"count": count, "version": VERSION})

    def do_POST(self):
        if self._integration():
            return
        if self.path == "/items":
            self._items()
        else:
            self._send(404, {"error": "not found"})

    def do_GET(self):
        if self._integration():
            return
        if self.path == "/items":
            self._items()
        elif self.path == "/version":
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
    server.daemon_threads = False  # server_close() waits for the requests in flight
    # PID 1 in its container: without a handler SIGTERM is ignored and every `docker stop`
    # waits out the whole stop timeout before SIGKILL. A real app stops when asked, and
    # finishes the requests it has accepted (a proxy retries only what was never accepted).
    signal.signal(
        signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()
    )
    print(f"fake app {VERSION} listening", flush=True)
    server.serve_forever()
    server.server_close()
    print(f"fake app {VERSION} stopped", flush=True)
    os._exit(0)


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
