"""Registry authentication: Bearer token flow, Basic auth, credentials, and no leaked secrets."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from supervisor.exceptions import ConfigError, RegistryAuthFailed
from supervisor.registry import Credentials, CredentialStore, DistributionClient, RetryPolicy
from supervisor.registry.auth import Challenge, parse_challenges
from tests.support.registry_fake import DOCKER_MANIFEST, FakeRegistry, manifest_body, sha256

pytestmark = pytest.mark.unit

REPO = "stacksup/app"
OTHER = "stacksup/other"
PASSWORD = "s3cret-Pa55word"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)
ServerFactory = Callable[[aiohttp.web.Application], Awaitable[TestServer]]


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry(users={"alice": PASSWORD})
    registry.add_manifest(REPO, "1.0.0", manifest_body(), DOCKER_MANIFEST)
    registry.add_manifest(OTHER, "2.0.0", manifest_body(config=b"x"), DOCKER_MANIFEST)
    return registry


@pytest.fixture
async def host(aiohttp_server: ServerFactory, fake: FakeRegistry) -> str:
    server = await aiohttp_server(fake.app())
    return f"127.0.0.1:{server.port}"


def docker_config(tmp_path: Path, auths: dict[str, object], **extra: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths, **extra}))
    return path


def basic_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def client_for(
    host: str, user: str | None = "alice", password: str = PASSWORD
) -> DistributionClient:
    store = CredentialStore({host: Credentials(user, password)} if user else None)
    return DistributionClient(credentials=store, retry=FAST)


# --- Bearer ----------------------------------------------------------------------------


async def test_bearer_token_flow_with_scope_and_caching(
    fake: FakeRegistry, host: str, tmp_path: Path
) -> None:
    fake.auth = "bearer"
    store = CredentialStore.from_docker_config(
        docker_config(tmp_path, {f"http://{host}/v2/": basic_entry("alice", PASSWORD)})
    )
    async with DistributionClient(credentials=store, retry=FAST) as client:
        digest = await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        await client.get_manifest(f"{host}/{REPO}", digest)
        assert await client.list_tags(f"{host}/{REPO}") == ["1.0.0"]

    (token_request,) = fake.token_requests
    assert token_request.query == {
        "service": ["fake-registry"],
        "scope": [f"repository:{REPO}:pull"],
    }
    assert (
        token_request.headers["Authorization"] == "Basic " + basic_entry("alice", PASSWORD)["auth"]
    )
    statuses = [r.headers.get("Authorization", "")[:7] for r in fake.requests]
    assert statuses == ["", "Bearer ", "Bearer ", "Bearer "]  # one challenge, then the cached token


async def test_each_repository_scope_gets_its_own_token(fake: FakeRegistry, host: str) -> None:
    fake.auth = "bearer"
    async with client_for(host) as client:
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        await client.resolve_digest(f"{host}/{OTHER}:2.0.0")
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    scopes = [r.query["scope"] for r in fake.token_requests]
    assert scopes == [[f"repository:{REPO}:pull"], [f"repository:{OTHER}:pull"]]


async def test_anonymous_token_read_from_access_token(fake: FakeRegistry, host: str) -> None:
    fake.auth, fake.anonymous_tokens, fake.token_field = "bearer", True, "access_token"
    fake.token_lifetime = None  # the spec's default of 60 s applies: the token stays cached
    async with DistributionClient(retry=FAST) as client:
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    (token_request,) = fake.token_requests
    assert "Authorization" not in token_request.headers


async def test_token_is_renewed_after_expires_in(fake: FakeRegistry, host: str) -> None:
    fake.auth, fake.token_lifetime = "bearer", 1
    async with client_for(host) as client:
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        assert len(fake.token_requests) == 1
        await asyncio.sleep(1.0)
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    assert len(fake.token_requests) == 2


async def test_token_revoked_by_the_registry_is_fetched_again(
    fake: FakeRegistry, host: str
) -> None:
    fake.auth = "bearer"
    async with client_for(host) as client:
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        fake.tokens.clear()
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    assert len(fake.token_requests) == 2


async def test_bearer_with_wrong_password_fails_without_retry_or_leak(
    fake: FakeRegistry, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.auth = "bearer"
    caplog.set_level(logging.DEBUG)
    async with client_for(host, password="wrong-" + PASSWORD) as client:
        with pytest.raises(RegistryAuthFailed) as refused:
            await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    message = refused.value.message
    assert "refused the credentials of user 'alice'" in message
    assert host in message
    assert REPO in message
    assert PASSWORD not in message + caplog.text
    assert len(fake.token_requests) == 1


async def test_bearer_without_credentials_when_anonymous_is_refused(
    fake: FakeRegistry, host: str
) -> None:
    fake.auth = "bearer"
    async with DistributionClient(retry=FAST) as client:
        with pytest.raises(RegistryAuthFailed, match="refused anonymous access"):
            await client.list_tags(f"{host}/{REPO}")


async def test_identity_token_is_exchanged_as_refresh_token(
    fake: FakeRegistry, host: str, tmp_path: Path
) -> None:
    fake.auth, fake.users["<token>"] = "bearer", "refresh-abc"
    entry = {"auth": base64.b64encode(b"<token>:").decode(), "identitytoken": "refresh-abc"}
    store = CredentialStore.from_docker_config(docker_config(tmp_path, {host: entry}))
    async with DistributionClient(credentials=store, retry=FAST) as client:
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    (token_request,) = fake.token_requests
    assert token_request.method == "POST"


async def test_credentials_are_not_sent_to_a_plain_http_token_service_elsewhere(
    fake: FakeRegistry, host: str
) -> None:
    fake.auth, fake.realm = "bearer", "http://auth.example/token"
    async with client_for(host) as client:
        with pytest.raises(RegistryAuthFailed, match="refusing to send them unencrypted"):
            await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    assert fake.token_requests == []


# --- Basic -----------------------------------------------------------------------------


async def test_basic_auth_is_answered_then_sent_pre_emptively(
    fake: FakeRegistry, host: str
) -> None:
    fake.auth = "basic"
    async with client_for(host) as client:
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        await client.list_tags(f"{host}/{OTHER}")
    assert [bool(r.headers.get("Authorization")) for r in fake.requests] == [False, True, True]


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, "requires a user name and password for stacksup/app (Basic auth) and none"),
        ("alice", "refused user 'alice' for stacksup/app"),
    ],
    ids=["no-credentials", "wrong-password"],
)
async def test_basic_auth_failures(
    fake: FakeRegistry, host: str, user: str | None, expected: str
) -> None:
    fake.auth = "basic"
    async with client_for(host, user=user, password="not-it") as client:
        with pytest.raises(RegistryAuthFailed, match=re.escape(expected)) as refused:
            await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    assert refused.value.details["status"] == 401
    assert "not-it" not in refused.value.message
    assert len(fake.requests) <= 2  # never retried


# --- challenges ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull"',
            [Challenge("bearer", {"realm": "https://auth.docker.io/token",
                                  "service": "registry.docker.io",
                                  "scope": "repository:library/alpine:pull"})],
        ),
        ('Basic realm="test"', [Challenge("basic", {"realm": "test"})]),
        ("Basic", [Challenge("basic", {})]),
        (
            'Bearer realm="https://r/t",scope="repository:a:pull,push", Basic realm="x y"',
            [Challenge("bearer", {"realm": "https://r/t", "scope": "repository:a:pull,push"}),
             Challenge("basic", {"realm": "x y"})],
        ),
        ("BEARER Realm=https://r/t, Service = s",
         [Challenge("bearer", {"realm": "https://r/t", "service": "s"})]),
        ('Basic realm="say \\"hi\\""', [Challenge("basic", {"realm": 'say "hi"'})]),
        ("", []),
    ],
)  # fmt: skip
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges([header]) == expected


# --- credential store ------------------------------------------------------------------


def test_docker_config_entries_and_hub_spellings(tmp_path: Path) -> None:
    path = docker_config(
        tmp_path,
        {
            "https://index.docker.io/v1/": basic_entry("hubuser", "hubpass"),
            "registry.example:5000": {"username": "u", "password": "p"},
            "https://ghcr.io": basic_entry("gh", "pa:ss"),  # a colon in the password
            "empty.example": {},
        },
    )
    store = CredentialStore.from_docker_config(path)
    assert store.get("docker.io") == Credentials("hubuser", "hubpass")
    assert store.get("registry.example:5000") == Credentials("u", "p")
    assert store.get("ghcr.io") == Credentials("gh", "pa:ss")
    assert store.get("empty.example") is None
    assert store.get("other.example") is None
    store.add("registry.example:5000", "settings-user", "settings-pass")
    assert store.get("registry.example:5000") == Credentials("settings-user", "settings-pass")
    assert "hubpass" not in repr(store) + repr(store.get("docker.io"))


def test_missing_docker_config_is_anonymous(tmp_path: Path) -> None:
    assert CredentialStore.from_docker_config(tmp_path / "absent.json").get("docker.io") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "cannot read Docker config"),
        ("[]", "is not a JSON object"),
        ('{"auths": {"r.example": {"auth": "!!!"}}}', "is not base64 of user:password"),
        ('{"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}}', "is not base64 of user:password"),
        ('{"auths": {"r.example": "x"}}', "is not an object"),
    ],
)
def test_broken_docker_config_is_a_config_error(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason) as refused:
        CredentialStore.from_docker_config(path)
    assert str(path) in refused.value.message


def test_credential_helpers_are_reported_once_per_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = docker_config(
        tmp_path,
        {"inline.example": basic_entry("u", "p")},
        credsStore="desktop",
        credHelpers={"123.dkr.ecr.example": "ecr-login"},
    )
    store = CredentialStore.from_docker_config(path)
    for _ in range(3):
        assert store.get("123.dkr.ecr.example") is None
        assert store.get("ghcr.io") is None
        assert store.get("inline.example") == Credentials("u", "p")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'ecr-login' for registry 123.dkr.ecr.example" in warnings[0]
    assert "'desktop' for registry ghcr.io" in warnings[1]
    assert "p" not in {w.split()[-1] for w in warnings}


async def test_no_secret_reaches_the_log_during_a_full_flow(
    fake: FakeRegistry, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.auth = "bearer"
    caplog.set_level(logging.DEBUG)
    async with client_for(host) as client:
        digest = await client.resolve_digest(f"{host}/{REPO}:1.0.0")
        await client.get_manifest(f"{host}/{REPO}", digest)
    assert digest == sha256(fake.manifests[REPO]["1.0.0"][1])
    assert caplog.text  # the flow was logged at debug level ...
    secrets = [PASSWORD, basic_entry("alice", PASSWORD)["auth"], *fake.tokens]
    assert not [s for s in secrets if s in caplog.text]  # ... without any secret
