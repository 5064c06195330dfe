"""CLI output a person can read at 80 columns, against the real sidecar over fake adapters.

``plan`` shows tags with short digests (not references cut to ``127.0.0.1:500…``) and sizes
in human units; ``status`` says which undo failed for a ``needs_intervention`` run, so a
failed restart in ``stop`` never reads "Rollback failed".
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from supervisor.cli import run
from supervisor.exceptions import EngineError
from supervisor.update.stages import Stage
from tests.support.api_world import ADMIN, CURRENT, LATEST, ApiWorld, sidecar_env
from tests.support.fakes import digest_of

pytestmark = pytest.mark.unit


@pytest.fixture
async def cli_env(aiohttp_server: Any, world: ApiWorld, tmp_path: Path) -> dict[str, str]:
    server: TestServer = await aiohttp_server(world.app())
    token = tmp_path / "cli.token"
    token.write_text(ADMIN + "\n")
    env = sidecar_env(tmp_path)
    del env["SUPERVISOR_ADMIN_TOKEN_FILE"], env["SUPERVISOR_READ_TOKEN_FILE"]
    return env | {
        "SUPERVISOR_URL": str(server.make_url("")),
        "SUPERVISOR_TOKEN_FILE": str(token),
        "COLUMNS": "80",
    }


async def supervisor(env: dict[str, str], *argv: str) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = await run(list(argv), env=env, stdout=stdout, stderr=stderr, stdin=io.StringIO())
    return code, stdout.getvalue() + stderr.getvalue()


def short(version: str) -> str:
    return digest_of(version).removeprefix("sha256:")[:12]


async def test_plan_fits_80_columns_with_tags_and_short_digests(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out = await supervisor(cli_env, "plan")
    assert code == 0, out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    assert f"{CURRENT} @{short(CURRENT)}" in out
    assert f"{LATEST} @{short(LATEST)}" in out
    assert "…" not in out  # nothing cut
    assert "estimated backup: 1.0 MB" in out  # the fake's estimate, 1 000 000 bytes


async def test_status_after_a_failed_restart_in_stop_is_not_a_failed_rollback(
    cli_env: dict[str, str], world: ApiWorld
) -> None:
    world.engine.fail["stop"] = EngineError("engine refused to stop the container")
    world.engine.fail["wait_healthy"] = EngineError("the old backend does not come up")
    record = await world.start(LATEST)
    ended = await world.manager.wait(record.update_id)
    assert ended.state is Stage.NEEDS_INTERVENTION
    assert not any(t.stage is Stage.ROLLBACK for t in ended.stages)
    code, out = await supervisor(cli_env, "status", "--id", record.update_id)
    assert "needs_intervention" in out
    assert "Rollback failed" not in out
    assert "Restarting the stopped services failed" in out
    assert code == 0


async def test_status_after_a_failed_rollback_says_so(
    cli_env: dict[str, str], world: ApiWorld
) -> None:
    world.engine.unhealthy_versions.add(LATEST)
    world.engine.fail["restore_retained"] = EngineError("the old container is gone")
    record = await world.start(LATEST)
    ended = await world.manager.wait(record.update_id)
    assert ended.state is Stage.NEEDS_INTERVENTION
    code, out = await supervisor(cli_env, "status", "--id", record.update_id)
    assert "Rollback failed" in out
    assert code == 0
