"""The shipped stack (compose/docker-compose.yml) as the tests bring it up.

Everything as an operator installs it (docs/runbook.md): a stack directory with
``.env`` made from ``compose/.env.example``, token files as Compose secrets,
``state/`` and ``backups/`` owned by the sidecar's uid, the sidecar *container*
(``stacksup/supervisor:test``) reaching the engine only through the docker-proxy
container. What differs from the demo (``scripts/demo``):

* a unique project name per test, random host ports (``127.0.0.1::8000``);
* a generated override file labels every container, network and volume with the
  owner label, so a crashed run's leftovers are removed at the next session start;
* the fake app's versions are published to a repository of the test's own and
  signed with a key of its own (``demo_signing``); both are removed afterwards.

The registry container joins the stack's default network as ``registry`` (the
sidecar dials ``http://registry:5000`` for ``127.0.0.1:5000/...``, as in the demo)
and is always disconnected again before the network is removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.databases import PostgresHandle
from tests.support.demo_policy import write_policy
from tests.support.demo_signing import delete_pushed, load_or_create_key, publish_signed
from tests.support.dockercli import (
    ENGINE_SOCKET,
    OWNER_LABEL,
    _pid_alive,
    docker,
    inspect,
    owner_labels,
    service_containers,
)
from tests.support.signer_registry import RegistryWriter
from tests.support.testenv import ROOT, StackTestEnv

COMPOSE_DIR = ROOT / "compose"
COMPOSE_SH = COMPOSE_DIR / "compose.sh"
STACK_FILES = (COMPOSE_DIR / "docker-compose.yml", COMPOSE_DIR / "docker-compose.demo.yml")
REGISTRY_CONTAINER = "stacksup-registry"
SIDECAR_UID = 10001
SERVICES = (
    "postgres",
    "influxdb",
    "migrations",
    "python_backend",
    "app",
    "docker-proxy",
    "supervisor",
)
LONG_RUNNING = tuple(s for s in SERVICES if s != "migrations")
NETWORKS = ("default", "supervisor_api", "docker_api")
VOLUMES = ("pgdata", "influxdata")
VERSIONS = ("1.0.0", "1.1.0", "1.3.0")


@dataclass
class DemoStack:
    project: str
    stack_dir: Path
    env: dict[str, str] = field(repr=False)
    images: dict[str, str] = field(default_factory=dict)  # version -> repository@digest

    # --- compose and containers ------------------------------------------------------
    def compose(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            [str(COMPOSE_SH), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compose.sh {' '.join(args)} failed: {proc.stderr[-3000:]}")
        return proc.stdout

    def containers(self, service: str, all_states: bool = False) -> list[str]:
        return service_containers(self.project, service, all_states)

    def container(self, service: str) -> str:
        ids = self.containers(service)
        assert len(ids) == 1, f"expected one running {service} container, got {ids}"
        return ids[0]

    def host_port(self, service: str, port: int) -> int:
        return int(docker("port", self.container(service), f"{port}/tcp").split(":")[-1])

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    # --- the published endpoints -----------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port('supervisor', 8080)}"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port('app', 8000)}"

    @property
    def admin_token_file(self) -> Path:
        return self.stack_dir / "secrets" / "supervisor_admin_token"

    @property
    def read_token_file(self) -> Path:
        return self.stack_dir / "secrets" / "supervisor_read_token"

    def cli(self, *args: str, timeout: float = 600) -> tuple[int, str, str]:
        """The operator CLI on the host against the published API: (exit code, out, err)."""
        proc = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "supervisor"), "--url", self.api_url,
             "--token-file", str(self.admin_token_file), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )  # fmt: skip
        return proc.returncode, proc.stdout, proc.stderr

    def postgres(self) -> PostgresHandle:
        return PostgresHandle(
            self.container("postgres"), "app", self.env["POSTGRES_PASSWORD"], "appdb", 0
        )

    def pins(self) -> dict[str, str]:
        pins: dict[str, str] = {}
        path = self.stack_dir / "state" / "versions.env"
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                pins[name] = value
        return pins


def http(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """(status, JSON or text) of one request; 4xx/5xx are answers, not exceptions."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, raw, kind = reply.status, reply.read(), reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in kind else raw.decode()


def wait_until_healthy(stack: DemoStack, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    pending: list[str] = []
    while time.monotonic() < deadline:
        pending = []
        for service in LONG_RUNNING:
            ids = stack.containers(service)
            state = inspect("container", ids[0])["State"] if ids else {}
            if (state.get("Health") or {}).get("Status") != "healthy":
                pending.append(
                    f"{service}: {(state.get('Health') or {}).get('Status', state.get('Status'))}"
                )
        if not pending:
            return
        time.sleep(1)
    logs = docker("logs", "--tail", "40", stack.container("supervisor"), check=False)
    raise AssertionError(f"not healthy after {timeout} s: {pending}\n{logs}")


def _set_env(text: str, values: dict[str, str]) -> str:
    """``.env.example`` with ``values`` put in place of the lines they name (all must exist)."""
    lines = text.splitlines()
    for name, value in values.items():
        hits = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        assert hits, f"{name} is not in compose/.env.example"
        lines[hits[0]] = f"{name}={value}"
    return "\n".join(lines) + "\n"


def _owner_override(path: Path) -> None:
    """A compose override labelling everything with the owner label (JSON is YAML).

    Compose 1.29 replaces a top-level network definition instead of merging it, so the
    internal ones are declared internal again (the test checks that they are).
    """
    labels = owner_labels()
    document = {
        "services": {name: {"labels": labels} for name in SERVICES},
        "networks": {
            name: {"labels": labels, **({"internal": True} if name != "default" else {})}
            for name in NETWORKS
        },
        "volumes": {name: {"labels": labels} for name in VOLUMES},
    }
    path.write_text(json.dumps(document, indent=2))


def release_crashed_networks() -> None:
    """Detach the registry from stack networks of crashed test runs, so that the session's
    leftover cleanup can remove those networks."""
    networks = inspect("container", REGISTRY_CONTAINER)["NetworkSettings"]["Networks"]
    for name in networks:
        if name == "bridge":
            continue
        labels = inspect("network", name).get("Labels") or {}
        pid = labels.get(OWNER_LABEL, "")
        if pid.isdigit() and not _pid_alive(int(pid)):
            docker("network", "disconnect", "-f", name, REGISTRY_CONTAINER, check=False)
            docker("network", "rm", name, check=False)


def write_stack_dir(
    stack_dir: Path, project: str, first_image: str, testenv: StackTestEnv
) -> dict[str, str]:
    """The stack directory as the runbook makes it; returns the values put into ``.env``."""
    for sub in ("secrets", "state", "backups", "keys"):
        (stack_dir / sub).mkdir(parents=True, exist_ok=True)
    for name in ("supervisor_admin_token", "supervisor_read_token"):
        token = stack_dir / "secrets" / name
        token.write_text(secrets.token_hex(32) + "\n")
        os.chown(token, SIDECAR_UID, -1)
        token.chmod(0o400)
    for sub in ("state", "backups"):
        os.chown(stack_dir / sub, SIDECAR_UID, -1)
        (stack_dir / sub).chmod(0o700)
    values = {
        "COMPOSE_PROJECT_NAME": project,
        "APP_PUBLISH": "127.0.0.1:",  # a free host port: 127.0.0.1::8000
        "APP_IMAGE": first_image,
        "PYTHON_BACKEND_IMAGE": first_image,
        "MIGRATIONS_IMAGE": first_image,
        "POSTGRES_IMAGE": testenv.postgres_image,
        "INFLUXDB_IMAGE": testenv.influxdb_image,
        "DOCKER_PROXY_IMAGE": testenv.docker_proxy_image,
        "SIDECAR_IMAGE": "stacksup/supervisor:test",
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "SUPERVISOR_REGISTRY_MIRRORS": f'\'{{"{testenv.registry}":"http://registry:5000"}}\'',
        "SUPERVISOR_STOP_TIMEOUT": "5",
        "SUPERVISOR_MIN_FREE_BYTES_MARGIN": "0",
        "SUPERVISOR_FIRST_CHECK_DELAY": "3600",
    }
    example = (COMPOSE_DIR / ".env.example").read_text()
    (stack_dir / ".env").write_text(_set_env(example, values))
    write_policy(stack_dir)
    return values


@contextmanager
def demo_stack(testenv: StackTestEnv, workdir: Path) -> Iterator[DemoStack]:
    """The shipped stack at 1.0.0, healthy, with signed releases; always torn down."""
    release_crashed_networks()
    project = "stsupdemo" + secrets.token_hex(4)
    repository = f"stacksup/e2e-{project}"
    key = load_or_create_key(workdir / "signing")
    writers: list[RegistryWriter] = []
    images = asyncio.run(publish_signed(testenv, repository, key, list(VERSIONS), writers))
    stack_dir = workdir / "stack"
    values = write_stack_dir(stack_dir, project, images["1.0.0"], testenv)
    (stack_dir / "keys" / "cosign.pub").write_bytes(
        (workdir / "signing" / "cosign.pub").read_bytes()
    )
    override = workdir / "owner-labels.yml"
    _owner_override(override)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DOCKER_HOST": ENGINE_SOCKET,
        "STACK_DIR": str(stack_dir),
        "COMPOSE_FILE": ":".join(str(p) for p in (*STACK_FILES, override)),
        "COMPOSE_PROJECT_NAME": project,
        "DEMO_API_PUBLISH": "127.0.0.1:",
        "POSTGRES_PASSWORD": values["POSTGRES_PASSWORD"],
    }
    stack = DemoStack(project, stack_dir, env, images)
    try:
        stack.compose("up", "-d")
        docker("network", "connect", "--alias", "registry", stack.network, REGISTRY_CONTAINER)
        wait_until_healthy(stack)
        yield stack
    finally:
        docker("network", "disconnect", "-f", stack.network, REGISTRY_CONTAINER, check=False)
        try:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")
        finally:
            # Containers the sidecar made or kept (``*.old-<run>``) are not Compose's to remove.
            for cid in docker(
                "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
            ).split():
                docker("rm", "-f", "-v", cid, check=False)
            for writer in writers:
                asyncio.run(delete_pushed(writer))
