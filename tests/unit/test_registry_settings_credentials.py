"""``SUPERVISOR_REGISTRY_USERNAME``/``_PASSWORD`` answer the registry the stack's images live on,
whatever its host name (before: only ``docker.io``, mirrors and insecure registries).

The registry is the in-process fake distribution server (real HTTP, real Basic and Bearer
challenges) on ``127.0.0.1:<port>``: not Docker Hub, not a mirror, not an insecure registry.
The same over the real htpasswd registry and the real engine: ``tests/docker``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from supervisor.exceptions import RegistryAuthFailed
from supervisor.registry import CredentialStore, DistributionClient, RetryPolicy
from supervisor.services import registry_credentials
from tests.support.api_world import load_world_settings
from tests.support.registry_fake import DOCKER_MANIFEST, FakeRegistry, manifest_body

pytestmark = pytest.mark.unit

REPO = "acme/app"
USER, PASSWORD = "operator", "s3cret-Pa55word"
FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)
ServerFactory = Callable[[aiohttp.web.Application], Awaitable[TestServer]]


@pytest.fixture(params=["basic", "bearer"])
async def host(request: pytest.FixtureRequest, aiohttp_server: ServerFactory) -> str:
    registry = FakeRegistry(users={USER: PASSWORD}, auth=request.param)
    registry.add_manifest(REPO, "1.0.0", manifest_body(), DOCKER_MANIFEST)
    server = await aiohttp_server(registry.app())
    return f"127.0.0.1:{server.port}"


def store_for(tmp_path: Path, **settings: str) -> CredentialStore:
    return registry_credentials(load_world_settings(tmp_path, **settings))


async def resolve(store: CredentialStore, host: str) -> str:
    async with DistributionClient(credentials=store, retry=FAST) as client:
        return await client.resolve_digest(f"{host}/{REPO}:1.0.0")


async def test_settings_credentials_answer_a_registry_not_named_anywhere(
    tmp_path: Path, host: str
) -> None:
    store = store_for(tmp_path, registry_username=USER, registry_password=PASSWORD)
    assert (await resolve(store, host)).startswith("sha256:")
    found = store.get(host)
    assert found is not None
    assert found.username == USER
    assert PASSWORD not in repr(store)


async def test_without_settings_the_same_registry_refuses(tmp_path: Path, host: str) -> None:
    with pytest.raises(RegistryAuthFailed):
        await resolve(store_for(tmp_path), host)


async def test_a_wrong_settings_password_is_refused_by_that_registry(
    tmp_path: Path, host: str
) -> None:
    store = store_for(tmp_path, registry_username=USER, registry_password="wrong-" + PASSWORD)
    with pytest.raises(RegistryAuthFailed) as refused:
        await resolve(store, host)
    assert PASSWORD not in refused.value.message


async def test_a_config_json_entry_for_the_host_keeps_precedence(tmp_path: Path, host: str) -> None:
    config = tmp_path / "config.json"
    entry = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {host: {"auth": entry}}}))
    store = store_for(
        tmp_path,
        docker_config=str(config),
        registry_username="someone-else",
        registry_password="not-this-one",
    )
    assert (await resolve(store, host)).startswith("sha256:")  # config.json's user answered


def test_settings_credentials_replace_config_json_for_a_named_mirror(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    entry = base64.b64encode(b"old:old-password").decode()
    config.write_text(json.dumps({"auths": {"mirror.test:5000": {"auth": entry}}}))
    store = store_for(
        tmp_path,
        docker_config=str(config),
        insecure_registries="mirror.test:5000",
        registry_username=USER,
        registry_password=PASSWORD,
    )
    found = store.get("mirror.test:5000")
    assert found is not None
    assert (found.username, found.password) == (USER, PASSWORD)
    hub = store.get("docker.io")  # as before, Docker Hub images get them too
    assert hub is not None
    assert hub.username == USER
