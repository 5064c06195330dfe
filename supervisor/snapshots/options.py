"""What the snapshot service is configured with, and how it finds the database containers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.config import Settings
from supervisor.const import Role
from supervisor.engine.protocol import Engine
from supervisor.exceptions import BackupFailed

# Container id of the service with a role; None when no service has it.
Locator = Callable[[Role], Awaitable[str | None]]


@dataclass(frozen=True)
class SnapshotOptions:
    """What the snapshot service takes from the settings."""

    project: str
    backup_dir: Path
    retention_keep: int = 5
    min_free_bytes_margin: int = 1 << 30
    timeout: float = 1800.0  # a whole dump or restore (SUPERVISOR_BACKUP_TIMEOUT)
    exec_timeout: float = 300.0  # one short command: a query, a version probe
    postgres_user: str | None = None
    postgres_db: str | None = None
    postgres_password: str | None = field(default=None, repr=False)
    influxdb_version: str = "auto"
    influx_token: str | None = field(default=None, repr=False)
    influx_org: str | None = None
    config_paths: tuple[Path, ...] = ()
    # A custom-format dump is compressed and holds no index data, so it is usually much
    # smaller than pg_database_size; 1.0 errs on the safe side.
    size_factor: float = 1.0
    restore_jobs: int = 2
    backup_host_dir: str = "auto"  # see supervisor.snapshots.in_place.HostFolders

    @classmethod
    def from_settings(
        cls, settings: Settings, config_paths: Sequence[Path] = ()
    ) -> SnapshotOptions:
        password, token = settings.postgres_password, settings.influx_token
        return cls(
            project=settings.compose_project,
            backup_dir=settings.backup_dir,
            retention_keep=settings.retention_keep,
            min_free_bytes_margin=settings.min_free_bytes_margin,
            timeout=settings.backup_timeout,
            exec_timeout=settings.exec_timeout,
            postgres_user=settings.postgres_user,
            postgres_db=settings.postgres_db,
            postgres_password=password.get_secret_value() if password else None,
            influxdb_version=str(settings.influxdb_version),
            influx_token=token.get_secret_value() if token else None,
            influx_org=settings.influx_org,
            config_paths=tuple(config_paths),
            backup_host_dir=settings.backup_host_dir,
        )


def compose_locator(engine: Engine, project: str, roles: Mapping[str, Role]) -> Locator:
    """Find a role's container by Compose labels (running containers first)."""

    async def locate(role: Role) -> str | None:
        names = [name for name, given in roles.items() if given is role]
        if not names:
            return None
        services = await engine.discover(project, roles)
        service = services.get(names[0])
        if service is None or not service.containers:
            raise BackupFailed(f"no container of the {role} service {names[0]} in {project}")
        running = [c for c in service.containers if c.running]
        return (running or list(service.containers))[0].id

    return locate


def tree_size(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total
