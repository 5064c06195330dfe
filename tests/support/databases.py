"""Fresh PostgreSQL and InfluxDB containers (testcontainers, our own images)."""

from __future__ import annotations

import json
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from testcontainers.core.container import DockerContainer

from tests.support.dockercli import docker, exec_in, owner_labels, wait_healthy


@dataclass(frozen=True)
class PostgresHandle:
    container_id: str
    user: str
    password: str
    database: str
    host_port: int

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run SQL through psql inside the container (unaligned, tuples only)."""
        return exec_in(
            self.container_id,
            "psql", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t",
            "-U", self.user, "-d", database or self.database, "-c", sql,
        ).strip()  # fmt: skip


@dataclass(frozen=True)
class InfluxHandle:
    container_id: str
    host_port: int

    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        params = {"q": q, **({"db": db} if db else {})}
        url = f"http://127.0.0.1:{self.host_port}/query?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10) as r:
            result: dict[str, Any] = json.loads(r.read())
        return result

    def write(self, db: str, lines: str) -> None:
        url = f"http://127.0.0.1:{self.host_port}/write?" + urllib.parse.urlencode({"db": db})
        req = urllib.request.Request(url, data=lines.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 204


def _start(container: DockerContainer, port: int) -> tuple[str, int]:
    container.start()
    wrapped = container.get_wrapped_container()
    wait_healthy(wrapped.id)
    return wrapped.id, int(container.get_exposed_port(port))


def _remove(container: DockerContainer) -> None:
    wrapped = container.get_wrapped_container()
    if wrapped is not None:
        docker("rm", "-f", "-v", wrapped.id, check=False)


@contextmanager
def postgres_container(image: str) -> Iterator[PostgresHandle]:
    password = secrets.token_urlsafe(12)
    container = (
        DockerContainer(image, labels=owner_labels())
        .with_env("POSTGRES_USER", "app")
        .with_env("POSTGRES_PASSWORD", password)
        .with_env("POSTGRES_DB", "appdb")
        .with_exposed_ports(5432)
    )
    try:
        cid, port = _start(container, 5432)
        yield PostgresHandle(cid, "app", password, "appdb", port)
    finally:
        _remove(container)


@contextmanager
def influxdb_container(image: str) -> Iterator[InfluxHandle]:
    container = DockerContainer(image, labels=owner_labels()).with_exposed_ports(8086)
    try:
        cid, port = _start(container, 8086)
        yield InfluxHandle(cid, port)
    finally:
        _remove(container)
