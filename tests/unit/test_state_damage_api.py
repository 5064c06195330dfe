"""The served sidecar with damaged state on disk (issue 12 item 7), and the stack lock over HTTP.

The real object graph (:func:`supervisor.services.build_runtime`: the real manager, views,
state store and snapshot service over the real backups folder) around fakes of the engine,
registry, signatures and prober, and the production app wired as ``supervisor serve`` wires
it. On disk before start-up: a torn history line, a truncated journal, an undecodable
last-good record and an undecodable snapshot manifest. Every endpoint answers 200, the
damage is counted in ``/metrics``, and recovery with a torn history still finishes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from supervisor.api import ApiOptions, create_app
from supervisor.cli import run
from supervisor.config import Settings
from supervisor.services import Runtime, build_runtime
from supervisor.signatures.models import Policy
from supervisor.snapshots import SnapshotManifest, SnapshotReason, SnapshotStore
from supervisor.update.models import RunRecord, StartRequest
from supervisor.update.stages import Stage
from tests.support.api_world import (
    CURRENT,
    PROJECT,
    VERSIONS,
    Adapters,
    auth,
    load_world_settings,
    sidecar_env,
)
from tests.support.fakes import FakeEngine, FakeProber, FakeRegistry, FakeSignatures

pytestmark = pytest.mark.unit
TORN = b'{"update_id": "0badc0ffee00", "state": "comp'


def served_app(runtime: Runtime) -> web.Application:
    """The app exactly as ``supervisor serve`` builds it around a runtime."""
    return create_app(
        runtime.settings,
        runtime.manager,
        runtime.snapshots,
        options=ApiOptions(sse_keepalive=0.05),
        lifespans=[runtime.serving],
        stack_lock=runtime.stack_lock,
        damage=runtime.damage,
    )


async def committed_snapshot(store: SnapshotStore, hour: int) -> SnapshotManifest:
    at = datetime(2026, 1, 1, hour, tzinfo=UTC)
    snapshot_id = f"20260101T{hour:02d}0000Z_{hour:08x}"
    async with store.begin(snapshot_id) as writer:
        async with writer.sink("postgres.dump") as sink:
            await sink(b"rows")
        writer.add(sink.entry)
        manifest = SnapshotManifest(
            id=snapshot_id, project=store.project, reason=SnapshotReason.MANUAL,
            created_at=at, files=writer.files,
        )  # fmt: skip
        await store.commit(writer, manifest)
    return manifest


def damage_state(settings: Settings) -> RunRecord:
    """A finished run, then a torn line; a truncated journal; an undecodable last-good."""
    state = settings.state_dir
    earlier = RunRecord(
        update_id="0123456789ab", state=Stage.COMPLETED, result=Stage.COMPLETED,
        from_version="1.4.0", target_version=CURRENT, finished_at=datetime.now(UTC),
    )  # fmt: skip
    (state / "history.jsonl").write_bytes(earlier.model_dump_json().encode() + b"\n" + TORN)
    journal = RunRecord(update_id="fedcba987654", state=Stage.MIGRATE).model_dump_json()
    (state / "current-run.json").write_text(journal[: len(journal) // 3])
    (state / "last-good.json").write_bytes(b"\x00\x00\x00\x00")
    return earlier


@pytest.fixture
async def damaged(tmp_path: Path) -> AsyncIterator[tuple[Runtime, SnapshotManifest, str]]:
    settings = load_world_settings(tmp_path)
    earlier = damage_state(settings)
    store = SnapshotStore(settings.backup_dir, PROJECT)
    good = await committed_snapshot(store, 1)
    bad = await committed_snapshot(store, 2)
    (settings.backup_dir / bad.id / "manifest.json").write_bytes(b"\xff\xfe{not json")
    async with build_runtime(
        settings,
        engine=FakeEngine(CURRENT, PROJECT),
        registry=FakeRegistry(VERSIONS),
        signatures=FakeSignatures(Policy.OFF),
        prober=FakeProber(),
    ) as runtime:  # fmt: skip  (no snapshots=: the real SnapshotService on backups/)
        yield runtime, good, bad.id
        await runtime.manager.shutdown()
    assert earlier.update_id  # (kept for readers: the one valid history record)


def tear(history: Path) -> None:
    with open(history, "ab") as handle:
        handle.write(TORN)


def metric(text: str, name: str, **labels: str) -> float:
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{wanted} not in /metrics")


async def test_endpoints_answer_200_with_damaged_state_files(
    aiohttp_client: Any, damaged: tuple[Runtime, SnapshotManifest, str]
) -> None:
    runtime, good, bad_id = damaged
    client = await aiohttp_client(served_app(runtime))  # start-up recovery runs here
    state, backups = runtime.settings.state_dir, runtime.settings.backup_dir

    response = await client.get("/admin/update/history", headers=auth())
    assert response.status == 200, await response.text()
    assert [run["update_id"] for run in (await response.json())["runs"]] == ["0123456789ab"]

    response = await client.get("/admin/snapshots", headers=auth())
    assert response.status == 200, await response.text()
    assert [s["id"] for s in (await response.json())["snapshots"]] == [good.id]
    assert (backups / bad_id / "postgres.dump").exists()  # the damaged folder is kept

    for path in ("/admin/version", "/admin/update/status", "/admin/badge.json", "/healthz"):
        response = await client.get(path, headers=auth())
        assert response.status == 200, (path, await response.text())

    response = await client.get("/metrics", headers=auth())
    assert response.status == 200, await response.text()
    text = await response.text()
    for kind in ("history.jsonl", "current-run.json", "last-good.json", "manifest.json"):
        assert metric(text, "supervisor_state_damaged_total", file=kind) == 1.0, kind
    assert metric(text, "supervisor_state_damaged_total", file="versions.env") == 0.0
    assert metric(text, "supervisor_snapshots") == 1.0

    # the journal and last-good were set aside, not deleted; the history was left as it was
    assert len(list(state.glob("current-run.json.corrupt-*"))) == 1
    assert len(list(state.glob("last-good.json.corrupt-*"))) == 1
    assert (state / "history.jsonl").read_bytes().endswith(TORN)

    # and the sidecar still works: a run goes through (its backup fails on the fake engine:
    # no real database) and is appended to the history on a line of its own
    response = await client.post(
        "/admin/update/start", json={"target_version": "1.4.2"}, headers=auth()
    )
    assert response.status == 202, await response.text()
    update_id = (await response.json())["update_id"]
    record = await asyncio.wait_for(runtime.manager.wait(update_id), 20)
    assert record.state.finished
    history = (await (await client.get("/admin/update/history", headers=auth())).json())["runs"]
    assert [run["update_id"] for run in history] == [update_id, "0123456789ab"]
    lines = (state / "history.jsonl").read_bytes().split(b"\n")
    assert lines[1] == TORN
    assert json.loads(lines[2])["update_id"] == update_id


@pytest.mark.parametrize(
    ("held", "end"),
    [("pull", Stage.FAILED), ("wait_healthy", Stage.ROLLED_BACK)],
)
async def test_recovery_with_a_torn_history_line_finishes(
    tmp_path: Path, held: str, end: Stage
) -> None:
    settings = load_world_settings(tmp_path)
    adapters = Adapters.fresh()
    async with adapters.open_runtime(settings) as runtime:
        adapters.engine.gates[held] = asyncio.Event()
        record = await runtime.manager.start(StartRequest(target_version="1.4.2"))
        for _ in range(1000):
            if held in [operation for operation, _ in adapters.engine.calls] or (
                held == "pull" and runtime.manager.status(record.update_id).state is Stage.PULL
            ):
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        await runtime.manager.shutdown()  # the process dies here: the journal stays
    tear(settings.state_dir / "history.jsonl")  # and the disk tore the last history line
    adapters.engine.gates.clear()

    async with adapters.open_runtime(settings) as restarted:
        recovered = await asyncio.wait_for(restarted.manager.startup(), 30)
        assert recovered is not None
        assert recovered.update_id == record.update_id
        assert recovered.result is end, recovered.error
        assert [r.update_id for r in restarted.state.history()] == [record.update_id]
        assert restarted.damage.counts()["history.jsonl"] == 1
        assert await restarted.manager.startup() is None  # nothing left to recover
    assert adapters.engine.version_running("app") == CURRENT
    lines = (settings.state_dir / "history.jsonl").read_bytes().split(b"\n")
    assert lines[0] == TORN
    assert json.loads(lines[1])["update_id"] == record.update_id


async def test_serve_warns_about_state_and_backups_others_can_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``supervisor serve`` logs a warning naming each exposed directory and its mode."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = sidecar_env(tmp_path, listen_host="127.0.0.1", listen_port=str(port))
    (tmp_path / "state").chmod(0o750)
    (tmp_path / "backups").chmod(0o700)
    adapters = Adapters.fresh()
    serving = asyncio.create_task(run(["serve"], env=env, open_runtime=adapters.open_runtime))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(500):
                assert not serving.done(), serving.result()
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.01)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    exposed = [m for m in warnings if "group or others can read" in m]
    assert len(exposed) == 1, warnings
    assert f"{tmp_path / 'state'} has mode 0750" in exposed[0]
