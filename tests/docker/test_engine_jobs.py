"""Pull, one-shot and exec jobs, and the adapter's errors, against the real engine."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.const import JOB_LABEL
from supervisor.engine.docker_engine import DockerEngine
from supervisor.engine.models import PullProgress
from supervisor.exceptions import (
    CommandFailed,
    EngineNotFound,
    EngineUnreachable,
    JobTimeout,
    ManifestNotFound,
    ProxyForbidden,
)
from tests.conftest import start_docker_proxy
from tests.support.compose import StackFactory
from tests.support.databases import PostgresHandle
from tests.support.dockercli import docker
from tests.support.testenv import StackTestEnv

STREAM_BYTES = 128 * 1024 * 1024


@pytest.fixture
def fresh_image(testenv: StackTestEnv, tmp_path: Path) -> Iterator[str]:
    """An image only the registry has (pushed, then removed locally): ``name@digest``."""
    repo = f"{testenv.registry}/stacksup/pulltest"
    tag = secrets.token_hex(4)
    (tmp_path / "payload").write_bytes(secrets.token_bytes(3 * 1024 * 1024))
    (tmp_path / "Dockerfile").write_text(
        f"FROM {testenv.base_image}\nCOPY payload /payload\nRUN echo {tag} > /tag\n"
    )
    docker("build", "-q", "-t", f"{repo}:{tag}", str(tmp_path))
    digest = next(w for w in docker("push", f"{repo}:{tag}").split() if w.startswith("sha256:"))
    docker("rmi", f"{repo}:{tag}")
    yield f"{repo}@{digest}"
    docker("rmi", "-f", f"{repo}@{digest}", check=False)


async def test_pull_by_digest_reports_progress(engine: DockerEngine, fresh_image: str) -> None:
    assert not await engine.image_present(fresh_image)
    seen: list[PullProgress] = []
    image_id = await engine.pull(fresh_image, on_progress=seen.append)
    assert await engine.image_present(fresh_image)
    assert image_id.startswith("sha256:")
    assert seen[-1].layers_done == seen[-1].layers_total >= 2
    assert max(p.bytes_total for p in seen) >= 3 * 1024 * 1024
    assert seen[-1].bytes_done == seen[-1].bytes_total
    assert seen[-1].percent == 100


async def test_pull_errors_are_specific(engine: DockerEngine, testenv: StackTestEnv) -> None:
    missing = f"{testenv.registry}/stacksup/fakeapp@sha256:" + "0" * 64
    with pytest.raises(ManifestNotFound, match="no such image"):
        await engine.pull(missing)
    with pytest.raises(ManifestNotFound):
        await engine.pull(f"{testenv.registry}/stacksup/does-not-exist:1.0.0")


async def test_engine_errors_are_specific(testenv: StackTestEnv) -> None:
    async with DockerEngine("tcp://127.0.0.1:9") as unreachable:
        with pytest.raises(EngineUnreachable, match="does not answer"):
            await unreachable.ping()
    cid, url = start_docker_proxy(testenv, {"CONTAINERS": "1"})  # no IMAGES, no POST
    try:
        async with DockerEngine(url) as limited:
            assert await limited.ping()
            with pytest.raises(ProxyForbidden, match="refused"):
                await limited.inspect_image(testenv.base_image)
            with pytest.raises(EngineNotFound):
                await limited.container("no-such-container")
    finally:
        docker("rm", "-f", cid, check=False)


async def test_one_shot_migrations_from_the_target_image(
    engine: DockerEngine, compose_stack: StackFactory, testenv: StackTestEnv
) -> None:
    with compose_stack("1.0.0") as project:
        (template,) = project.containers("migrations", all_states=True)
        postgres = project.container("postgres")

        good = await engine.run_one_shot(template, testenv.fakeapp["1.1.0"].pinned, "m1", 120)
        assert good.exit_code == 0, good.logs
        assert "migration 002: applying" in good.logs
        applied = docker(
            "exec", postgres, "psql", "-U", "app", "-d", "appdb", "-At", "-c",
            "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations",
        )  # fmt: skip
        assert applied.strip() == "001,002"

        bad = await engine.run_one_shot(template, testenv.fakeapp["1.2.0"].pinned, "m2", 120)
        assert bad.exit_code != 0
        assert "division by zero" in bad.logs

        with pytest.raises(JobTimeout, match="did not finish in 3 s"):
            await engine.run_one_shot(
                template, testenv.fakeapp["1.1.0"].pinned, "m3", 3, command=["serve"]
            )
        # This project's jobs only: another worker's update may be running its own.
        leftovers = docker(
            "ps", "-aq", "--filter", f"label={JOB_LABEL}",
            "--filter", f"label=com.docker.compose.project={project.name}",
        )  # fmt: skip
        assert leftovers.split() == []
        assert project.containers("migrations", all_states=True) == [template]


async def test_exec_streams_large_output_to_a_file_without_buffering(
    engine: DockerEngine, postgres: PostgresHandle, tmp_path: Path
) -> None:
    container = postgres.container_id
    target = tmp_path / "stream.bin"
    digest = hashlib.sha256()
    with target.open("wb") as sink:

        async def write(chunk: bytes) -> None:
            digest.update(chunk)
            await asyncio.to_thread(sink.write, chunk)

        tracemalloc.start()
        try:
            result = await engine.exec(
                container, ["head", "-c", str(STREAM_BYTES), "/dev/urandom"], stdout=write
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.exit_code == 0
    assert result.stdout_bytes == STREAM_BYTES == target.stat().st_size
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest.hexdigest()
    assert peak < 16 * 1024 * 1024, f"peak Python memory {peak} bytes while streaming"

    with pytest.raises(CommandFailed, match="exited with code 3: boom") as failed:
        await engine.exec(container, ["sh", "-c", "echo boom >&2; exit 3"])
    assert failed.value.details["exit_code"] == 3
    env_result = await engine.exec(
        container, ["sh", "-c", 'test "$SECRET_VALUE" = s3cr3t'], env={"SECRET_VALUE": "s3cr3t"}
    )
    assert env_result.exit_code == 0
    with pytest.raises(JobTimeout):
        await engine.exec(container, ["sleep", "30"], timeout=1)
    with pytest.raises(TypeError):
        await engine.exec(container, "echo not-a-list")  # type: ignore[arg-type]
