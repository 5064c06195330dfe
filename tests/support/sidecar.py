"""The real sidecar object graph for a test stack (engine through the proxy, real registry)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from supervisor.config import Settings, load_settings
from supervisor.services import Runtime, build_runtime
from tests.support.compose import ComposeProject
from tests.support.databases import PostgresHandle
from tests.support.dockercli import docker


def stack_settings(
    project: ComposeProject, proxy_url: str, workdir: Path, **overrides: str
) -> Settings:
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    (workdir / "backups").mkdir(parents=True, exist_ok=True)
    env = {
        "SUPERVISOR_ENGINE_URL": proxy_url,
        "SUPERVISOR_COMPOSE_PROJECT": project.name,
        "SUPERVISOR_SERVICES": "app=app,python_backend=app,migrations=migrations,"
        "postgres=postgres,influxdb=influxdb",
        "SUPERVISOR_START_ORDER": "python_backend,app",
        "SUPERVISOR_STATE_DIR": str(workdir / "state"),
        "SUPERVISOR_BACKUP_DIR": str(workdir / "backups"),
        # The engine runs on this machine: the folder's path is its host path, so dumps are
        # read in place, as by a sidecar in its container (where "auto" finds the mount).
        "SUPERVISOR_BACKUP_HOST_DIR": str((workdir / "backups").resolve()),
        "SUPERVISOR_SIGNATURE_POLICY": "off",
        "SUPERVISOR_STOP_TIMEOUT": "5",
        "SUPERVISOR_HEALTH_TIMEOUT": "30",
        "SUPERVISOR_STABILITY_WINDOW": "10",
        "SUPERVISOR_MIN_FREE_BYTES_MARGIN": "0",
    }
    env.update({f"SUPERVISOR_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env)


@asynccontextmanager
async def sidecar(settings: Settings) -> AsyncIterator[Runtime]:
    async with build_runtime(settings) as runtime:
        await runtime.manager.startup()
        try:
            yield runtime
        finally:
            await runtime.manager.shutdown()


def stack_postgres(project: ComposeProject) -> PostgresHandle:
    return PostgresHandle(
        project.container("postgres"), "app", project.postgres_password, "appdb", 0
    )


def app_port(project: ComposeProject) -> int:
    return int(docker("port", project.container("app"), "8000/tcp").split(":")[-1])


def app_version(project: ComposeProject) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{app_port(project)}/version", timeout=5) as r:
        version: str = json.loads(r.read())["version"]
    return version


class HealthPoller:
    """Polls the app's /health on the host port every 0.2 s and records every miss."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/health"
        self.ok = 0
        self.misses: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.misses.append(f"{time.time():.1f} status {r.status}")
            except OSError as err:
                self.misses.append(f"{time.time():.1f} {err}")
            time.sleep(0.2)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
