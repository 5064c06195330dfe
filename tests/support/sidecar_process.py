"""``supervisor serve`` as a real process against a test stack, and its environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.compose import ComposeProject

TOKEN = "test-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Sidecar:
    """``supervisor serve`` as a real process."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supervisor", "serve"], env=self.env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 180  # recovery (a rollback) happens before serving
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                self.call("GET", "/healthz")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the sidecar did not come up: " + self.log.read_text()[-3000:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def _request(self, method: str, path: str, body: Any) -> urllib.request.Request:
        return urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON body of a successful answer; an HTTP error raises."""
        with urllib.request.urlopen(self._request(method, path, body), timeout=10) as response:
            return json.loads(response.read())

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The real status with the JSON body, error answers included."""
        try:
            with urllib.request.urlopen(self._request(method, path, body), timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def log_mark(self) -> int:
        """The log's size now: :meth:`log_has` with it sees only what comes later."""
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def log_has(self, text: str, since: int = 0) -> bool:
        """``text`` in the log after byte ``since`` (the log is kept across restarts)."""
        try:
            with self.log.open("rb") as log:
                log.seek(since)
                return text.encode() in log.read()
        except OSError:
            return False


@contextmanager
def sidecar_process(env: dict[str, str], log: Path) -> Iterator[Sidecar]:
    process = Sidecar(env, int(env["SUPERVISOR_LISTEN_PORT"]), log)
    try:
        yield process
    finally:
        process.stop()


def sidecar_env(project: ComposeProject, proxy_url: str, workdir: Path) -> dict[str, str]:
    for sub in ("state", "backups"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "admin_token").write_text(TOKEN + "\n")
    return {
        "PATH": os.environ["PATH"],
        "SUPERVISOR_ENGINE_URL": proxy_url,
        "SUPERVISOR_COMPOSE_PROJECT": project.name,
        "SUPERVISOR_SERVICES": "app=app,python_backend=app,migrations=migrations,postgres=postgres,influxdb=influxdb",
        "SUPERVISOR_START_ORDER": "python_backend,app",
        "SUPERVISOR_STATE_DIR": str(workdir / "state"),
        "SUPERVISOR_BACKUP_DIR": str(workdir / "backups"),
        "SUPERVISOR_ADMIN_TOKEN_FILE": str(workdir / "admin_token"),
        "SUPERVISOR_LISTEN_HOST": "127.0.0.1",
        "SUPERVISOR_LISTEN_PORT": str(free_port()),
        "SUPERVISOR_SIGNATURE_POLICY": "off",
        "SUPERVISOR_STOP_TIMEOUT": "3",
        "SUPERVISOR_HEALTH_TIMEOUT": "40",
        "SUPERVISOR_STABILITY_WINDOW": "3",
        "SUPERVISOR_MIN_FREE_BYTES_MARGIN": "0",
        "SUPERVISOR_FIRST_CHECK_DELAY": "3600",
        "SUPERVISOR_REHEARSE": "true",
    }
