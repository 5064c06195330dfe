"""The CLI against a real in-process API server (aiohttp on port 0, fake services): parsing,
exit codes, ``--json`` output, confirmation, token files, local commands and ``serve``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from supervisor.cli import run, wiring
from supervisor.signatures.models import Policy, SignatureVerdict
from supervisor.update.stages import Stage
from tests.support.fake_update_service import (
    ADMIN,
    READ,
    FakeSnapshotService,
    FakeUpdateService,
    make_app,
    make_manifest,
)

pytestmark = pytest.mark.unit
Server = Callable[..., Any]


class Cli:
    """Runs ``supervisor …`` in-process with a given environment; keeps the output."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.out = self.err = ""

    async def __call__(self, *argv: str, stdin: str = "") -> int:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = await run(
            list(argv), env=self.env, stdout=stdout, stderr=stderr, stdin=io.StringIO(stdin)
        )
        self.out, self.err = stdout.getvalue(), stderr.getvalue()
        return code

    def json(self) -> Any:
        lines = self.out.strip().splitlines()
        assert len(lines) == 1, self.out  # exactly one JSON object
        return json.loads(lines[0])


def token_file(tmp_path: Path, token: str = ADMIN) -> str:
    path = tmp_path / f"token-{token[:4]}"
    path.write_text(token + "\n")
    return str(path)


def sidecar_env(tmp_path: Path) -> dict[str, str]:
    """The settings of the sidecar container (for serve and local commands)."""
    for name in ("state", "backups"):
        (tmp_path / name).mkdir(exist_ok=True)
    return {
        "SUPERVISOR_COMPOSE_PROJECT": "canopy",
        "SUPERVISOR_SERVICES": "app=app,python_backend=app",
        "SUPERVISOR_SIGNATURE_POLICY": "off",
        "SUPERVISOR_STATE_DIR": str(tmp_path / "state"),
        "SUPERVISOR_BACKUP_DIR": str(tmp_path / "backups"),
        "SUPERVISOR_ADMIN_TOKEN_FILE": token_file(tmp_path),
    }


@pytest.fixture
def fake() -> FakeUpdateService:
    return FakeUpdateService()


@pytest.fixture
def snapshots() -> FakeSnapshotService:
    return FakeSnapshotService([make_manifest("20250120T123456Z_ab12cd")])


@pytest.fixture
async def server(
    aiohttp_server: Server, fake: FakeUpdateService, snapshots: FakeSnapshotService
) -> TestServer:
    return await aiohttp_server(make_app(fake, snapshots))  # type: ignore[no-any-return]


@pytest.fixture
def cli(server: TestServer, tmp_path: Path) -> Cli:
    env = sidecar_env(tmp_path)
    env |= {"SUPERVISOR_URL": str(server.make_url("")), "SUPERVISOR_TOKEN_FILE": env.pop(
        "SUPERVISOR_ADMIN_TOKEN_FILE")}  # fmt: skip
    return Cli(env)


# --- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["update", "--help"], 0),
        ([], 2),
        (["upgrade"], 2),
        (["update", "--bogus"], 2),
        (["update", "--channel", "nightly"], 2),
        (["restore"], 2),
        (["history", "--limit", "many"], 2),
    ],
)
async def test_usage(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(argv, env={}) == code
    if argv == ["--help"]:
        text = capsys.readouterr().out
        assert "exit codes:" in text
        assert "rolled back" in text
        assert "SUPERVISOR_URL" in text


async def test_options_before_or_after_the_command(cli: Cli, fake: FakeUpdateService) -> None:
    assert await cli("--json", "check") == 0
    assert cli.json()["version"] == "1.4.2"
    assert await cli("check", "--json") == 0
    assert cli.json()["version"] == "1.4.2"
    assert fake.checks == 2


# --- update and its exit codes --------------------------------------------------------


async def test_update_json(cli: Cli, fake: FakeUpdateService) -> None:
    assert await cli("update", "1.4.2", "--yes", "--json") == 0
    result = cli.json()
    assert result["state"] == "completed"
    assert result["exit_code"] == 0
    assert result["target_version"] == "1.4.2"
    assert result["trigger"] == "cli"
    assert fake.starts[0][1] == "cli"


@pytest.mark.parametrize(
    ("outcome", "fail_at", "code"),
    [
        (Stage.COMPLETED, None, 0),
        (Stage.FAILED, Stage.PULL, 4),
        (Stage.ROLLED_BACK, Stage.HEALTHCHECK, 5),
        (Stage.NEEDS_INTERVENTION, Stage.HEALTHCHECK, 6),
    ],
)
async def test_update_exit_codes(
    cli: Cli, fake: FakeUpdateService, outcome: Stage, fail_at: Stage | None, code: int
) -> None:
    fake.outcome, fake.fail_at = outcome, fail_at
    assert await cli("update", "--yes", "--json") == code
    assert cli.json()["state"] == outcome
    assert cli.json()["exit_code"] == code


async def test_cancelled_update_exits_7(cli: Cli, fake: FakeUpdateService) -> None:
    fake.manual = True
    task = asyncio.create_task(cli("update", "--yes", "--json"))
    for _ in range(100):
        if fake.order:
            break
        await asyncio.sleep(0.01)
    await fake.cancel(fake.order[0])
    assert await asyncio.wait_for(task, 5) == 7
    assert cli.json()["state"] == "cancelled"


@pytest.mark.parametrize(
    ("argv", "key"),
    [(["update", "1.4.1"], "already_current"), (["update", "1.4.0"], "downgrade_refused"),
     (["update", "7.0.0"], "invalid_version")],
)  # fmt: skip
async def test_refused_update_exits_3(cli: Cli, argv: list[str], key: str) -> None:
    assert await cli(*argv, "--yes", "--json") == 3
    assert cli.json() == {"error_key": key, "message": cli.json()["message"], "exit_code": 3}
    assert key in cli.err


async def test_update_while_running_exits_3(cli: Cli, fake: FakeUpdateService) -> None:
    fake.manual = True
    assert await cli("update", "--yes", "--detach", "--json") == 0
    assert cli.json()["update_id"] == fake.order[0]
    assert await cli("update", "--yes") == 3
    assert "update_running" in cli.err
    fake.release()


async def test_update_shows_progress(cli: Cli) -> None:
    assert await cli("update", "--yes") == 0
    assert "completed" in cli.out
    assert "1.4.1 → 1.4.2" in cli.out
    assert "healthcheck: done" in cli.out  # log lines are printed as they come


@pytest.mark.parametrize(("answer", "code", "starts"), [("y\n", 0, 1), ("n\n", 3, 0), ("", 3, 0)])
async def test_update_asks_first(
    cli: Cli, fake: FakeUpdateService, answer: str, code: int, starts: int
) -> None:
    assert await cli("update", "--json", stdin=answer) == code
    assert "Update from 1.4.1 to 1.4.2?" in cli.err
    assert len(fake.starts) == starts


async def test_rollback_goes_back_to_the_previous_version(
    cli: Cli, fake: FakeUpdateService
) -> None:
    assert await cli("rollback", "--yes") == 3  # nothing to roll back yet
    assert await cli("update", "--yes", "--json") == 0
    assert await cli("rollback", "--yes", "--json") == 0
    assert cli.json()["target_version"] == "1.4.1"
    assert fake.current_version == "1.4.1"
    assert fake.starts[-1][0].force is True


# --- reading commands ---------------------------------------------------------------


async def test_status_history_plan_snapshots(cli: Cli) -> None:
    assert await cli("status", "--json") == 3
    assert cli.json()["error_key"] == "no_update"
    assert await cli("update", "--yes", "--json") == 0
    update_id = cli.json()["update_id"]
    assert await cli("status", "--json") == 0
    assert cli.json()["update_id"] == update_id
    assert cli.json()["result"] == "completed"
    assert await cli("status", "--id", update_id) == 0
    assert update_id in cli.out
    assert await cli("history", "--json") == 0
    assert [r["update_id"] for r in cli.json()["runs"]] == [update_id]
    assert await cli("history") == 0
    assert update_id in cli.out
    assert await cli("plan", "1.4.1", "--force", "--json") == 0
    assert cli.json()["target_version"] == "1.4.1"
    assert await cli("plan", "1.4.1") == 3  # already current without --force
    assert await cli("snapshots", "--json") == 0
    assert cli.json()["snapshots"][0]["id"] == "20250120T123456Z_ab12cd"
    assert await cli("snapshots") == 0
    assert "20250120T123456Z_ab12cd" in cli.out


async def test_snapshot_create(cli: Cli, snapshots: FakeSnapshotService) -> None:
    assert await cli("snapshots", "--create", "--poll-interval", "0.01", "--json") == 0
    job = cli.json()
    assert job["state"] == "completed"
    assert job["result"]["reason"] == "manual"
    assert len(snapshots.snapshots) == 2


# --- tokens and reachability ----------------------------------------------------------


async def test_token_sources(cli: Cli, tmp_path: Path) -> None:
    env = dict(cli.env)
    del env["SUPERVISOR_TOKEN_FILE"]
    cli.env = env
    assert await cli("check") == 3  # no token at all: 401
    assert "unauthorized" in cli.err
    cli.env = env | {"SUPERVISOR_READ_TOKEN_FILE": token_file(tmp_path, READ)}
    assert await cli("update", "--yes") == 3  # the read token may not update
    assert "forbidden" in cli.err
    assert await cli("--token-file", token_file(tmp_path, ADMIN), "check") == 0
    assert await cli("--token-file", str(tmp_path / "missing"), "check") == 2
    assert "cannot read the token file" in cli.err
    assert ADMIN not in cli.err + cli.out


async def test_unreachable_exits_8(cli: Cli) -> None:
    with socket_bound() as port:
        cli.env = cli.env | {"SUPERVISOR_URL": f"http://127.0.0.1:{port}"}
        assert await cli("status", "--json") == 8
    assert cli.json()["error_key"] == "sidecar_unreachable"


class socket_bound:
    """A port that is bound but never accepts: connections are refused."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *_: object) -> None:
        self.sock.close()


# --- local commands -----------------------------------------------------------------


async def test_freeze_and_unfreeze(cli: Cli, tmp_path: Path) -> None:
    freeze_file = tmp_path / "state" / "FREEZE"
    assert await cli("freeze", "--reason", "quarter close", "--json") == 0
    assert cli.json()["frozen"] is True
    assert "quarter close" in freeze_file.read_text()
    assert await cli("unfreeze") == 0
    assert not freeze_file.exists()
    assert await cli("unfreeze", "--json") == 0
    assert cli.json()["was_frozen"] is False


async def test_local_commands_refuse_bad_settings(cli: Cli) -> None:
    cli.env = cli.env | {"SUPERVISOR_COMPOSE_PROJEKT": "x"}
    assert await cli("freeze") == 2
    assert "did you mean SUPERVISOR_COMPOSE_PROJECT" in cli.err


@pytest.fixture
def local_services(
    monkeypatch: pytest.MonkeyPatch, fake: FakeUpdateService, snapshots: FakeSnapshotService
) -> wiring.Services:
    class Verifier:
        async def verify_image(self, image: str, policy: Policy) -> SignatureVerdict:
            signed = "signed" in image
            return SignatureVerdict(service="app", image=image, policy=policy,
                                    verified=signed, reason="ok" if signed else "no signature")  # fmt: skip

    services = wiring.Services(updates=fake, snapshots=snapshots, verifier=Verifier())
    monkeypatch.setattr(wiring, "build_services", lambda settings, serving=True: services)
    return services


async def test_local_restore(
    cli: Cli, local_services: wiring.Services, snapshots: FakeSnapshotService, tmp_path: Path
) -> None:
    frozen_during: list[bool] = []
    original = snapshots.restore

    async def restore(snapshot_id: str) -> None:
        frozen_during.append((tmp_path / "state" / "FREEZE").exists())
        await original(snapshot_id)

    snapshots.restore = restore  # type: ignore[method-assign]
    assert await cli("restore", "20250120T123456Z_ab12cd", stdin="no\n") == 3
    assert snapshots.restored == []
    assert await cli("restore", "20250120T123456Z_ab12cd", "--yes", "--json") == 0
    assert cli.json()["restored"] is True
    assert snapshots.restored == ["20250120T123456Z_ab12cd"]
    assert frozen_during == [True]
    assert not (tmp_path / "state" / "FREEZE").exists()


async def test_local_restore_refused_while_updating(
    cli: Cli, local_services: wiring.Services, fake: FakeUpdateService
) -> None:
    fake.manual = True
    assert await cli("update", "--yes", "--detach") == 0
    assert await cli("restore", "20250120T123456Z_ab12cd", "--yes") == 3
    assert "update_running" in cli.err
    fake.release()


async def test_remote_restore_is_disabled_by_default(cli: Cli) -> None:
    assert await cli("restore", "20250120T123456Z_ab12cd", "--remote", "--yes") == 3
    assert "restore_disabled" in cli.err
    assert "supervisor restore" in cli.err


async def test_verify(cli: Cli, local_services: wiring.Services) -> None:
    assert await cli("verify", "registry/app@sha256:signed", "--json") == 0
    assert cli.json()["verified"] is True
    assert await cli("verify", "registry/app:1.4.2") == 4
    assert "NOT verified" in cli.out


# --- serve ----------------------------------------------------------------------------


def free_port() -> int:
    with socket_bound() as port:
        return port


async def test_serve_until_sigterm(local_services: wiring.Services, tmp_path: Path) -> None:
    port = free_port()
    env = sidecar_env(tmp_path) | {"SUPERVISOR_LISTEN_HOST": "127.0.0.1",
                                   "SUPERVISOR_LISTEN_PORT": str(port),
                                   "SUPERVISOR_URL": "ignored", "SUPERVISOR_TOKEN_FILE": "x"}  # fmt: skip
    serving = asyncio.create_task(Cli(env)("serve"))
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientConnectionError:
                assert not serving.done(), serving.result()
                await asyncio.sleep(0.02)
        async with session.get(
            f"http://127.0.0.1:{port}/admin/version", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as response:
            assert response.status == 200
    # serve's loop handles SIGTERM now (never kill the test run with the default action)
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(serving, 10) == 0


async def test_serve_refuses_without_admin_token_or_directories(
    local_services: wiring.Services, tmp_path: Path
) -> None:
    env = sidecar_env(tmp_path)
    del env["SUPERVISOR_ADMIN_TOKEN_FILE"]
    cli = Cli(env)
    assert await cli("serve") == 2
    assert "SUPERVISOR_ADMIN_TOKEN" in cli.err
    cli.env = sidecar_env(tmp_path) | {"SUPERVISOR_STATE_DIR": str(tmp_path / "nowhere")}
    assert await cli("serve") == 2
    assert "SUPERVISOR_STATE_DIR" in cli.err
