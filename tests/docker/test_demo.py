"""The demo scenario against the shipped stack: the sidecar *container* behind the
docker-proxy *container*, driven only through its published API and the CLI.

1.0.0 with data → 1.1.0 completes (signatures enforced) → 1.3.0 never becomes
healthy and is rolled back with the database byte for byte as before. On the way:
the sidecar runs as non-root, its healthcheck is healthy, the proxy refuses what
it was not granted, the internal networks are internal, and no sidecar token is
visible where it should not be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.demo_stack import DemoStack, demo_stack, http
from tests.support.dockercli import container_logs, exec_in, inspect
from tests.support.pg_state import state
from tests.support.testenv import StackTestEnv

pytestmark = pytest.mark.timeout(900)
ROWS = 2000

# Run inside the sidecar container: what the proxy answers to each request.
PROXY_PROBE = """
import http.client, json
answers = {}
for method, path in [("GET", "/_ping"), ("GET", "/containers/json"), ("GET", "/v1.41/images/json"),
                     ("GET", "/volumes"), ("GET", "/v1.41/volumes"), ("POST", "/volumes/create"),
                     ("POST", "/build"), ("GET", "/secrets"), ("GET", "/swarm"), ("GET", "/info"),
                     ("GET", "/system/df"), ("POST", "/auth"), ("GET", "/plugins")]:
    conn = http.client.HTTPConnection("docker-proxy", 2375, timeout=10)
    conn.request(method, path, body=b"{}" if method == "POST" else None,
                 headers={"Content-Type": "application/json"})
    answers[f"{method} {path}"] = conn.getresponse().status
    conn.close()
print(json.dumps(answers))
"""

GRANTED = {"GET /_ping", "GET /containers/json", "GET /v1.41/images/json"}


@pytest.fixture
def stack(testenv: StackTestEnv, tmp_path: Path) -> Iterator[DemoStack]:
    with demo_stack(testenv, tmp_path) as running:
        yield running


def read_token(stack: DemoStack) -> str:
    return stack.read_token_file.read_text().strip()


def check_container_hardening(stack: DemoStack) -> None:
    sidecar = stack.container("supervisor")
    details = inspect("container", sidecar)
    assert details["Config"]["User"] == "10001"
    assert exec_in(sidecar, "id", "-u").strip() == "10001"
    assert details["State"]["Health"]["Status"] == "healthy"
    assert details["HostConfig"]["ReadonlyRootfs"] is True
    assert details["HostConfig"]["CapDrop"] == ["ALL"]
    assert not any(m["Source"] == "/var/run/docker.sock" for m in details["Mounts"])
    tokens = {stack.admin_token_file.read_text().strip(), read_token(stack)}
    environment = "\n".join(details["Config"]["Env"])
    assert not any(token in environment for token in tokens)


def check_proxy_rights(stack: DemoStack) -> None:
    answers = json.loads(exec_in(stack.container("supervisor"), "python3", "-c", PROXY_PROBE))
    for request, status in answers.items():
        expected = 200 if request in GRANTED else 403
        assert status == expected, (request, status, answers)


def check_networks(stack: DemoStack) -> None:
    for name in ("supervisor_api", "docker_api"):
        assert inspect("network", f"{stack.project}_{name}")["Internal"] is True, name
    proxy_networks = inspect("container", stack.container("docker-proxy"))["NetworkSettings"][
        "Networks"
    ]
    assert set(proxy_networks) == {f"{stack.project}_docker_api"}
    # The backend reaches the sidecar, but not the proxy.
    backend = stack.container("python_backend")
    resolve = "import socket, sys; socket.gethostbyname(sys.argv[1])"
    exec_in(backend, "python3", "-c", resolve, "supervisor")
    with pytest.raises(RuntimeError, match="gaierror|Name or service not known"):
        exec_in(backend, "python3", "-c", resolve, "docker-proxy")


def update(stack: DemoStack, version: str) -> tuple[int, dict[str, object]]:
    code, out, err = stack.cli("update", version, "--yes", "--json")
    assert out.strip(), err
    record: dict[str, object] = json.loads(out)
    return code, record


def test_demo_update_then_rollback_through_the_sidecar_container(stack: DemoStack) -> None:
    check_container_hardening(stack)
    check_proxy_rights(stack)
    check_networks(stack)

    pg = stack.postgres()
    pg.psql(f"INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g")  # noqa: S608
    token = read_token(stack)
    status, version = http("GET", f"{stack.api_url}/admin/version", token=token)
    assert status == 200
    assert version["current"]["app"]["tag"] == "1.0.0"
    # The read token reads; it cannot start anything. No token: 401.
    assert http("POST", f"{stack.api_url}/admin/update/start", {}, token=token)[0] == 403
    assert http("GET", f"{stack.api_url}/admin/version")[0] == 401

    code, out, err = stack.cli("check", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == "1.3.0"

    code, record = update(stack, "1.1.0")
    assert (code, record["result"]) == (0, "completed"), record.get("error")
    verdicts = record["verdicts"]
    assert isinstance(verdicts, list)
    assert verdicts
    assert all(v["verified"] and v["policy"] == "enforce" for v in verdicts)
    assert http("GET", f"{stack.app_url}/version")[1] == {"version": "1.1.0"}
    assert (
        pg.psql("SELECT count(*), count(*) FILTER (WHERE category = 'general') FROM items")
        == f"{ROWS}|{ROWS}"
    )
    assert stack.pins()["APP_IMAGE"] == stack.images["1.1.0"]
    assert stack.pins()["PYTHON_BACKEND_IMAGE"] == stack.images["1.1.0"]
    status, badge = http("GET", f"{stack.app_url}/badge.json")  # through app and backend
    assert (status, badge["state"], badge["color"]) == (200, "completed", "green")

    before = state(pg)
    code, record = update(stack, "1.3.0")
    assert (code, record["result"]) == (5, "rolled_back"), record.get("error")
    error = record["error"]
    assert isinstance(error, dict)
    assert error["stage"] == "healthcheck"
    assert record["pre_rollback_snapshot_id"]
    assert http("GET", f"{stack.app_url}/version")[1] == {"version": "1.1.0"}
    assert state(pg) == before  # schema, every row, every sequence
    assert stack.pins()["APP_IMAGE"] == stack.images["1.1.0"]
    status, badge = http("GET", f"{stack.app_url}/badge.json")
    assert (badge["state"], badge["color"], badge["version"]) == ("rolled_back", "orange", "1.3.0")

    code, out, _ = stack.cli("history", "--json")
    assert [run["result"] for run in json.loads(out)["runs"]] == ["rolled_back", "completed"]
    code, out, _ = stack.cli("snapshots", "--json")
    reasons = sorted(s["reason"] for s in json.loads(out)["snapshots"])
    assert reasons.count("pre-update") == 2
    assert "pre-rollback" in reasons
    for snapshot in Path(stack.stack_dir / "backups").iterdir():
        assert snapshot.stat().st_uid == 10001
    # Every run's deep check read the dump in place: the sidecar found where backups/ is
    # on the host from its own container's mount (SUPERVISOR_BACKUP_HOST_DIR=auto), and
    # the database container read it through the sibling (uid 10001, mode 0700 folder).
    logs = container_logs(stack.container("supervisor"))
    assert logs.count("postgres.dump is read in place") >= 2, logs[-3000:]
    assert "uploading it" not in logs
