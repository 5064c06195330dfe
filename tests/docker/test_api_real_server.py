"""No input gets a 500 from a real ``supervisor serve`` (real manager, real engine via the proxy).

One module-wide stack whose app images are tagged ``:latest`` (their version label says
``latest`` too, as an image built without a version does), so the running version is not a
version; one ``supervisor serve`` process in front of it. Every hostile input of issue 13 §3
is sent explicitly, then schemathesis fuzzes every operation of the *served* ``/openapi.json``
(positive and negative data) and walks the documented links start → status / stream / cancel
statefully. Schemathesis stays inside the schema's limits, which is why the explicit inputs
come first. Examples per operation are counted and printed (``-s`` shows them).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from supervisor.api.body import MAX_JSON_DEPTH
from supervisor.update.models import MAX_VERSION_LENGTH
from tests.support.compose import ComposeProject, compose_project
from tests.support.dockercli import docker
from tests.support.sidecar_process import TOKEN, Sidecar, free_port, sidecar_env, sidecar_process
from tests.support.testenv import StackTestEnv

READ_TOKEN = "read-token-for-the-hostile-tests-0123"
SNAPSHOT_ID = "20250120T123456Z_ab12cd34"  # the store's format; no such snapshot
EXAMPLES = 20  # per operation and generation mode; keeps the module well under two minutes
COUNTS: Counter[str] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()
SERVER_ERRORS: list[str] = []


@dataclass
class Served:
    url: str
    port: int
    sidecar: Sidecar
    project: ComposeProject
    workdir: Path


def request(
    port: int, method: str, path: str, body: bytes | None = None, token: str = TOKEN, **headers: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request; (status, JSON body, headers) whatever the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        all_headers = {"Authorization": f"Bearer {token}", **headers}
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        parsed = json.loads(raw) if raw else {}
        return response.status, parsed, dict(response.getheaders())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def latest_images(testenv: StackTestEnv) -> Iterator[dict[str, str]]:
    """``<repo>:latest`` (fakeapp 1.0.0 relabelled ``latest``) and ``<repo>:1.1.0``, pushed."""
    repo = f"{testenv.registry}/hostile{secrets.token_hex(3)}/fakeapp"
    dockerfile = (
        f"FROM {testenv.fakeapp['1.0.0'].pinned}\nLABEL org.opencontainers.image.version=latest\n"
    )
    docker("build", "-q", "-t", f"{repo}:latest", "-", stdin=dockerfile)
    docker("tag", testenv.fakeapp["1.1.0"].ref, f"{repo}:1.1.0")
    for tag in ("latest", "1.1.0"):
        docker("push", f"{repo}:{tag}")
    yield {"APP_IMAGE": f"{repo}:latest", "BACKEND_IMAGE": f"{repo}:latest"}
    for tag in ("latest", "1.1.0"):
        # the engine may be busy deleting elsewhere; a leftover tag is harmless
        with contextlib.suppress(subprocess.TimeoutExpired):
            docker("rmi", f"{repo}:{tag}", check=False, timeout=30)


@pytest.fixture(scope="module")
def served(
    testenv: StackTestEnv,
    latest_images: dict[str, str],
    docker_proxy_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("real-server")
    with compose_project(testenv, images=latest_images) as project:
        env = sidecar_env(project, docker_proxy_url, workdir)
        (workdir / "read_token").write_text(READ_TOKEN + "\n")
        env.update(
            SUPERVISOR_READ_TOKEN_FILE=str(workdir / "read_token"),
            SUPERVISOR_MAX_BODY_BYTES="262144",
            SUPERVISOR_RESTORE_OVER_HTTP="true",
            SUPERVISOR_REHEARSE="false",
            SUPERVISOR_HEALTH_TIMEOUT="20",
        )
        with sidecar_process(env, workdir / "sidecar.log") as sidecar:
            sidecar.start()
            yield Served(
                f"http://127.0.0.1:{sidecar.port}", sidecar.port, sidecar, project, workdir
            )


# --- the explicit inputs ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["9" * 5000, "-1", "1.5", "", "0", "1e3", "%D9%A3"])
def test_query_integers_of_any_shape(served: Served, value: str) -> None:
    status, body, _ = request(served.port, "GET", f"/admin/update/history?limit={value}")
    assert status == 400, body
    assert body["error_key"] == "bad_request"
    status, body, _ = request(
        served.port, "GET", "/admin/update/stream", **{"Last-Event-ID": value or "x"}
    )
    assert status in (400, 404), body  # 404 no_update when the id is fine but no run exists
    assert status != 404 or value == "0"


JSON_POSTS = (
    "/admin/update/start",
    "/admin/update/cancel",
    "/admin/update/check",
    "/admin/snapshots",
    f"/admin/snapshots/{SNAPSHOT_ID}/restore",
)
DEEP_BODIES = {
    "array": "[" * 3000 + "]" * 3000,
    "object": '{"a":' * 3000 + "1" + "}" * 3000,
    "limit+1": "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    "as-version": '{"target_version": ' + "[" * 3000 + "]" * 3000 + "}",
    "as-update-id": '{"update_id": ' + '{"a":' * 3000 + "1" + "}" * 3000 + "}",
    "unclosed": "[" * 5000,
}


@pytest.mark.parametrize("name", list(DEEP_BODIES))
def test_deeply_nested_json_on_every_json_endpoint(served: Served, name: str) -> None:
    for path in JSON_POSTS:
        status, body, _ = request(served.port, "POST", path, DEEP_BODIES[name].encode())
        assert status == 400, (path, body)
        assert body["error_key"] == "bad_request", (path, body)
        assert f"nested deeper than {MAX_JSON_DEPTH}" in body["message"]
    for path in ("/admin/update/plan", "/admin/version", "/admin/update/status"):  # bodies on GET
        status, body, _ = request(served.port, "GET", path, DEEP_BODIES[name].encode())
        assert status < 500, (path, body)


def test_overlong_target_version_on_start_and_plan(served: Served) -> None:
    for length in (MAX_VERSION_LENGTH + 1, 60_000):
        raw = json.dumps({"target_version": "1" * length}).encode()
        status, body, _ = request(served.port, "POST", "/admin/update/start", raw)
        assert (status, body["error_key"]) == (400, "invalid_version"), body
        assert f"longer than {MAX_VERSION_LENGTH}" in body["message"]
    path = f"/admin/update/plan?target_version={'1' * (MAX_VERSION_LENGTH + 1)}"
    status, body, _ = request(served.port, "GET", path)
    assert (status, body["error_key"]) == (400, "invalid_version")


def test_a_latest_tagged_stack_is_a_state_error_with_a_fix(served: Served) -> None:
    status, body, _ = request(
        served.port, "POST", "/admin/update/start", json.dumps({"target_version": "1.1.0"}).encode()
    )
    assert (status, body["error_key"]) == (409, "current_version_unknown"), body
    assert "'latest'" in body["message"]
    assert "org.opencontainers.image.version" in body["message"]
    status, plan, _ = request(served.port, "GET", "/admin/update/plan?target_version=1.1.0")
    assert status == 200, plan
    assert plan["current_version"] == "latest"
    assert plan["would_run"] is False
    assert "current_version_unknown" in [b["error_key"] for b in plan["blockers"]]
    status, checked, _ = request(served.port, "POST", "/admin/update/check", b"{}")
    assert status == 200, checked
    assert checked["version"] == "1.1.0"


def test_5xx_bodies_hide_engine_urls(tmp_path: Path, served: Served) -> None:
    """A second ``serve`` whose engine URL points nowhere: a 503 with the key, no URL."""
    dead = free_port()
    env = sidecar_env(served.project, f"tcp://127.0.0.1:{dead}", tmp_path)
    with sidecar_process(env, tmp_path / "dead.log") as sidecar:
        sidecar.start()
        status, body, headers = request(sidecar.port, "POST", "/admin/update/start", b"{}")
    assert status in (502, 503), body
    assert body["error_key"].startswith("engine_"), body
    assert str(dead) not in body["message"]
    assert "tcp://" not in body["message"]
    assert body["message"].endswith("see the supervisor log")
    assert "WWW-Authenticate" not in headers
    assert str(dead) in (tmp_path / "dead.log").read_text()  # the detail is in the log


# --- schemathesis against the real process --------------------------------------------------


def served_document(served: Served) -> dict[str, Any]:
    """The document the process serves, plus the links from a started run to its id's users."""
    status, document, _ = request(served.port, "GET", "/openapi.json")
    assert status == 200
    update_id = "$response.body#/update_id"
    start = document["paths"]["/admin/update/start"]["post"]["responses"]["202"]
    start["links"] = {
        "status": {
            "operationRef": "#/paths/~1admin~1update~1status/get",
            "parameters": {"update_id": update_id},
        },
        "stream": {
            "operationRef": "#/paths/~1admin~1update~1stream/get",
            "parameters": {"update_id": update_id},
        },
        "cancel": {
            "operationRef": "#/paths/~1admin~1update~1cancel/post",
            "requestBody": {"update_id": update_id},
        },
    }
    return document


def schema_for(served: Served, document: dict[str, Any] | None = None) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
            "request-timeout": 8,
            "max-stream-events": 3,
        }
    )
    return schemathesis.openapi.from_dict(document or served_document(served), config=config)


def check(case: Any, response: Any) -> None:
    label = f"{case.operation.method.upper()} {case.operation.path}"
    COUNTS[label] += 1
    STATUSES[(label, response.status_code)] += 1
    if response.status_code >= 500:
        SERVER_ERRORS.append(f"{label} -> {response.status_code}: {response.text[:300]}")
    # positive_data_acceptance is off: a schema-valid start is refused by state (409
    # current_version_unknown, update_running), which no schema can express.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def test_schemathesis_every_operation_against_the_real_server(served: Served) -> None:
    schema = schema_for(served)
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                check(case, case.call(base_url=served.url))

            try:
                fuzz()
            except Unsatisfiable:  # no way to break an operation without inputs (/healthz)
                assert mode is GenerationMode.NEGATIVE, operation.label
    print(f"\nschemathesis against the real server, {time.monotonic() - started:.0f} s:")
    for label, count in sorted(COUNTS.items()):
        print(f"  {count:4d}  {label}")
    assert SERVER_ERRORS == []
    assert len(COUNTS) == len(list(schema.get_all_operations()))


def settle(served: Served, timeout: float = 120) -> None:
    """No run active: cancel one that still can be, wait for any to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, record, _ = request(served.port, "GET", "/admin/update/status")
        if status == 404 or record.get("finished_at"):
            return
        body = json.dumps({"update_id": record["update_id"]}).encode()
        request(served.port, "POST", "/admin/update/cancel", body)
        time.sleep(1)
    raise AssertionError(f"a run is still active after {timeout:g} s")


def test_schemathesis_stateful_start_status_stream_cancel(served: Served) -> None:
    """The links from a started run: only a forced start to the release can start one on this
    stack (its version is unknown), so the start body is narrowed to that here; the stateless
    test above fuzzes the full body."""
    document = served_document(served)
    body = document["paths"]["/admin/update/start"]["post"]["requestBody"]["content"]
    body["application/json"]["schema"] = {  # inline: run records keep the full StartRequest
        "type": "object",
        "properties": {"force": {"const": True}, "target_version": {"enum": ["1.1.0"]}},
        "required": ["force"],
        "additionalProperties": False,
    }
    # Only the run's operations: a snapshot job in the same scenario holds the stack lock and
    # every start would be a 409 stack_busy (the stateless test covers the snapshot routes).
    document["paths"] = {
        path: item for path, item in document["paths"].items() if path.startswith("/admin/update/")
    }
    schema = schema_for(served, document=document)
    settle(served)  # a run the stateless fuzz started would answer every start 409
    before = COUNTS.copy()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Any, **kwargs: Any) -> Any:
            return case.call(base_url=served.url, **kwargs)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            check(case, response)

    Machine.run(
        settings=settings(
            max_examples=12,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    steps = COUNTS - before
    print("\nstateful steps per operation:", dict(sorted(steps.items())))
    print("answers (operation, status):", dict(sorted(STATUSES.items())))
    assert SERVER_ERRORS == []
    assert steps["POST /admin/update/start"] > 0
    linked = ("GET /admin/update/status", "GET /admin/update/stream", "POST /admin/update/cancel")
    assert any(steps[label] for label in linked), steps
