"""The engine's own CLI, for test set-up and assertions.

Test helpers talk to the engine directly on its socket, never through the
docker-proxy: the proxy is what the *product* goes through, and what the tests
check it is allowed to do. (The CLI's non-interactive ``exec`` through nginx
also returns no output, see docs/test-environment.md.)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

ENGINE_SOCKET = "unix:///var/run/docker.sock"
# Every container, network and volume a test creates carries this label with
# the pid of the pytest process, so a crashed run's leftovers can be found.
OWNER_LABEL = "org.stacksup.test.pid"


def owner_labels() -> dict[str, str]:
    return {OWNER_LABEL: str(os.getpid())}


def docker(
    *args: str,
    check: bool = True,
    timeout: float = 300,
    stdin: str | None = None,
    config_dir: Path | None = None,
) -> str:
    """Run ``docker -H <socket> ARGS`` and return stdout (stderr in the error).

    ``config_dir`` gives the CLI its own ``--config`` (never the user's ~/.docker).
    """
    config = ["--config", str(config_dir)] if config_dir is not None else []
    proc = subprocess.run(
        ["docker", *config, "-H", ENGINE_SOCKET, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def container_logs(container: str) -> str:
    """Everything the container wrote, stdout and stderr (logging goes to stderr)."""
    proc = subprocess.run(
        ["docker", "-H", ENGINE_SOCKET, "logs", container],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def engine_available() -> bool:
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=10)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return False
    return True


def inspect(kind: str, name: str) -> dict[str, Any]:
    result: list[dict[str, Any]] = json.loads(docker(kind, "inspect", name))
    return result[0]


def wait_healthy(container: str, timeout: float = 90) -> None:
    """Wait until Docker reports the container ``healthy`` (or running without a check)."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = inspect("container", container)["State"]
        health = state.get("Health", {}).get("Status")
        if health == "healthy" or (health is None and state["Running"]):
            return
        if state["Status"] in ("exited", "dead"):
            break
        time.sleep(0.5)
    logs = docker("logs", "--tail", "30", container, check=False)
    raise AssertionError(f"{container} not healthy in {timeout}s: {state}\n{logs}")


def exec_in(container: str, *argv: str, stdin: str | None = None, timeout: float = 300) -> str:
    """``docker exec`` an argv in a running container and return its stdout."""
    return docker("exec", "-i", container, *argv, stdin=stdin, timeout=timeout)


def service_containers(project: str, service: str, all_states: bool = False) -> list[str]:
    """Container ids of a Compose service, found by labels (never by name)."""
    args = ["ps", "-q", "--no-trunc"] + (["-a"] if all_states else [])
    args += ["--filter", f"label=com.docker.compose.project={project}"]
    args += ["--filter", f"label=com.docker.compose.service={service}"]
    return docker(*args).split()


def pull_events_since(since: float, matching: str = "") -> list[str]:
    """References the engine pulled since ``since`` (a Unix time): proof of "no re-pull".

    The engine's events are engine-wide and tests run in parallel: ``matching`` (a digest
    or repository) keeps only this test's own images.
    """
    out = docker(
        "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
        "--filter", "type=image", "--filter", "event=pull", "--format", "{{.Actor.ID}}",
    )  # fmt: skip
    return [ref for ref in out.split() if matching in ref]


def remove_leftovers() -> list[str]:
    """Remove what earlier, crashed test runs left behind (their pid is gone)."""
    removed: list[str] = []
    for kind, remove in (
        ("container", ("rm", "-f", "-v")),
        ("network", ("network", "rm")),
        ("volume", ("volume", "rm", "-f")),
    ):
        ident_field = "{{.Name}}" if kind == "volume" else "{{.ID}}"
        fmt = ident_field + ' {{.Label "' + OWNER_LABEL + '"}}'
        if kind == "container":
            listing = docker("ps", "-a", "--filter", f"label={OWNER_LABEL}", "--format", fmt)
        else:
            listing = docker(kind, "ls", "--filter", f"label={OWNER_LABEL}", "--format", fmt)
        for line in listing.splitlines():
            ident, _, pid = line.partition(" ")
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            docker(*remove, ident, check=False)
            removed.append(f"{kind} {ident}")
    # The product's siblings of a database container that is gone (a test died mid-restore).
    fmt = '{{.ID}} {{.Label "supervisor.sibling.of"}}'
    listing = docker("ps", "-a", "--filter", "label=supervisor.sibling.of", "--format", fmt)
    for line in listing.splitlines():
        ident, _, of = line.partition(" ")
        if not docker("ps", "-aq", "--filter", f"id={of}").strip():
            docker("rm", "-f", ident, check=False)
            removed.append(f"container {ident}")
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
