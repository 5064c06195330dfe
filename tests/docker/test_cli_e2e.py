"""The operator CLI drives real updates through a running sidecar (``serve`` as a process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.compose import StackFactory
from tests.support.sidecar import app_version, stack_postgres
from tests.support.sidecar_process import sidecar_env, sidecar_process


def cli(env: dict[str, str], *args: str) -> tuple[int, Any]:
    """Run ``supervisor --json ARGS`` against the sidecar; (exit code, parsed JSON)."""
    url = f"http://127.0.0.1:{env['SUPERVISOR_LISTEN_PORT']}"
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "--url", url, "--token-file",
         env["SUPERVISOR_ADMIN_TOKEN_FILE"], "--json", *args],
        capture_output=True, text=True, timeout=600, check=False,
        env={"PATH": env["PATH"]},
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_cli_updates_then_reports_a_rollback_with_exit_codes(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        stack_postgres(project).psql(
            "INSERT INTO items (name) SELECT 'n' || g FROM generate_series(1, 300) g"
        )
        env = sidecar_env(project, docker_proxy_url, tmp_path)
        env["SUPERVISOR_REHEARSE"] = "false"
        env["SUPERVISOR_HEALTH_TIMEOUT"] = "20"
        with sidecar_process(env, tmp_path / "sidecar.log") as sidecar:
            sidecar.start()
            code, status = cli(env, "status")
            assert code == 3  # no update yet: the API's 404 no_update is a refusal
            assert status["error_key"] == "no_update"

            code, latest = cli(env, "check")
            assert code == 0
            assert latest["version"] == "1.4.0"
            assert latest["update_available"] is True

            code, plan = cli(env, "plan", "1.1.0")
            assert code == 0
            assert plan["would_run"] is True
            assert plan["services"]["app"]["changes"] is True

            code, result = cli(env, "update", "1.1.0", "--yes")
            assert code == 0, result
            assert result["state"] == "completed"
            assert app_version(project) == "1.1.0"

            code, refused = cli(env, "update", "1.1.0", "--yes")
            assert code == 3
            assert refused["error_key"] == "already_current"

            code, result = cli(env, "update", "1.3.0", "--yes")
            assert code == 5, result
            assert result["state"] == "rolled_back"
            assert app_version(project) == "1.1.0"
            assert stack_postgres(project).psql("SELECT count(*) FROM items") == "300"

            code, history = cli(env, "history")
            assert code == 0
            states = [
                run["state"] for run in (history["runs"] if isinstance(history, dict) else history)
            ]
            assert states == ["rolled_back", "completed"]

            code, snapshots = cli(env, "snapshots")
            assert code == 0
            listed = snapshots["snapshots"] if isinstance(snapshots, dict) else snapshots
            assert {s["reason"] for s in listed} >= {"pre-update", "pre-rollback"}
