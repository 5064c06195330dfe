"""InfluxDB 2.x: the exact command contract, run through the real adapter with a fake engine.

No 2.x server is obtainable where this project is tested (docs/snapshots.md says so),
so these tests pin what the adapter *sends*: every argv in order, the token only ever in
the exec environment, and what the adapter does with the answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from supervisor.const import Role
from supervisor.engine.models import ExecResult, ServiceContainer
from supervisor.engine.protocol import OutputSink
from supervisor.engine.sibling import FIND_SCRIPT
from supervisor.exceptions import BackupFailed, RestoreFailed, SnapshotWrongProject
from supervisor.snapshots import (
    SnapshotManifest,
    SnapshotOptions,
    SnapshotReason,
    SnapshotService,
    SnapshotStore,
)
from supervisor.snapshots.models import new_snapshot_id

ARCHIVE = b"fake influx 2 backup tar" * 1000
WRAP = 'echo $$ >"$0" && exec "$@"'
FRESH = 'rm -rf "$0" && mkdir -m 700 "$0" && { id -u && id -g || true; }'


@dataclass
class FakeEngine:
    """Answers the calls the InfluxDB adapter (and a work directory) makes; records every
    exec. ``ids`` / ``id_again``: what the work directory's mkdir exec and a later
    ``id -u; id -g`` print; ``mkdir_error`` / ``mkdir_hangs``: that exec fails or hangs."""

    version_output: str = "InfluxDB v2.7.6 (git: 3c58c06206) build_date: 2024-04-12T21:51:21Z\n"
    env: dict[str, str] = field(default_factory=dict)
    running: bool = True
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    timeouts: list[tuple[list[str], float | None]] = field(default_factory=list)
    uploads: list[tuple[str, str, str]] = field(default_factory=list)
    owners: list[tuple[int, int]] = field(default_factory=list)  # (uid, gid) per upload
    ids: bytes = b"0\n0\n"
    id_again: bytes = b"0\n0\n"
    mkdir_error: Exception | None = None
    mkdir_hangs: bool = False
    # The sibling (supervisor.snapshots.in_place): where the engine says the backups folder
    # is, what a start does, what the database container finds through it.
    host_path: str | None = None
    host_path_error: Exception | None = None
    host_path_gate: asyncio.Event | None = None  # host_path_of waits for it
    sibling_error: Exception | None = None
    found_through_sibling: bytes = b""
    find_empty_times: int = 0  # the first searches find nothing (the sibling not yet up)
    find_hangs: bool = False
    siblings: list[tuple[str, str, str]] = field(default_factory=list)  # (of, source, tag)
    removed_siblings: list[tuple[str, str | None]] = field(default_factory=list)
    lifetimes: list[float] = field(default_factory=list)

    async def container(self, container_id: str) -> ServiceContainer:
        state = "running" if self.running else "exited"
        return ServiceContainer(
            id=container_id, name="stack_influxdb_1", project="proj", service="influxdb",
            image="influxdb:2.7", image_id="sha256:1", repo_digest=None, state=state,
            health=None, restart_count=0, labels={},
        )  # fmt: skip

    async def container_env(self, container_id: str) -> dict[str, str]:
        return dict(self.env)

    async def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        stdout: OutputSink | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> ExecResult:
        argv = list(argv)
        if argv[:3] == ["sh", "-c", WRAP]:
            argv = argv[4:]  # the pid-recording guard: the command itself follows
        self.calls.append((argv, dict(env or {})))
        self.timeouts.append((argv, timeout))
        out = b""
        if argv == ["influxd", "version"]:
            out = self.version_output.encode()
        elif argv[0] == "tar" and "-cf" in argv:
            out = ARCHIVE
        elif argv[:3] == ["sh", "-c", FRESH]:
            if self.mkdir_hangs:
                await asyncio.Event().wait()
            if self.mkdir_error is not None:
                raise self.mkdir_error
            out = self.ids  # the work directory's exec user
        elif argv == ["sh", "-c", "id -u; id -g"]:
            out = self.id_again
        elif argv[:3] == ["sh", "-c", FIND_SCRIPT]:
            if self.find_hangs:
                await asyncio.Event().wait()
            if self.find_empty_times > 0:
                self.find_empty_times -= 1
            else:
                out = self.found_through_sibling
        if stdout is not None and out:
            await stdout(out)
        return ExecResult(0, len(out), "", 0.0)

    async def put_file(
        self, container_id: str, local_path: Path, container_dir: str, **kw: Any
    ) -> str:
        self.uploads.append((str(local_path.name), container_dir, kw["name"]))
        self.owners.append((kw["uid"], kw["gid"]))
        return hashlib.sha256(local_path.read_bytes()).hexdigest()  # noqa: ASYNC240 (tiny)

    async def sweep_siblings(self, project: str) -> list[str]:
        self.calls.append((["sweep_siblings", project], {}))
        return ["left-over"]

    async def host_path_of(self, path: PurePosixPath) -> str | None:
        self.calls.append((["host_path_of", str(path)], {}))
        if self.host_path_gate is not None:
            await self.host_path_gate.wait()
        if self.host_path_error is not None:
            raise self.host_path_error
        return self.host_path

    async def start_sibling(self, of: str, source: str, tag: str, lifetime: float) -> str:
        if self.sibling_error is not None:
            raise self.sibling_error
        self.siblings.append((of, source, tag))
        self.lifetimes.append(lifetime)
        return f"sibling-{len(self.siblings)}"

    async def remove_siblings(
        self, of: str, tag: str | None = None, wait: bool = True
    ) -> list[str]:
        self.removed_siblings.append((of, tag))
        return []

    def commands(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


def service_for(engine: FakeEngine, tmp_path: Path, **options: Any) -> SnapshotService:
    values: dict[str, Any] = {"project": "proj", "backup_dir": tmp_path, "min_free_bytes_margin": 0}
    opts = SnapshotOptions(**(values | options))

    async def locate(role: Role) -> str | None:
        return "influx-cid" if role is Role.INFLUXDB else None

    return SnapshotService(engine, SnapshotStore(tmp_path, "proj"), opts, locate)  # type: ignore[arg-type]


async def test_v2_backup_and_restore_commands(tmp_path: Path) -> None:
    engine = FakeEngine()
    service = service_for(engine, tmp_path, influx_token="operator-token-123", influx_org="acme")

    manifest = await service.create(SnapshotReason.MANUAL)

    work = f"/tmp/supervisor-influx-{manifest.id}"
    assert engine.commands() == [
        ["influxd", "version"],
        ["du", "-sk", "/var/lib/influxdb2"],
        ["sh", "-c", FRESH, work],
        ["influx", "backup", f"{work}/backup"],
        ["tar", "-C", f"{work}/backup", "-cf", "-", "."],
        ["rm", "-rf", work],
    ]
    backup_env = engine.calls[3][1]
    assert backup_env == {
        "INFLUX_TOKEN": "operator-token-123", "INFLUX_HOST": "http://localhost:8086",
        "INFLUX_ORG": "acme",
    }  # fmt: skip
    assert all("operator-token-123" not in " ".join(argv) for argv in engine.commands())
    assert manifest.influxdb is not None
    assert manifest.influxdb.major_version == 2
    assert manifest.influxdb.server_version == "2.7.6"
    assert manifest.file("influxdb.tar").sha256 == hashlib.sha256(ARCHIVE).hexdigest()

    engine.calls.clear()
    await service.restore(manifest.id)

    work = "/tmp/supervisor-influx-restore"
    assert engine.commands() == [
        ["influxd", "version"],
        ["sh", "-c", FRESH, work],
        ["mkdir", "-m", "700", f"{work}/backup"],
        ["tar", "-C", f"{work}/backup", "-xf", f"{work}/influxdb.tar"],
        ["influx", "restore", "--full", f"{work}/backup"],
        ["rm", "-rf", work],
    ]
    assert engine.calls[4][1]["INFLUX_TOKEN"] == "operator-token-123"
    assert engine.uploads == [("influxdb.tar", work, "influxdb.tar")]


async def test_v2_token_from_the_official_image_env(tmp_path: Path) -> None:
    engine = FakeEngine(env={"DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": "from-env-token"})
    await service_for(engine, tmp_path).create(SnapshotReason.MANUAL)
    backup = next(env for argv, env in engine.calls if argv[:2] == ["influx", "backup"])
    assert backup["INFLUX_TOKEN"] == "from-env-token"
    assert "INFLUX_ORG" not in backup


async def test_v2_without_a_token_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackupFailed, match="needs an operator token.*SUPERVISOR_INFLUX_TOKEN"):
        await service_for(FakeEngine(), tmp_path).create(SnapshotReason.MANUAL)
    assert os.listdir(tmp_path) == []


async def test_configured_version_wins_and_1x_backup_is_refused_on_2x(tmp_path: Path) -> None:
    engine = FakeEngine(version_output="InfluxDB v1.8.10 (git: 1.8 688e697c51)")
    service = service_for(engine, tmp_path, influxdb_version="2", influx_token="t" * 20)
    manifest = await service.create(SnapshotReason.MANUAL)
    assert manifest.influxdb is not None
    assert manifest.influxdb.major_version == 2
    engine2 = FakeEngine()  # a 2.x server, but the snapshot was taken as 1.x
    data = manifest.model_dump()
    data["influxdb"]["major_version"] = 1
    (tmp_path / manifest.id / "manifest.json").write_text(
        SnapshotManifest.model_validate(data).model_dump_json()
    )
    with pytest.raises(RestoreFailed, match="1.x backup but the server is 2.7.6"):
        await service_for(engine2, tmp_path, influx_token="t" * 20).restore(manifest.id)


async def test_another_projects_snapshot_touches_no_container(tmp_path: Path) -> None:
    engine = FakeEngine()
    other = SnapshotStore(tmp_path, "someone-else")
    snapshot_id = new_snapshot_id()
    async with other.begin(snapshot_id) as writer:
        await other.commit(writer, SnapshotManifest(
            id=snapshot_id, project="someone-else", reason=SnapshotReason.MANUAL,
            created_at=datetime.now(UTC),
        ))  # fmt: skip
    with pytest.raises(SnapshotWrongProject, match="'someone-else', not 'proj'"):
        await service_for(engine, tmp_path, influx_token="t" * 20).restore(snapshot_id)
    assert engine.calls == []
