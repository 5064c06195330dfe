"""The engine adapter's streaming upload (``put_file``) through the docker-proxy."""

from __future__ import annotations

import hashlib
import secrets
import tracemalloc
from pathlib import Path

import pytest

from supervisor.engine.docker_engine import DockerEngine
from supervisor.exceptions import EngineNotFound
from tests.support.databases import PostgresHandle
from tests.support.dockercli import exec_in

SIZE = 200 * 1024 * 1024 + 123  # not a multiple of the tar block size


async def test_put_file_streams_a_large_file(
    engine: DockerEngine, postgres: PostgresHandle, tmp_path: Path
) -> None:
    local = tmp_path / "big.bin"
    with local.open("wb") as handle:
        for _ in range(SIZE // (1 << 20)):
            handle.write(secrets.token_bytes(1 << 20))
        handle.write(secrets.token_bytes(SIZE % (1 << 20)))
    expected = hashlib.sha256(local.read_bytes()).hexdigest()
    cid = postgres.container_id
    exec_in(cid, "mkdir", "-p", "/tmp/upload")

    tracemalloc.start()
    try:
        sent = await engine.put_file(
            cid, local, "/tmp/upload", name="copy.bin", uid=999, gid=998, mode=0o640
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sent == expected
    assert peak < 32 * 1024 * 1024, f"peak Python memory {peak} bytes while uploading"
    inside = exec_in(cid, "sha256sum", "/tmp/upload/copy.bin").split()[0]
    assert inside == expected
    assert exec_in(cid, "stat", "-c", "%s %u %g %a", "/tmp/upload/copy.bin").split() == [
        str(SIZE), "999", "998", "640",
    ]  # fmt: skip
    env = await engine.container_env(cid)
    assert env["POSTGRES_USER"] == "app"
    assert env["POSTGRES_DB"] == "appdb"


async def test_put_file_errors(
    engine: DockerEngine, postgres: PostgresHandle, tmp_path: Path
) -> None:
    local = tmp_path / "small.txt"
    local.write_text("hello")
    with pytest.raises(EngineNotFound):
        await engine.put_file(postgres.container_id, local, "/no/such/dir")
    with pytest.raises(EngineNotFound, match="no such container or directory"):
        await engine.put_file("no-such-container", local, "/tmp")
    with pytest.raises(EngineNotFound, match="not a directory"):
        await engine.put_file(postgres.container_id, local, "/etc/hostname")
    with pytest.raises(ValueError, match="plain file name"):
        await engine.put_file(postgres.container_id, local, "/tmp", name="../escape")
