"""InfluxDB snapshots, 1.x and 2.x, through exec in the InfluxDB container.

::

    influxd backup -portable DIR   (1.x)  ┐ inside the container, DIR under
    influx backup DIR              (2.x)  ┘ /tmp/supervisor-<id>/
    tar -C DIR -cf - .  ──stdout──▶ backups/.tmp-<id>/influxdb.tar (hashed as written)

Why a tar through exec rather than a shared volume: the sidecar then needs
nothing but exec on the InfluxDB container (no extra mount in the operator's
compose file), and the bytes are hashed on the way in like a Postgres dump.

Restore (1.x): the tar is uploaded, unpacked, and for every database in it
``DROP DATABASE`` then ``influxd restore -portable -db NAME``. 1.x can neither
rename a database nor restore over an existing one, and copying a restored
copy back with ``SELECT … INTO`` changes field types and retention policies,
so a drop-and-restore is the only faithful full restore. To keep the window
small, everything that can fail early does first (checksums, upload, unpack,
the server answering); a failure after the drop says so and names the
snapshot to retry with. Restore (2.x): ``influx restore --full``, which
replaces all data *and* the metadata (users, tokens) with the backup's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from supervisor.engine.protocol import Engine
from supervisor.exceptions import (
    BackupFailed,
    CommandFailed,
    EngineError,
    RestoreFailed,
    SnapshotError,
)
from supervisor.snapshots import influx_commands as cmd
from supervisor.snapshots.const import INFLUX_ARCHIVE_FILE
from supervisor.snapshots.models import FileEntry, InfluxBackup
from supervisor.snapshots.store import SnapshotWriter
from supervisor.snapshots.workdir import ContainerWorkdir

_LOGGER = logging.getLogger(__name__)


class InfluxSnapshots:
    """Back up and restore all data of one InfluxDB container."""

    def __init__(
        self,
        engine: Engine,
        container_id: str,
        *,
        version: str = "auto",
        token: str | None = None,
        org: str | None = None,
        timeout: float = 1800.0,
        exec_timeout: float = 300.0,
    ) -> None:
        if version not in ("auto", "1", "2"):
            raise ValueError(f"InfluxDB version must be auto, 1 or 2, not {version!r}")
        self.engine = engine
        self.container_id = container_id
        self.version = version
        self._token = token
        self.org = org
        self.timeout = timeout
        self.exec_timeout = exec_timeout
        self._detected: tuple[int, str] | None = None

    async def detect(self, error: type[SnapshotError] = BackupFailed) -> tuple[int, str]:
        """(major version, version text): from the setting, or ``influxd version``."""
        if self._detected is None:
            container = await self.engine.container(self.container_id)
            if not container.running:
                raise error(
                    f"the InfluxDB container {container.name} is {container.state}, not "
                    "running; start it (docker compose up -d) and try again"
                )
            out = bytearray()

            async def collect(chunk: bytes) -> None:
                out.extend(chunk)

            try:
                await self.engine.exec(
                    self.container_id,
                    cmd.influxd_version(),
                    stdout=collect,
                    timeout=self.exec_timeout,
                )
                major, text = cmd.parse_version(out.decode("utf-8", "replace"))
            except (CommandFailed, SnapshotError) as err:
                if self.version == "auto":
                    raise error(f"cannot detect the InfluxDB version: {err.message}") from err
                major, text = int(self.version), "unknown"
            if self.version != "auto" and major != int(self.version):
                _LOGGER.warning("InfluxDB reports %s but %s is configured", text, self.version)
                major = int(self.version)
            if major not in (1, 2):
                raise error(f"InfluxDB {text} is not supported (only 1.x and 2.x)")
            self._detected = (major, text)
        return self._detected

    async def _env(self, major: int, error: type[SnapshotError]) -> dict[str, str]:
        """Credentials for the CLI: settings first, then the official images' variables."""
        env = await self.engine.container_env(self.container_id)
        if major == 1:
            return cmd.v1_env(env.get("INFLUXDB_ADMIN_USER"), env.get("INFLUXDB_ADMIN_PASSWORD"))
        token = self._token or env.get("DOCKER_INFLUXDB_INIT_ADMIN_TOKEN")
        if not token:
            raise error(
                "InfluxDB 2.x needs an operator token for backup and restore: set "
                "SUPERVISOR_INFLUX_TOKEN (or SUPERVISOR_INFLUX_TOKEN_FILE)"
            )
        org = self.org or env.get("DOCKER_INFLUXDB_INIT_ORG")
        return cmd.v2_env(token, org=org)

    async def size(self) -> int:
        """Bytes on disk of the data directory (best effort, for the disk preflight)."""
        major, _ = await self.detect()
        work = ContainerWorkdir(self.engine, self.container_id, "size")
        try:
            out = await work.output(cmd.disk_usage(cmd.DATA_DIRS[major]))
            return int(out.split()[0]) * 1024
        except (SnapshotError, EngineError, ValueError, IndexError) as err:
            _LOGGER.info("cannot measure the InfluxDB data directory: %s", err)
            return 0

    async def backup(self, writer: SnapshotWriter) -> InfluxBackup:
        major, version = await self.detect(BackupFailed)
        env = await self._env(major, BackupFailed)
        tag = f"influx-{writer.snapshot_id}"
        async with ContainerWorkdir(self.engine, self.container_id, tag) as work:
            directory = work.file("backup")
            databases: list[str] = []
            try:
                if major == 1:
                    databases = cmd.parse_databases(
                        await work.output(cmd.v1_show_databases(), env=env)
                    )
                    argv = cmd.v1_backup(directory)
                else:
                    argv = cmd.v2_backup(directory)
                await work.run("backup", argv, env=env, timeout=self.timeout)
                async with writer.sink(INFLUX_ARCHIVE_FILE) as sink:
                    await work.run("tar", cmd.tar_out(directory), stdout=sink, timeout=self.timeout)
            except (CommandFailed, EngineError) as err:
                raise BackupFailed(f"InfluxDB {version} backup failed: {err.message}") from err
            entry = writer.add(sink.entry)
        _LOGGER.info("backed up InfluxDB %s: %d bytes", version, entry.size)
        return InfluxBackup(
            major_version=1 if major == 1 else 2,
            server_version=version,
            archive_file=entry.name,
            databases=databases,
        )

    async def restore(self, folder: Path, backup: InfluxBackup, entry: FileEntry) -> None:
        """Replace the server's data by the backup (see the module docstring)."""
        major, version = await self.detect(RestoreFailed)
        if major != backup.major_version:
            raise RestoreFailed(
                f"the snapshot holds an InfluxDB {backup.major_version}.x backup but the "
                f"server is {version}; restore it by hand"
            )
        env = await self._env(major, RestoreFailed)
        async with ContainerWorkdir(self.engine, self.container_id, "influx-restore") as work:
            directory = work.file("backup")
            try:
                archive = await work.upload(folder / entry.name, entry, self.timeout)
                await work.run("mkdir", ["mkdir", "-m", "700", directory])
                await work.run("untar", cmd.tar_in(directory, archive), timeout=self.timeout)
                if major == 2:
                    await work.run(
                        "restore", cmd.v2_restore(directory), env=env, timeout=self.timeout
                    )
                    return
                await work.output(cmd.v1_show_databases(), env=env)  # the server answers
            except (CommandFailed, EngineError) as err:
                raise RestoreFailed(
                    f"InfluxDB restore failed before any data was changed: {err.message}"
                ) from err
            for database in backup.databases:
                await self._replace_v1(work, directory, database, env)
        _LOGGER.info("restored InfluxDB databases %s", ", ".join(backup.databases) or "(none)")

    async def _replace_v1(
        self, work: ContainerWorkdir, directory: str, database: str, env: dict[str, str]
    ) -> None:
        try:
            await work.run("drop", cmd.v1_drop_database(database), env=env)
        except (CommandFailed, EngineError) as err:
            raise RestoreFailed(f"dropping InfluxDB database {database!r}: {err.message}") from err
        try:
            await work.run("restore", cmd.v1_restore(directory, database), timeout=self.timeout)
        except (CommandFailed, EngineError) as err:
            raise RestoreFailed(
                f"InfluxDB database {database!r} was dropped and restoring it failed: "
                f"{err.message}; the snapshot is intact, retry the restore",
                database=database,
            ) from err
