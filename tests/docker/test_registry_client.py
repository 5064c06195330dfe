"""DistributionClient against the REAL registry (distribution 2.8) and a real htpasswd one."""

from __future__ import annotations

import json
import re
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from supervisor.exceptions import ManifestNotFound, RegistryAuthFailed, RegistryUnreachable
from supervisor.reference import ImageReference
from supervisor.registry import (
    MEDIA_DOCKER_MANIFEST,
    Credentials,
    CredentialStore,
    DistributionClient,
    RetryPolicy,
    compute_digest,
)
from tests.support.dockercli import docker
from tests.support.registry_auth import (
    AuthRegistry,
    docker_with_config,
    htpasswd_registry,
    push_tiny_image,
)
from tests.support.testenv import StackTestEnv

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
FAST = RetryPolicy(attempts=2, backoff=0.05)


@pytest.fixture
async def client() -> AsyncIterator[DistributionClient]:
    async with DistributionClient(retry=FAST, timeout=10) as registry_client:
        yield registry_client


def fakeapp(testenv: StackTestEnv, version: str = "1.0.0") -> ImageReference:
    return ImageReference.parse(testenv.fakeapp[version].ref)


async def test_every_fakeapp_tag_resolves_by_head_to_the_pushed_digest(
    testenv: StackTestEnv,
) -> None:
    methods: list[str] = []

    async def on_request_start(_: Any, __: SimpleNamespace, params: Any) -> None:
        methods.append(params.method)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        DistributionClient(session=session) as client,
    ):
        resolved = {v: await client.resolve_digest(fakeapp(testenv, v)) for v in VERSIONS}
    assert resolved == {v: testenv.fakeapp[v].digest for v in VERSIONS}
    assert methods == ["HEAD"] * len(VERSIONS)  # the header was there: no GET fallback


async def test_list_tags_of_fakeapp(client: DistributionClient, testenv: StackTestEnv) -> None:
    tags = await client.list_tags(fakeapp(testenv))
    assert set(VERSIONS) <= set(tags)
    assert len(tags) == len(set(tags))


async def test_list_tags_paginates_on_the_real_registry(testenv: StackTestEnv) -> None:
    async with DistributionClient(tags_page_size=2) as client:
        paged = await client.list_tags(fakeapp(testenv))
    async with DistributionClient() as client:
        whole = await client.list_tags(fakeapp(testenv))
    assert sorted(paged) == sorted(whole)
    assert set(VERSIONS) <= set(paged)


async def test_manifest_by_digest_is_verified_and_its_config_blob_fetched(
    client: DistributionClient, testenv: StackTestEnv
) -> None:
    digest = testenv.fakeapp["1.1.0"].digest
    manifest = await client.get_manifest(fakeapp(testenv), digest)
    assert manifest.digest == digest == compute_digest(manifest.raw)
    assert (manifest.media_type, manifest.is_index) == (MEDIA_DOCKER_MANIFEST, False)

    by_tag = await client.get_manifest(fakeapp(testenv), "1.1.0")
    assert by_tag.raw == manifest.raw
    assert by_tag.digest == digest

    config_digest = manifest.json()["config"]["digest"]
    config = json.loads(await client.get_blob(fakeapp(testenv), config_digest))
    assert config["os"] == "linux"

    pinned = fakeapp(testenv, "1.1.0").with_digest(digest)
    assert await client.resolve_digest(pinned) == digest


async def test_missing_tag_and_repository_are_manifest_not_found(
    client: DistributionClient, testenv: StackTestEnv
) -> None:
    with pytest.raises(ManifestNotFound) as tag:
        await client.resolve_digest(fakeapp(testenv).with_tag("9.9.9"))
    assert f"tag 9.9.9 of {testenv.registry}/stacksup/fakeapp not found" in tag.value.message

    missing = ImageReference.parse(f"{testenv.registry}/stacksup/no-such-repo:1.0.0")
    with pytest.raises(ManifestNotFound) as repo:
        await client.list_tags(missing)
    assert "repository stacksup/no-such-repo does not exist" in repo.value.message
    with pytest.raises(ManifestNotFound):
        await client.resolve_digest(missing)

    unknown = fakeapp(testenv).with_digest("sha256:" + "0" * 64)
    with pytest.raises(ManifestNotFound, match="manifest sha256:0000"):
        await client.resolve_digest(unknown)


async def test_real_registry_has_no_referrers_api(
    client: DistributionClient, testenv: StackTestEnv
) -> None:
    digest = testenv.fakeapp["1.0.0"].digest
    assert await client.get_referrers(fakeapp(testenv), digest) is None


async def test_closed_port_is_unreachable(client: DistributionClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RegistryUnreachable, match=f"cannot reach registry 127.0.0.1:{port}"):
        await client.list_tags(f"127.0.0.1:{port}/stacksup/fakeapp")


async def test_mirror_mapping_resolves_for_the_reference_host(testenv: StackTestEnv) -> None:
    mirrors = {"registry.stacksup.test:5000": testenv.registry_url}
    async with DistributionClient(mirrors=mirrors) as client:
        for version in VERSIONS:
            ref = ImageReference.parse(f"registry.stacksup.test:5000/stacksup/fakeapp:{version}")
            pinned = ref.with_digest(await client.resolve_digest(ref))
            assert pinned.digest == testenv.fakeapp[version].digest
            assert pinned.by_digest() == (
                f"registry.stacksup.test:5000/stacksup/fakeapp@{testenv.fakeapp[version].digest}"
            )
        assert set(VERSIONS) <= set(await client.list_tags(ref))


# --- a real 401 ------------------------------------------------------------------------

USER = "operator"
PASSWORD = secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def auth_registry(
    testenv: StackTestEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AuthRegistry, Path, str, str]]:
    """(registry, docker config dir written by `docker login`, pushed ref, pushed digest)."""
    base = tmp_path_factory.mktemp("auth-registry")
    with htpasswd_registry(testenv.registry_image, base / "auth", {USER: PASSWORD}) as registry:
        config_dir = base / "docker-config"
        config_dir.mkdir()
        docker_with_config(
            config_dir, "login", registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD
        )
        reference = f"{registry.host}/stacksup/private:{secrets.token_hex(3)}"
        digest = push_tiny_image(config_dir, reference)
        yield registry, config_dir, reference, digest
    assert not docker("ps", "-aq", "--filter", f"id={registry.container_id}").strip()


async def test_auth_registry_refuses_anonymous_access(
    auth_registry: tuple[AuthRegistry, Path, str, str],
) -> None:
    registry, _, reference, _ = auth_registry
    async with DistributionClient(retry=FAST) as client:
        with pytest.raises(RegistryAuthFailed) as refused:
            await client.resolve_digest(reference)
    assert f"registry {registry.host} requires a user name and password" in refused.value.message
    assert "stacksup/private" in refused.value.message


async def test_auth_registry_refuses_wrong_credentials(
    auth_registry: tuple[AuthRegistry, Path, str, str],
) -> None:
    registry, _, reference, _ = auth_registry
    store = CredentialStore({registry.host: Credentials(USER, "wrong-" + PASSWORD)})
    async with DistributionClient(credentials=store, retry=FAST) as client:
        with pytest.raises(RegistryAuthFailed) as refused:
            await client.list_tags(reference)
    assert f"registry {registry.host} refused user '{USER}'" in refused.value.message
    assert PASSWORD not in refused.value.message


async def test_auth_registry_works_with_the_config_docker_login_wrote(
    auth_registry: tuple[AuthRegistry, Path, str, str],
) -> None:
    registry, config_dir, reference, digest = auth_registry
    written = json.loads((config_dir / "config.json").read_text())
    assert registry.host in written["auths"]  # `docker login` really wrote it

    store = CredentialStore.from_docker_config(config_dir / "config.json")
    async with DistributionClient(credentials=store, retry=FAST) as client:
        assert await client.resolve_digest(reference) == digest
        assert await client.list_tags(reference) == [reference.rsplit(":", 1)[1]]
        manifest = await client.get_manifest(reference, digest)
        assert manifest.digest == digest


async def test_image_creation_time_for_maturity_is_read_from_the_config_blob(
    client: DistributionClient, testenv: StackTestEnv
) -> None:
    """``maturity_from = "image_created"``: the time is the image's, as Docker reports it."""
    from datetime import datetime

    from supervisor.policy.maturity import image_created

    reference = fakeapp(testenv)
    created = await image_created(client, reference, "1.0.0")
    inspected = docker("image", "inspect", "-f", "{{.Created}}", testenv.fakeapp["1.0.0"].ref)
    microseconds = re.sub(r"(\.\d{6})\d*", r"\1", inspected.strip())  # Docker gives ns
    expected = datetime.fromisoformat(microseconds.replace("Z", "+00:00"))
    assert created is not None
    assert abs((created - expected).total_seconds()) < 1
    assert await image_created(client, reference, "9.9.9") is None  # unknown: first seen
