"""The settings' registry user answers the real htpasswd registry under a non-docker.io name.

The registry (Debian's distribution, ``REGISTRY_AUTH=htpasswd``) runs on ``127.0.0.1:<port>``:
not Docker Hub, not a mirror, not an insecure registry in the settings. The sidecar's own object
graph (:func:`supervisor.services.build_runtime`, from settings only) resolves the tag with the
registry client and pulls the digest with the real engine through the docker proxy; both must
authenticate with ``SUPERVISOR_REGISTRY_USERNAME``/``_PASSWORD``. Before issue 13 these were
only sent to ``docker.io``, mirrors and insecure registries, so this registry answered 401.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.api.errors import http_status
from supervisor.config import Settings, load_settings
from supervisor.exceptions import RegistryAuthFailed
from supervisor.services import build_runtime
from tests.support.dockercli import docker
from tests.support.registry_auth import (
    AuthRegistry,
    docker_with_config,
    htpasswd_registry,
    push_tiny_image,
)
from tests.support.testenv import StackTestEnv

USER = "stack-operator"
PASSWORD = secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def private_image(
    testenv: StackTestEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AuthRegistry, str, str]]:
    """(registry, pushed tag reference, its digest) on a registry that refuses anonymous use."""
    base = tmp_path_factory.mktemp("settings-credentials")
    with htpasswd_registry(testenv.registry_image, base / "auth", {USER: PASSWORD}) as registry:
        config_dir = base / "docker-config"  # only for pushing the fixture image
        config_dir.mkdir()
        docker_with_config(
            config_dir, "login", registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD
        )
        reference = f"{registry.host}/acme/app:{secrets.token_hex(3)}"
        yield registry, reference, push_tiny_image(config_dir, reference)


def settings_for(tmp_path: Path, proxy_url: str, **extra: str) -> Settings:
    for name in ("state", "backups"):
        (tmp_path / name).mkdir(exist_ok=True)
    return load_settings(
        {
            "SUPERVISOR_ENGINE_URL": proxy_url,
            "SUPERVISOR_COMPOSE_PROJECT": "private",
            "SUPERVISOR_SERVICES": "app=app",
            "SUPERVISOR_STATE_DIR": str(tmp_path / "state"),
            "SUPERVISOR_BACKUP_DIR": str(tmp_path / "backups"),
            "SUPERVISOR_SIGNATURE_POLICY": "off",
            **{f"SUPERVISOR_{key.upper()}": value for key, value in extra.items()},
        }
    )


async def test_settings_credentials_resolve_and_pull_from_a_private_registry(
    private_image: tuple[AuthRegistry, str, str], docker_proxy_url: str, tmp_path: Path
) -> None:
    registry, reference, digest = private_image
    assert not registry.host.startswith("docker.io")
    settings = settings_for(
        tmp_path, docker_proxy_url, registry_username=USER, registry_password=PASSWORD
    )
    assert not settings.registry_mirrors
    assert not settings.insecure_registries
    pinned = f"{reference.rsplit(':', 1)[0]}@{digest}"
    try:
        async with build_runtime(settings) as runtime:
            assert await runtime.registry.resolve_digest(reference) == digest
            image_id = await runtime.engine.pull(pinned)
            assert image_id.startswith("sha256:")
            assert await runtime.engine.image_present(pinned)
    finally:
        docker("rmi", "-f", pinned, check=False)


async def test_a_refused_settings_credential_is_a_502_never_the_callers_401(
    private_image: tuple[AuthRegistry, str, str], docker_proxy_url: str, tmp_path: Path
) -> None:
    registry, reference, _ = private_image
    settings = settings_for(
        tmp_path, docker_proxy_url, registry_username=USER, registry_password="wrong-" + PASSWORD
    )
    async with build_runtime(settings) as runtime:
        with pytest.raises(RegistryAuthFailed) as refused:
            await runtime.registry.resolve_digest(reference)
    assert f"registry {registry.host} refused user '{USER}'" in refused.value.message
    assert PASSWORD not in refused.value.message
    assert http_status(refused.value) == 502
