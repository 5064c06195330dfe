"""A throwaway Compose project, brought up with ``docker-compose`` and always torn down."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.dockercli import (
    ENGINE_SOCKET,
    OWNER_LABEL,
    service_containers,
    wait_healthy,
)
from tests.support.testenv import ROOT, StackTestEnv

STACK_FILE = ROOT / "tests" / "env" / "compose" / "stack.yml"
# The services ``compose_project`` waits for before it hands the stack over.
APP_STACK_SERVICES = ("postgres", "influxdb", "python_backend", "app")


@dataclass
class ComposeProject:
    name: str
    file: Path
    env: dict[str, str] = field(repr=False)
    # Further Compose files merged over ``file`` (``-f`` each, in order).
    overrides: tuple[Path, ...] = ()

    def compose(self, *args: str, timeout: float = 300) -> str:
        files = [arg for path in (self.file, *self.overrides) for arg in ("-f", str(path))]
        proc = subprocess.run(
            ["docker-compose", "-p", self.name, *files, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout

    def containers(self, service: str, all_states: bool = False) -> list[str]:
        return service_containers(self.name, service, all_states)

    def container(self, service: str) -> str:
        ids = self.containers(service)
        assert len(ids) == 1, f"expected one running container for {service}, got {ids}"
        return ids[0]

    @property
    def postgres_password(self) -> str:
        return self.env["POSTGRES_PASSWORD"]


# The ``compose_stack`` fixture: ``with compose_stack("1.0.0") as project:``.
StackFactory = Callable[..., AbstractContextManager["ComposeProject"]]


@contextmanager
def compose_project(
    testenv: StackTestEnv,
    app_version: str = "1.0.0",
    backend_version: str | None = None,
    images: dict[str, str] | None = None,
    files: Sequence[Path] = (STACK_FILE,),
    wait_for: Sequence[str] = APP_STACK_SERVICES,
) -> Iterator[ComposeProject]:
    """Bring the test stack up at the given fake-app version and wait until healthy.

    ``images`` overrides the stack file's variables (``APP_IMAGE``, ``BACKEND_IMAGE``), e.g. to
    run images tagged ``:latest``. ``files`` are the Compose files (the first one and the
    overrides merged over it); ``wait_for`` the services that must be healthy first."""
    name = "stsup" + secrets.token_hex(4)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DOCKER_HOST": ENGINE_SOCKET,
        "STACKSUP_TEST_PID": str(os.getpid()),
        "POSTGRES_IMAGE": testenv.postgres_image,
        "INFLUXDB_IMAGE": testenv.influxdb_image,
        "EDGE_PROXY_IMAGE": testenv.edge_proxy_image,
        "APP_IMAGE": testenv.fakeapp[app_version].pinned,
        "BACKEND_IMAGE": testenv.fakeapp[backend_version or app_version].pinned,
        "POSTGRES_PASSWORD": secrets.token_urlsafe(12),
        **(images or {}),
    }
    project = ComposeProject(name, files[0], env, tuple(files[1:]))
    try:
        project.compose("up", "-d", "--quiet-pull")
        for service in wait_for:
            wait_healthy(project.container(service))
        yield project
    finally:
        project.compose("down", "-v", "--remove-orphans", "--timeout", "2")


__all__ = ["OWNER_LABEL", "ComposeProject", "compose_project"]
