"""Fixtures for the snapshot tests: a SnapshotService over real database containers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.const import Role
from supervisor.engine.docker_engine import DockerEngine
from supervisor.snapshots import SnapshotOptions, SnapshotService, SnapshotStore

SnapshotFactory = Callable[..., SnapshotService]


@pytest.fixture
def snapshot_service(engine: DockerEngine, tmp_path: Path) -> SnapshotFactory:
    """Factory: ``snapshot_service(postgres=cid, influxdb=cid, **options)``.

    Containers are handed over by id (the fixtures' containers carry no Compose labels);
    the backups folder is ``tmp_path/backups`` unless ``backup_dir`` is given.
    """

    def factory(
        postgres: str | None = None, influxdb: str | None = None, **overrides: Any
    ) -> SnapshotService:
        backup_dir = overrides.pop("backup_dir", tmp_path / "backups")
        backup_dir.mkdir(exist_ok=True)
        values: dict[str, Any] = {
            "project": "snaptest",
            "backup_dir": backup_dir,
            "min_free_bytes_margin": 0,
            "timeout": 240.0,
            # The engine runs on this machine, so the folder is at the same path on its host:
            # restores read the dump in place (tests that want the upload pass "off").
            "backup_host_dir": str(backup_dir.resolve()),
        }
        values.update(overrides)
        options = SnapshotOptions(**values)
        containers = {Role.POSTGRES: postgres, Role.INFLUXDB: influxdb}

        async def locate(role: Role) -> str | None:
            return containers.get(role)

        return SnapshotService(engine, SnapshotStore(backup_dir, options.project), options, locate)

    return factory


def rewrite_manifest_hash(folder: Path, name: str) -> None:
    """Make a snapshot's manifest agree with its (damaged) file again: damage done at the
    source, which only the deep check or the restore can find."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    data = (folder / name).read_bytes()
    for entry in manifest["files"]:
        if entry["name"] == name:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["size"] = len(data)
    path.write_text(json.dumps(manifest))
