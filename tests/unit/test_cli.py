"""The CLI against a real in-process API server (aiohttp on port 0) around the real manager over
fake adapters: parsing, exit codes, ``--json`` output, confirmation, token files, local commands
and ``serve`` (which open the same object graph, with the fakes plugged in through the CLI's
``open_runtime`` seam)."""

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

from supervisor.cli import run
from supervisor.cli.context import RuntimeFactory
from supervisor.exceptions import BackupFailed, EngineError
from supervisor.snapshots.models import SnapshotManifest
from supervisor.update.stages import Stage
from tests.support.api_world import ADMIN, CURRENT, LATEST, READ, ApiWorld, sidecar_env

pytestmark = pytest.mark.unit
Server = Callable[..., Any]


class Cli:
    """Runs ``supervisor …`` in-process with a given environment; keeps the output."""

    def __init__(self, env: dict[str, str], open_runtime: RuntimeFactory | None = None) -> None:
        self.env = env
        self.open_runtime = open_runtime
        self.out = self.err = ""

    async def __call__(self, *argv: str, stdin: str = "") -> int:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = await run(
            list(argv), env=self.env, stdout=stdout, stderr=stderr, stdin=io.StringIO(stdin),
            open_runtime=self.open_runtime,
        )  # fmt: skip
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


@pytest.fixture
def taken(world: ApiWorld) -> SnapshotManifest:
    return world.snapshots.add()


@pytest.fixture
async def server(aiohttp_server: Server, world: ApiWorld) -> TestServer:
    return await aiohttp_server(world.app())  # type: ignore[no-any-return]


@pytest.fixture
def cli(server: TestServer, world: ApiWorld, tmp_path: Path) -> Cli:
    """An operator's shell in the sidecar container: the sidecar's settings (same state and
    backups directories as the served world) plus the CLI's URL and token file."""
    env = sidecar_env(tmp_path)
    del env["SUPERVISOR_ADMIN_TOKEN_FILE"], env["SUPERVISOR_READ_TOKEN_FILE"]
    env |= {
        "SUPERVISOR_URL": str(server.make_url("")),
        "SUPERVISOR_TOKEN_FILE": token_file(tmp_path),
    }
    return Cli(env, world.adapters.open_runtime)


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


async def test_options_before_or_after_the_command(cli: Cli) -> None:
    assert await cli("--json", "check") == 0
    assert cli.json()["version"] == LATEST
    assert await cli("check", "--json") == 0
    assert cli.json()["version"] == LATEST


# --- update and its exit codes --------------------------------------------------------


async def test_update_json(cli: Cli, world: ApiWorld) -> None:
    assert await cli("update", LATEST, "--yes", "--json") == 0
    result = cli.json()
    assert result["state"] == "completed"
    assert result["exit_code"] == 0
    assert result["target_version"] == LATEST
    assert result["trigger"] == "cli"
    assert world.manager.status(result["update_id"]).trigger == "cli"
    assert world.engine.version_running("app") == LATEST


def completes(world: ApiWorld) -> None:
    return None


def fails_in_pull(world: ApiWorld) -> None:
    world.engine.fail["pull"] = EngineError("pull refused by the proxy")


def rolls_back(world: ApiWorld) -> None:
    world.engine.unhealthy_versions.add(LATEST)


def cannot_roll_back(world: ApiWorld) -> None:
    world.engine.unhealthy_versions.add(LATEST)
    world.snapshots.fail["restore"] = BackupFailed("restore exploded")


@pytest.mark.parametrize(
    ("arrange", "state", "code"),
    [
        (completes, Stage.COMPLETED, 0),
        (fails_in_pull, Stage.FAILED, 4),
        (rolls_back, Stage.ROLLED_BACK, 5),
        (cannot_roll_back, Stage.NEEDS_INTERVENTION, 6),
    ],
)
async def test_update_exit_codes(
    cli: Cli, world: ApiWorld, arrange: Callable[[ApiWorld], None], state: Stage, code: int
) -> None:
    arrange(world)
    assert await cli("update", "--yes", "--json") == code
    assert cli.json()["state"] == state
    assert cli.json()["exit_code"] == code


async def test_cancelled_update_exits_7(cli: Cli, world: ApiWorld) -> None:
    world.hold("pull")
    task = asyncio.create_task(cli("update", "--yes", "--json"))
    for _ in range(200):
        if world.manager.current_update_id is not None:
            break
        await asyncio.sleep(0.01)
    update_id = world.manager.current_update_id
    assert update_id is not None
    await world.manager.cancel(update_id)
    world.release("pull")
    assert await asyncio.wait_for(task, 5) == 7
    assert cli.json()["state"] == "cancelled"


@pytest.mark.parametrize(
    ("argv", "key"),
    [(["update", CURRENT], "already_current"), (["update", "1.4.0"], "downgrade_refused"),
     (["update", "7.0.0"], "invalid_version")],
)  # fmt: skip
async def test_refused_update_exits_3(cli: Cli, world: ApiWorld, argv: list[str], key: str) -> None:
    assert await cli(*argv, "--yes", "--json") == 3
    assert cli.json() == {"error_key": key, "message": cli.json()["message"], "exit_code": 3}
    assert key in cli.err
    assert world.manager.history() == []


async def test_update_while_running_exits_3(cli: Cli, world: ApiWorld) -> None:
    world.hold("pull")
    assert await cli("update", "--yes", "--detach", "--json") == 0
    assert cli.json()["update_id"] == world.manager.current_update_id
    assert await cli("update", "--yes") == 3
    assert "update_running" in cli.err


async def test_update_shows_progress(cli: Cli) -> None:
    assert await cli("update", "--yes") == 0
    assert "completed" in cli.out
    assert f"{CURRENT} → {LATEST}" in cli.out
    assert "healthy and stable" in cli.out  # the run's log lines are printed as they come


@pytest.mark.parametrize(("answer", "code", "runs"), [("y\n", 0, 1), ("n\n", 3, 0), ("", 3, 0)])
async def test_update_asks_first(
    cli: Cli, world: ApiWorld, answer: str, code: int, runs: int
) -> None:
    assert await cli("update", "--json", stdin=answer) == code
    assert f"Update from {CURRENT} to {LATEST}?" in cli.err
    assert len(world.manager.history()) == runs


async def test_rollback_goes_back_to_the_previous_version(cli: Cli, world: ApiWorld) -> None:
    assert await cli("rollback", "--yes") == 3  # nothing to roll back yet
    assert await cli("update", "--yes", "--json") == 0
    assert world.engine.version_running("app") == LATEST
    # The CLI returns at the result event; the run's task still releases the stack lock after
    # it, and a start in that window is refused 409 (reported to the lead, manager.start).
    await world.manager.wait(cli.json()["update_id"])
    assert await cli("rollback", "--yes", "--json") == 0
    assert cli.json()["target_version"] == CURRENT
    assert world.engine.version_running("app") == CURRENT
    assert world.manager.status().request.force is True


# --- reading commands ---------------------------------------------------------------


async def test_status_history_plan_snapshots(cli: Cli, taken: SnapshotManifest) -> None:
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
    assert await cli("plan", LATEST, "--force", "--json") == 0
    assert cli.json()["target_version"] == LATEST
    assert await cli("plan", LATEST, "--json") == 0  # a dry run: it reports the blocker
    assert cli.json()["would_run"] is False
    assert [b["error_key"] for b in cli.json()["blockers"]] == ["already_current"]
    assert await cli("snapshots", "--json") == 0
    listed = [s["id"] for s in cli.json()["snapshots"]]
    assert taken.id in listed
    assert len(listed) == 2  # and the run's pre-update snapshot
    assert await cli("snapshots") == 0
    assert taken.id in cli.out


async def test_snapshot_create(cli: Cli, world: ApiWorld) -> None:
    assert await cli("snapshots", "--create", "--poll-interval", "0.01", "--json") == 0
    job = cli.json()
    assert job["state"] == "completed"
    assert job["result"]["reason"] == "manual"
    assert [s.id for s in await world.snapshots.list()] == [job["result"]["id"]]


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


async def test_local_restore(cli: Cli, world: ApiWorld, taken: SnapshotManifest) -> None:
    freeze_file = world.settings.freeze_file
    assert await cli("restore", taken.id, stdin="no\n") == 3
    assert world.snapshots.restored == []
    world.snapshots.gates["restore"] = gate = asyncio.Event()
    restoring = asyncio.create_task(cli("restore", taken.id, "--yes", "--json"))
    for _ in range(200):  # frozen while it works: no automatic update can start under it
        if freeze_file.exists() or restoring.done():
            break
        await asyncio.sleep(0.01)
    assert freeze_file.exists()
    gate.set()
    assert await asyncio.wait_for(restoring, 5) == 0
    assert cli.json()["restored"] is True
    assert world.snapshots.restored == [taken.id]
    assert not freeze_file.exists()


async def test_local_restore_checks_the_id(cli: Cli, world: ApiWorld) -> None:
    assert await cli("restore", "20250120T123456Z_ab12cd", "--yes", "--json") == 3
    assert cli.json()["error_key"] == "invalid_snapshot_id"
    assert await cli("restore", "20990101T000000Z_ffffffff", "--yes", "--json") == 3
    assert cli.json()["error_key"] == "snapshot_not_found"
    assert world.snapshots.restored == []


async def test_local_restore_refused_while_updating(
    cli: Cli, world: ApiWorld, taken: SnapshotManifest
) -> None:
    world.hold("pull")
    assert await cli("update", "--yes", "--detach") == 0
    assert await cli("restore", taken.id, "--yes") == 3
    assert "stack_busy" in cli.err  # the run holds the stack lock (supervisor.oplock) …
    assert f"locked by update {world.manager.current_update_id}" in cli.err  # … and is named
    assert world.snapshots.restored == []


async def test_local_restore_refused_over_an_unrecovered_journal(
    cli: Cli, world: ApiWorld, taken: SnapshotManifest
) -> None:
    """A killed server left a run in ``migrate`` and is not up yet: nobody answers over
    HTTP and the lock is free, but the journal says a rollback is owed."""
    from supervisor.update.models import RunRecord
    from supervisor.update.stages import Stage

    world.runtime.state.write_current(RunRecord(update_id="0123456789ab", state=Stage.MIGRATE))
    assert await cli("restore", taken.id, "--yes") == 3
    assert "not recovered yet" in cli.err
    assert world.snapshots.restored == []


async def test_remote_restore_is_disabled_by_default(cli: Cli, taken: SnapshotManifest) -> None:
    assert await cli("restore", taken.id, "--remote", "--yes") == 3
    assert "restore_disabled" in cli.err
    assert "supervisor restore" in cli.err


async def test_verify(cli: Cli, world: ApiWorld) -> None:
    signed, unsigned = "reg.test/acme/app@sha256:" + "1" * 64, "reg.test/acme/app:1.4.2"
    world.adapters.signatures.unsigned.add(unsigned)
    assert await cli("verify", signed, "--json") == 0
    assert cli.json()["verified"] is True
    assert cli.json()["policy"] == "enforce"  # checked as under enforce, whatever the setting
    assert await cli("verify", unsigned) == 4
    assert "NOT verified" in cli.out


# --- serve ----------------------------------------------------------------------------


def free_port() -> int:
    with socket_bound() as port:
        return port


async def test_serve_until_sigterm(world: ApiWorld, tmp_path: Path) -> None:
    port = free_port()
    env = sidecar_env(tmp_path, listen_host="127.0.0.1", listen_port=str(port))
    env |= {"SUPERVISOR_URL": "ignored", "SUPERVISOR_TOKEN_FILE": "x"}
    serving = asyncio.create_task(Cli(env, world.adapters.open_runtime)("serve"))
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
            assert (await response.json())["current"]["app"]["tag"] == CURRENT
    # serve's loop handles SIGTERM now (never kill the test run with the default action)
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(serving, 10) == 0


async def test_serve_refuses_without_admin_token_or_directories(
    world: ApiWorld, tmp_path: Path
) -> None:
    env = sidecar_env(tmp_path)
    del env["SUPERVISOR_ADMIN_TOKEN_FILE"]
    cli = Cli(env, world.adapters.open_runtime)
    assert await cli("serve") == 2
    assert "SUPERVISOR_ADMIN_TOKEN" in cli.err
    cli.env = sidecar_env(tmp_path, state_dir=str(tmp_path / "nowhere"))
    assert await cli("serve") == 2
    assert "SUPERVISOR_STATE_DIR" in cli.err


async def test_policy_commands(cli: Cli, world: ApiWorld) -> None:
    """``supervisor policy`` shows the policy with sources; skip, snooze, clear, unfreeze."""
    assert await cli("policy") == 0
    assert "auto-apply: off" in cli.out
    assert "auto_apply" in cli.out
    assert "default" in cli.out
    assert await cli("policy", "skip", LATEST, "--note", "known bug", "--json") == 0
    assert cli.json()["mark"]["kind"] == "skipped"
    assert cli.json()["mark"]["by"] == "cli"
    assert await cli("policy", "snooze", LATEST, "--hours", "3") == 0
    assert f"{LATEST}: snoozed until" in cli.out
    assert await cli("policy", "clear", LATEST) == 0
    assert f"{LATEST}: mark cleared" in cli.out
    assert await cli("policy", "clear", LATEST, "--json") == 3
    assert cli.json()["error_key"] == "mark_not_found"
    assert await cli("policy", "unfreeze", "--json") == 3
    assert cli.json()["error_key"] == "not_frozen"
    assert await cli("policy", "snooze", LATEST) == 2  # --hours is required
    assert await cli("policy", "reload", "--json") == 0
    assert cli.json()["settings"]["auto_apply"] == {"value": "off", "source": "default"}
    # plan shows the policy under the plan, and a bad mark on the target
    state = await world.runtime.autopilot.state()
    from supervisor.policy.state import VersionMark

    state.marks[LATEST] = VersionMark(version=LATEST, kind="bad", at=state.first_seen.get(
        LATEST, world.runtime.autopilot.clock()), by="run x", update_id="x", result="rolled_back")  # fmt: skip
    assert await cli("plan", LATEST) == 0
    assert f"marked bad: {LATEST} ended rolled_back in run x" in cli.out
    assert "auto-apply: off" in cli.out
