"""The cross-process stack lock (``supervisor.oplock``), with real second processes.

Each "other process" is a real ``python -c`` child holding or trying the lock on the same
state directory, as ``supervisor restore`` in the container does next to ``supervisor serve``.
What is proved: exclusion in both directions, a refusal that names the holder, waiting, a
killed holder freeing the lock, two holders in one process excluding each other, release on
cancellation, and the real CLI ``restore`` refused (nothing dropped, nothing frozen) while
another process holds the lock, then proceeding once that process is killed.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.api import ApiOptions, create_app
from supervisor.cli import run
from supervisor.exceptions import StackBusy
from supervisor.oplock import HOLDER_FILE, StackLock
from tests.support.api_world import ADMIN, Adapters, auth, load_world_settings, sidecar_env

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, json, sys
from pathlib import Path
from supervisor.exceptions import StackBusy
from supervisor.oplock import StackLock

async def main(mode, state_dir, operation, extra):
    lock = StackLock(Path(state_dir))
    if mode == "hold":  # hold until a line arrives on stdin (or the process is killed)
        async with lock.hold(operation, owner="server", update_id=extra or None):
            print(json.dumps({"held": True}), flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        print(json.dumps({"released": True}), flush=True)
    else:  # try once, waiting up to `extra` seconds
        try:
            async with lock.hold(operation, owner="cli", wait=float(extra)):
                print(json.dumps({"ok": True, "holder": lock.holder()}), flush=True)
        except StackBusy as err:
            print(json.dumps({"ok": False, "status": err.status, **err.to_dict()}), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


class Child:
    """A second process on the same state directory."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), 20)
        assert raw, "the child process ended without answering"
        return json.loads(raw)  # type: ignore[no-any-return]

    async def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        assert await self.line() == {"released": True}
        assert await asyncio.wait_for(self.process.wait(), 20) == 0

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.process.wait(), 20) == -signal.SIGKILL


async def spawn(*args: str) -> Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, *args, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Child(process)


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.process.returncode is None:
            child.process.kill()
            await child.process.wait()


async def holding(children: list[Child], state: Path, operation: str, update_id: str = "") -> Child:
    child = await spawn("hold", str(state), operation, update_id)
    children.append(child)
    assert await child.line() == {"held": True}
    return child


async def test_another_process_excludes_and_the_refusal_names_it(
    tmp_path: Path, children: list[Child]
) -> None:
    lock = StackLock(tmp_path)
    assert lock.holder() is None
    child = await holding(children, tmp_path, "update", "1a2b3c4d5e6f")

    with pytest.raises(StackBusy) as refused:
        await lock.acquire("restore", owner="cli")
    err = refused.value
    assert (err.status, err.error_key) == (409, "stack_busy")
    assert (
        f"cannot restore now: the stack is locked by update 1a2b3c4d5e6f (server, pid {child.pid}"
        in err.message
    )
    assert err.to_dict()["holder"]["pid"] == child.pid
    assert err.details["update_id"] == "1a2b3c4d5e6f"  # the API envelope carries it
    holder = lock.holder()
    assert holder is not None
    assert (holder["operation"], holder["owner"], holder["update_id"]) == (
        "update",
        "server",
        "1a2b3c4d5e6f",
    )

    # the other direction: while this process holds it, the child is refused and told who
    await child.release()
    async with lock.hold("restore", owner="cli", update_id=None):
        trier = await spawn("try", str(tmp_path), "recover", "0")
        children.append(trier)
        answer = await trier.line()
        assert answer["ok"] is False
        assert answer["error_key"] == "stack_busy"
        assert answer["status"] == 409
        assert f"restore (cli, pid {os.getpid()}" in answer["message"]
    assert lock.holder() is None
    assert not (tmp_path / HOLDER_FILE).exists()


async def test_waiting_for_the_other_process(tmp_path: Path, children: list[Child]) -> None:
    lock = StackLock(tmp_path)
    child = await holding(children, tmp_path, "restore")
    started = time.monotonic()
    with pytest.raises(StackBusy):
        await lock.acquire("update", wait=0.3)
    assert time.monotonic() - started >= 0.3

    waiting = asyncio.create_task(lock.acquire("update", update_id="feedbeef0001", wait=20))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await child.release()
    lease = await asyncio.wait_for(waiting, 20)
    assert lease.held
    holder = lock.holder()
    assert holder is not None
    assert (holder["pid"], holder["update_id"]) == (os.getpid(), "feedbeef0001")
    lease.release()
    lease.release()  # idempotent
    assert lock.holder() is None


async def test_a_killed_holder_frees_the_lock(tmp_path: Path, children: list[Child]) -> None:
    lock = StackLock(tmp_path)
    child = await holding(children, tmp_path, "recover")
    assert lock.holder()["pid"] == child.pid  # type: ignore[index]
    await child.kill()
    assert (tmp_path / HOLDER_FILE).exists()  # left behind by the kill …
    assert lock.holder() is None  # … and ignored: the kernel released the flock
    async with lock.hold("restore", owner="cli"):
        assert lock.holder()["owner"] == "cli"  # type: ignore[index]


async def test_two_holders_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    lock = StackLock(tmp_path)
    async with lock.hold("update", update_id="abcdef012345"):
        with pytest.raises(StackBusy, match="update abcdef012345"):
            await lock.acquire("snapshot")  # the same instance …
        with pytest.raises(StackBusy):
            await StackLock(tmp_path).acquire("restore")  # … or another one
    async with StackLock(tmp_path).hold("restore"):
        pass


async def test_a_cancelled_task_releases_the_lock(tmp_path: Path) -> None:
    lock = StackLock(tmp_path)
    entered = asyncio.Event()

    async def long_operation() -> None:
        async with lock.hold("restore"):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(long_operation())
    await entered.wait()
    assert lock.holder() is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lock.holder() is None

    # cancelled while waiting: nothing was taken, the holder keeps it
    async with lock.hold("update"):
        waiter = asyncio.create_task(lock.acquire("restore", wait=30))
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert lock.holder()["operation"] == "update"  # type: ignore[index]
    assert lock.holder() is None


async def test_a_lease_is_released_in_finally_across_tasks(tmp_path: Path) -> None:
    """What the HTTP restore does: take the lock in the handler, release it in the job."""
    lock = StackLock(tmp_path)
    lease = await lock.acquire("restore")

    async def job() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            lease.release()

    task = asyncio.create_task(job())
    await asyncio.sleep(0)
    assert lock.holder() is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert lock.holder() is None


# --- the CLI ``restore`` in the container ----------------------------------------------


async def cli_restore(env: dict[str, str], adapters: Adapters, snapshot_id: str) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = await run(
        ["restore", snapshot_id, "--yes"], env=env, stdout=stdout, stderr=stderr,
        stdin=io.StringIO(""), open_runtime=adapters.open_runtime,
    )  # fmt: skip
    return code, stdout.getvalue() + stderr.getvalue()


async def test_cli_restore_is_refused_while_another_process_holds_the_lock(
    tmp_path: Path, children: list[Child]
) -> None:
    env = sidecar_env(tmp_path) | {
        "SUPERVISOR_URL": "http://127.0.0.1:9",  # no sidecar answers: only the lock decides
        "SUPERVISOR_TOKEN_FILE": str(tmp_path / "admin.token"),
    }
    assert (tmp_path / "admin.token").read_text().strip() == ADMIN
    state = tmp_path / "state"
    adapters = Adapters.fresh()
    snapshot_id = adapters.snapshots.add().id
    server = await holding(children, state, "recover", "0123456789ab")

    code, output = await cli_restore(env, adapters, snapshot_id)

    assert code == 3, output  # refused
    assert "stack_busy" in output
    assert f"recover 0123456789ab (server, pid {server.pid}" in " ".join(output.split())
    assert adapters.snapshots.restored == []  # nothing restored …
    assert adapters.snapshots.dropped == []  # … nothing dropped …
    assert not (state / "FREEZE").exists()  # … nothing frozen
    assert StackLock(state).holder()["pid"] == server.pid  # type: ignore[index]

    await server.kill()  # the server dies mid-recovery: the lock is free again
    code, output = await cli_restore(env, adapters, snapshot_id)
    assert code == 0, output
    assert adapters.snapshots.restored == [snapshot_id]
    assert StackLock(state).holder() is None


# --- the stack lock over HTTP ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/admin/snapshots/{id}/restore"), ("POST", "/admin/snapshots")],
)
async def test_http_restore_and_snapshot_refused_while_another_process_holds_the_lock(
    aiohttp_client: Any,
    tmp_path: Path,
    children: list[Child],
    method: str,
    path: str,
) -> None:
    settings = load_world_settings(tmp_path, restore_over_http="true")
    adapters = Adapters.fresh()
    snapshot_id = adapters.snapshots.add().id
    async with adapters.open_runtime(settings) as runtime:
        app = create_app(
            settings,
            runtime.manager,
            runtime.snapshots,
            options=ApiOptions(sse_keepalive=0.05),
            lifespans=[runtime.serving],
            stack_lock=runtime.stack_lock,
            damage=runtime.damage,
        )  # fmt: skip  (as `supervisor serve` builds it)
        client = await aiohttp_client(app)
        url = path.format(id=snapshot_id)
        cli = await holding(children, settings.state_dir, "restore")

        response = await client.request(method, url, json={}, headers=auth())
        assert response.status == 409, await response.text()
        body = await response.json()
        assert body["error_key"] == "stack_busy"
        assert f"restore (server, pid {cli.pid}" in body["message"]
        assert adapters.snapshots.restored == []
        assert adapters.snapshots.created == []

        await cli.kill()
        adapters.snapshots.gates["restore"] = adapters.snapshots.gates["create"] = asyncio.Event()
        response = await client.request(method, url, json={}, headers=auth())
        assert response.status == 202, await response.text()
        job = await response.json()
        holder = runtime.stack_lock.holder()
        assert holder is not None  # the job holds the lock from the 202 on …
        assert holder["operation"] == job["kind"]
        adapters.snapshots.gates.pop("restore").set()
        for _ in range(400):
            job = await (await client.get(f"/admin/jobs/{job['job_id']}", headers=auth())).json()
            if job["state"] != "running":
                break
            await asyncio.sleep(0.01)
        assert job["state"] == "completed", job
        assert runtime.stack_lock.holder() is None  # … until it ends
        await runtime.manager.shutdown()
