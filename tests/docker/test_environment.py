"""The test environment itself works for real: engine through the proxy,
registry round trip, database fixtures, a Compose project."""

from __future__ import annotations

import secrets
import urllib.request

import aiodocker
import aiohttp
import pytest

from tests.conftest import start_docker_proxy
from tests.support.dockercli import docker, owner_labels
from tests.support.testenv import StackTestEnv

EXEC_BYTES = 120 * 1024 * 1024


async def test_container_lifecycle_and_large_exec_through_proxy(
    docker_client: aiodocker.Docker, testenv: StackTestEnv
) -> None:
    name = "stsup-lifecycle-" + secrets.token_hex(4)
    container = await docker_client.containers.create_or_replace(
        name,
        {"Image": testenv.base_image, "Cmd": ["sleep", "infinity"], "Labels": owner_labels()},
    )
    try:
        await container.start()
        execution = await container.exec(["head", "-c", str(EXEC_BYTES), "/dev/zero"])
        received = 0
        async with execution.start(detach=False) as stream:
            while (message := await stream.read_out()) is not None:
                assert message.stream == 1
                received += len(message.data)
        assert received == EXEC_BYTES
        assert (await execution.inspect())["ExitCode"] == 0

        failing = await container.exec(["sh", "-c", "echo oops >&2; exit 7"])
        async with failing.start(detach=False) as stream:
            errors = [m.data async for m in _drain(stream)]
        assert b"".join(errors) == b"oops\n"
        assert (await failing.inspect())["ExitCode"] == 7
    finally:
        await container.delete(force=True)
    with pytest.raises(aiodocker.DockerError) as missing:
        await docker_client.containers.get(name)
    assert missing.value.status == 404


async def _drain(stream):  # type: ignore[no-untyped-def]
    while (message := await stream.read_out()) is not None:
        yield message


@pytest.mark.parametrize("path", ["volumes", "swarm", "info", "build", "secrets", "system/df"])
async def test_proxy_refuses_paths_it_does_not_grant(
    docker_client: aiodocker.Docker, path: str
) -> None:
    with pytest.raises(aiodocker.DockerError) as refused:
        await docker_client._query_json(path, method="GET")
    assert refused.value.status == 403
    assert "not granted" in refused.value.message


async def test_proxy_without_post_refuses_changes(testenv: StackTestEnv) -> None:
    cid, url = start_docker_proxy(testenv, {"CONTAINERS": "1"})
    try:
        async with aiodocker.Docker(url=url) as client:
            assert isinstance(await client.containers.list(), list)  # GET is granted
            with pytest.raises(aiodocker.DockerError) as refused:
                await client.containers.create({"Image": testenv.base_image})
            assert refused.value.status == 403
    finally:
        docker("rm", "-f", cid, check=False)


async def test_image_round_trip_through_registry_by_digest(
    docker_client: aiodocker.Docker, testenv: StackTestEnv
) -> None:
    repo = f"{testenv.registry}/stacksup/roundtrip"
    tag = secrets.token_hex(4)
    docker("tag", testenv.base_image, f"{repo}:{tag}")
    pushed = docker("push", f"{repo}:{tag}")
    digest = next(w for w in pushed.split() if w.startswith("sha256:"))
    local_id = docker("image", "inspect", "-f", "{{.Id}}", f"{repo}:{tag}").strip()
    docker("rmi", f"{repo}:{tag}")  # the base image keeps the layers; only the name goes

    await docker_client.images.pull(f"{repo}@{digest}")
    pulled = await docker_client.images.inspect(f"{repo}@{digest}")
    assert pulled["Id"] == local_id
    assert f"{repo}@{digest}" in pulled["RepoDigests"]

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{testenv.registry_url}/v2/stacksup/roundtrip/tags/list") as response,
    ):
        assert tag in (await response.json())["tags"]


def test_fake_app_versions_are_in_the_registry(testenv: StackTestEnv) -> None:
    assert sorted(testenv.fakeapp) == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    digests = {image.digest for image in testenv.fakeapp.values()}
    assert len(digests) == 5
    for image in testenv.fakeapp.values():
        request = urllib.request.Request(
            f"{testenv.registry_url}/v2/stacksup/fakeapp/manifests/{image.version}",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request) as r:
            assert r.headers["Docker-Content-Digest"] == image.digest
