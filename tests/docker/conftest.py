"""Fixtures for the snapshot tests: a SnapshotService over real database containers."""

from __future__ import annotations

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
        }
        values.update(overrides)
        options = SnapshotOptions(**values)
        containers = {Role.POSTGRES: postgres, Role.INFLUXDB: influxdb}

        async def locate(role: Role) -> str | None:
            return containers.get(role)

        return SnapshotService(engine, SnapshotStore(backup_dir, options.project), options, locate)

    return factory
