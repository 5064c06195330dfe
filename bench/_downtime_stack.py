"""The downtime benchmark's procedures on the shipped stack (tests/support/demo_stack.py).

Three ways through the same update, each leaving the poller's view to
:mod:`_downtime_probe`:

* :func:`manual_update`: baseline A, the runbook as a person does it *without* the
  sidecar, with the Compose CLI (``compose.sh``): stop app and backend, ``pg_dump -Fc``
  in the postgres container, the new image pinned in ``.env``, the migrations
  container with it, ``up -d`` of the app services;
* :func:`sidecar_update`: ours, ``POST /admin/update/start`` and the status followed
  to the end (the record's stage timings come with it);
* :func:`manual_failed_update` + :func:`manual_restore`: baseline B, a manual update to
  a release that never becomes healthy, with the old containers kept aside (renamed,
  stopped), then by hand: the new containers removed, ``pg_restore --clean`` of the
  dump, the old containers renamed back and started.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from _events import EVENTS_SQL, events_rows

from supervisor.const import RUN_LABEL
from supervisor.engine.docker_engine import DockerEngine
from tests.support.demo_stack import DemoStack, _set_env, http, wait_until_healthy
from tests.support.dockercli import ENGINE_SOCKET, docker, inspect
from tests.support.dockercli import exec_in as _exec_in
from tests.support.sidecar_process import free_port

LONG = 3600.0  # seconds any one command may take
APP_SERVICES = ("python_backend", "app")  # start order; stopped in reverse
# The bulk of the database (bench/_events.py), a table the release's migrations do not
# touch, as most of a real database is; plus the app's items, which 1.1.0 backfills.
ITEMS_SQL = "INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, {items}) g;\n"
SEED_SQL = EVENTS_SQL + ITEMS_SQL
# Not parallel: its workers need more shared memory than a container's 64 MB /dev/shm.
VACUUM = "VACUUM (ANALYZE, PARALLEL 0)"
# Written from inside the app container (it is on the stack's network; the host is not).
INFLUX_WRITER = """
import sys, urllib.request
n = int(sys.argv[1])
def post(path, body):
    req = urllib.request.Request("http://influxdb:8086" + path, data=body, method="POST")
    urllib.request.urlopen(req, timeout=120).read()
post("/query?q=CREATE+DATABASE+metrics", b"")
for start in range(0, n, 5000):
    post("/write?db=metrics", "\\n".join(
        f"cpu,host=h{i % 10},core=c{i % 4} value={i * 0.5},busy={i % 100}i "
        f"{1700000000000000000 + i * 1000000000}" for i in range(start, min(n, start + 5000))
    ).encode())
"""


def edit_env(stack: DemoStack, values: dict[str, str]) -> None:
    """What an operator does with an editor: change lines of the stack's ``.env``."""
    path = stack.stack_dir / ".env"
    path.write_text(_set_env(path.read_text(), values))


def publish_app_on_fixed_port(stack: DemoStack) -> str:
    """The test stack publishes on a random port, which a recreate would change; a user's
    stack publishes on a fixed one. Returns the app's ``/health`` URL."""
    port = free_port()
    edit_env(stack, {"APP_PUBLISH": f"127.0.0.1:{port}"})
    stack.compose("up", "-d", "--no-deps", "app")
    wait_until_healthy(stack)
    return f"http://127.0.0.1:{port}/health"


def exec_in(container: str, *argv: str, stdin: str | None = None) -> str:
    """``docker exec`` with room for a gigabyte restore."""
    return _exec_in(container, *argv, stdin=stdin, timeout=LONG)


def psql(stack: DemoStack, sql: str) -> str:
    pg = stack.postgres()
    return exec_in(
        pg.container_id, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
        "-U", pg.user, "-d", pg.database, stdin=sql,
    ).strip()  # fmt: skip


def seed(stack: DemoStack, gb: float, items: int, points: int) -> dict[str, Any]:
    rows = events_rows(gb)
    started = time.perf_counter()
    psql(stack, SEED_SQL.format(rows=rows, items=items))
    # Hint bits and statistics set now, as on a database that has been running a while
    # (otherwise the first full read, the first dump, pays for them).
    psql(stack, VACUUM)
    exec_in(stack.container("app"), "python3", "-", str(points), stdin=INFLUX_WRITER)
    size = int(psql(stack, "SELECT pg_database_size(current_database())"))
    return {
        "postgres_bytes": size,
        "events_rows": rows,
        "items_rows": items,
        "influx_points": points,
        "seed_s": round(time.perf_counter() - started, 1),
    }


def counts(stack: DemoStack) -> dict[str, int]:
    out = psql(stack, "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM events)")
    items, events = out.split("|")
    return {"items": int(items), "events": int(events)}


def app_version(stack: DemoStack) -> str:
    status, body = http("GET", f"{stack.app_url}/version")
    return str(body.get("version")) if status == 200 and isinstance(body, dict) else "?"


def app_container_ids(stack: DemoStack) -> dict[str, list[str]]:
    return {s: sorted(stack.containers(s, all_states=True)) for s in (*APP_SERVICES, "migrations")}


class Stopwatch:
    """Named steps, timed one after another."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def run(self, name: str, action: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = action(*args, **kwargs)
        self.steps[name] = round(time.perf_counter() - started, 3)
        return result


# --- baseline A: the manual runbook ------------------------------------------------------


def manual_update(stack: DemoStack, image: str, dump: str) -> dict[str, float]:
    """Stop, dump, pin in .env, migrate, up -d; returns the seconds of each step.

    ``up -d --no-deps``: the operator already ran the migrations, so Compose is not
    asked to run (and wait for) the one-shot again: the fastest honest way by hand.
    """
    watch = Stopwatch()
    watch.run("stop", stack.compose, "stop", *reversed(APP_SERVICES))
    pg = stack.postgres()
    watch.run("pg_dump", stack.compose, "exec", "-T", "postgres", "pg_dump", "-Fc",
              "-U", pg.user, "-d", pg.database, "-f", dump, timeout=LONG)  # fmt: skip
    watch.run("pin in .env", edit_env, stack, dict.fromkeys(IMAGE_VARS, image))
    watch.run("migrations", stack.compose, "run", "--rm", "-T", "migrations")
    watch.run("up -d", stack.compose, "up", "-d", "--no-deps", *APP_SERVICES)
    return watch.steps


IMAGE_VARS = ("APP_IMAGE", "PYTHON_BACKEND_IMAGE", "MIGRATIONS_IMAGE")


def manual_reset(stack: DemoStack, image: str, dump: str) -> None:
    """Back to the first release with its data (between baseline A and ours; not timed)."""
    stack.compose("stop", *reversed(APP_SERVICES))
    pg = stack.postgres()
    exec_in(pg.container_id, "pg_restore", "--clean", "--if-exists", "-U", pg.user,
            "-d", pg.database, dump)  # fmt: skip
    exec_in(pg.container_id, "rm", "-f", dump)
    psql(stack, VACUUM)
    edit_env(stack, dict.fromkeys(IMAGE_VARS, image))
    stack.compose("up", "-d")
    wait_until_healthy(stack)


# --- ours ------------------------------------------------------------------------------


def admin_token(stack: DemoStack) -> str:
    return stack.admin_token_file.read_text().strip()


def sidecar_update(stack: DemoStack, version: str, timeout: float = 3600) -> dict[str, Any]:
    """Start a run through the API and follow its status to the end; the final record."""
    token = admin_token(stack)
    status, body = http("POST", f"{stack.api_url}/admin/update/start",
                        {"target_version": version}, token)  # fmt: skip
    if status != 202:
        raise RuntimeError(f"start {version}: {status} {body}")
    update_id = body["update_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, record = http(
            "GET", f"{stack.api_url}/admin/update/status?update_id={update_id}", token=token
        )
        if status == 200 and record.get("result"):
            return dict(record)
        time.sleep(0.25)
    raise RuntimeError(f"run {update_id} did not end within {timeout} s")


def sidecar_log(stack: DemoStack, update_id: str, since: float) -> list[str]:
    """The sidecar's log lines of one run, with the engine's timestamps."""
    proc = subprocess.run(
        ["docker", "-H", ENGINE_SOCKET, "logs", "-t", "--since", f"{since - 1:.0f}",
         stack.container("supervisor")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if update_id in line and "aiohttp.access" not in line  # not our own status polls
    ]


# Log lines of a rollback that mark where its time goes, in the order they come.
ROLLBACK_MILESTONES = (
    ("health gate failed", "healthcheck failed"),
    ("pre-rollback dump taken", "pre-rollback dump .* keeps"),
    ("restore started", "restoring the database from snapshot|swapping the rollback copy"),
    ("PostgreSQL restored and swapped in", "the replaced database is kept as|database back as"),
    ("InfluxDB restored", "done: restored snapshot"),
    ("old containers started", "put back the old app container"),
    ("old version judged healthy", "previous version healthy"),
    ("replaced database dumped (rollback copy)", "keeps what the new version wrote to the"),
)


def milestones(lines: list[str], origin: float) -> dict[str, float]:
    """Seconds from ``origin`` to the first log line of each milestone (engine timestamps)."""
    found: dict[str, float] = {}
    for line in lines:
        stamp, _, message = line.partition(" ")
        for label, pattern in ROLLBACK_MILESTONES:
            if label not in found and re.search(pattern, message):
                at = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
                found[label] = round(at - origin, 3)
    return found


# --- baseline B: a manual update that never becomes healthy, and the restore by hand ----


@dataclass
class KeptContainers:
    """Per app service: the new container and the old one kept aside (stopped, renamed)."""

    new: dict[str, str]  # service -> new container id
    old: dict[str, str]  # service -> old container id
    names: dict[str, str]  # service -> the name both had


def manual_failed_update(
    stack: DemoStack, image: str, dump: str, run_label: str, stop_timeout: float = 5
) -> KeptContainers:
    """Stop, dump, migrate with the new image, then new containers next to the kept old
    ones (an operator keeping them for a fast way back: ``docker rename``, then a
    container with the same configuration; done with the product's engine adapter
    because ``docker create`` cannot copy a container's configuration by itself)."""
    stack.compose("stop", *reversed(APP_SERVICES))
    pg = stack.postgres()
    exec_in(pg.container_id, "pg_dump", "-Fc", "-U", pg.user, "-d", pg.database, "-f", dump)
    docker("run", "--rm", "--network", stack.network, "-e", "POSTGRES_HOST=postgres",
           "-e", f"POSTGRES_USER={pg.user}", "-e", f"POSTGRES_PASSWORD={pg.password}",
           "-e", f"POSTGRES_DB={pg.database}", image, "migrate")  # fmt: skip
    old = {s: _one(stack, s) for s in APP_SERVICES}
    names = {s: inspect("container", cid)["Name"].lstrip("/") for s, cid in old.items()}

    async def recreate_all() -> dict[str, str]:
        new: dict[str, str] = {}
        async with DockerEngine(ENGINE_SOCKET) as engine:
            for service in APP_SERVICES:
                kept = await engine.recreate(old[service], image, run_label, stop_timeout)
                new[service] = kept.new_id
        return new

    return KeptContainers(asyncio.run(recreate_all()), old, names)


def _one(stack: DemoStack, service: str) -> str:
    ids = stack.containers(service, all_states=True)
    assert len(ids) == 1, f"expected one {service} container, got {ids}"
    return ids[0]


def manual_restore(stack: DemoStack, kept: KeptContainers, dump: str) -> dict[str, float]:
    """What a person types to get the old version back; the seconds of each step."""
    watch = Stopwatch()
    pg = stack.postgres()
    watch.run("remove new containers", docker, "rm", "-f",
              *(kept.new[s] for s in reversed(APP_SERVICES)))  # fmt: skip
    watch.run("pg_restore --clean", exec_in, pg.container_id, "pg_restore", "--clean",
              "--if-exists", "-U", pg.user, "-d", pg.database, dump)  # fmt: skip

    def put_back() -> None:
        for service in APP_SERVICES:
            docker("rename", kept.old[service], kept.names[service])
        docker("start", *(kept.old[s] for s in APP_SERVICES))

    watch.run("rename + start old (the command)", put_back)
    return watch.steps


def after_manual_restore(stack: DemoStack, kept: KeptContainers, dump: str) -> None:
    """Tidy up after baseline B (not timed): restart policy back, the dump removed."""
    for service in APP_SERVICES:
        docker("update", "--restart", "unless-stopped", kept.old[service], check=False)
    exec_in(stack.postgres().container_id, "rm", "-f", dump)


def is_run_container(run_label: str) -> Any:
    """An engine-event filter: an app container created by the run labelled ``run_label``."""

    def keep(event: Any) -> bool:
        attrs = event.attributes
        return bool(
            attrs.get(RUN_LABEL) == run_label
            and attrs.get("com.docker.compose.service") in APP_SERVICES
        )

    return keep
