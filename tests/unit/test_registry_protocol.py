"""DistributionClient against a fake upstream registry: digests, pagination, errors, retries.

The fake (tests/support/registry_fake.py) is real HTTP on port 0; it serves
the edge cases the real test registry cannot (indexes, missing headers,
tampered content, rate limits, the Referrers API).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from supervisor.exceptions import (
    DigestMismatch,
    ManifestNotFound,
    RegistryAuthFailed,
    RegistryError,
    RegistryRateLimited,
    RegistryUnreachable,
)
from supervisor.reference import ImageReference
from supervisor.registry import (
    MANIFEST_MEDIA_TYPES,
    Credentials,
    CredentialStore,
    DistributionClient,
    RetryPolicy,
)
from tests.support.registry_fake import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    FakeRegistry,
    manifest_body,
    sha256,
)

pytestmark = pytest.mark.unit

REPO = "stacksup/app"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, max_retry_after=5)
ServerFactory = Callable[[aiohttp.web.Application], Awaitable[TestServer]]


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add_manifest(REPO, "1.0.0", manifest_body(DOCKER_MANIFEST, b"one"), DOCKER_MANIFEST)
    return registry


@pytest.fixture
async def host(aiohttp_server: ServerFactory, fake: FakeRegistry) -> str:
    server = await aiohttp_server(fake.app())
    return f"127.0.0.1:{server.port}"


@pytest.fixture
async def client() -> AsyncIterator[DistributionClient]:
    async with DistributionClient(retry=FAST, timeout=5) as registry_client:
        yield registry_client


# --- digests ---------------------------------------------------------------------------


async def test_tag_resolves_by_head_and_docker_content_digest(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    digest = await client.resolve_digest(f"{host}/{REPO}:1.0.0")

    assert digest == sha256(fake.manifests[REPO]["1.0.0"][1])
    assert [r.method for r in fake.requests] == ["HEAD"]
    accept = [t.strip() for t in fake.requests[0].headers["Accept"].split(",")]
    assert accept == list(MANIFEST_MEDIA_TYPES)
    assert accept[:2] == [OCI_INDEX, DOCKER_LIST]  # indexes first: pin the index
    assert fake.requests[0].headers["User-Agent"] == "stack-supervisor"


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST])
async def test_multi_platform_image_is_pinned_at_its_index_digest(
    client: DistributionClient, fake: FakeRegistry, host: str, index_type: str
) -> None:
    child = manifest_body(OCI_MANIFEST, b"amd64")
    child_digest = fake.add_manifest(REPO, None, child, OCI_MANIFEST)
    index_digest = fake.add_manifest(REPO, "2.0.0", manifest_body(index_type), index_type)

    assert await client.resolve_digest(f"{host}/{REPO}:2.0.0") == index_digest
    manifest = await client.get_manifest(f"{host}/{REPO}", "2.0.0")
    assert (manifest.digest, manifest.media_type, manifest.is_index) == (
        index_digest,
        index_type,
        True,
    )
    assert manifest.json()["manifests"][0]["platform"]["os"] == "linux"
    single = await client.get_manifest(f"{host}/{REPO}", child_digest)
    assert (single.media_type, single.is_index) == (OCI_MANIFEST, False)


@pytest.mark.parametrize(
    ("head_header", "head_allowed"),
    [(False, True), (True, False)],
    ids=["head-without-digest-header", "head-not-allowed"],
)
async def test_head_without_digest_falls_back_to_get_and_hashes_the_body(
    client: DistributionClient,
    fake: FakeRegistry,
    host: str,
    head_header: bool,
    head_allowed: bool,
) -> None:
    fake.head_digest_header, fake.head_allowed = head_header, head_allowed

    digest = await client.resolve_digest(f"{host}/{REPO}:1.0.0")

    assert digest == sha256(fake.manifests[REPO]["1.0.0"][1])
    assert [r.method for r in fake.requests] == ["HEAD", "GET"]


async def test_pinned_reference_is_checked_to_exist(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    digest = sha256(fake.manifests[REPO]["1.0.0"][1])
    assert await client.resolve_digest(f"{host}/{REPO}@{digest}") == digest

    unknown = "sha256:" + "0" * 64
    with pytest.raises(ManifestNotFound) as missing:
        await client.resolve_digest(ImageReference.parse(f"{host}/{REPO}:1.0.0@{unknown}"))
    assert unknown in missing.value.message
    assert f"{host}/{REPO}" in missing.value.message


async def test_manifest_by_digest_is_verified(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    digest = sha256(fake.manifests[REPO]["1.0.0"][1])
    manifest = await client.get_manifest(f"{host}/{REPO}", digest)
    assert manifest.raw == fake.manifests[REPO]["1.0.0"][1]
    assert manifest.media_type == DOCKER_MANIFEST

    fake.tampered.add(digest)
    with pytest.raises(DigestMismatch) as mismatch:
        await client.get_manifest(f"{host}/{REPO}", digest)
    assert f"expected {digest}" in mismatch.value.message
    assert host in mismatch.value.message


async def test_manifest_by_tag_whose_body_contradicts_the_digest_header(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    fake.lying_header["1.0.0"] = "sha256:" + "1" * 64
    with pytest.raises(DigestMismatch, match="content does not match its digest"):
        await client.get_manifest(f"{host}/{REPO}", "1.0.0")
    fake.head_digest_header = False  # resolve_digest must take the same GET path
    with pytest.raises(DigestMismatch):
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")


# --- blobs -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_blob_is_verified_and_size_capped(
    client: DistributionClient, fake: FakeRegistry, host: str, chunked: bool
) -> None:
    fake.chunked_blobs = chunked
    payload = b'{"critical": {"image": {}}}' * 10
    digest = fake.add_blob(REPO, payload)

    assert await client.get_blob(f"{host}/{REPO}", digest) == payload

    with pytest.raises(RegistryError, match=r"larger than the 100 bytes allowed") as big:
        await client.get_blob(f"{host}/{REPO}", digest, max_bytes=100)
    assert type(big.value) is RegistryError
    # With a Content-Length the refusal comes before reading; chunked, while reading.
    sent = "sent more" if chunked else f"sent {len(payload)} bytes"
    assert f"{sent} for {REPO}" in big.value.message

    fake.tampered.add(digest)
    with pytest.raises(DigestMismatch, match=f"blob {digest}"):
        await client.get_blob(f"{host}/{REPO}", digest)


async def test_blob_unknown_and_bad_digest(client: DistributionClient, host: str) -> None:
    with pytest.raises(ManifestNotFound, match="BLOB_UNKNOWN"):
        await client.get_blob(f"{host}/{REPO}", "sha256:" + "a" * 64)
    with pytest.raises(RegistryError, match="not a digest"):
        await client.get_blob(f"{host}/{REPO}", "latest")


# --- tags ------------------------------------------------------------------------------


async def test_list_tags_follows_link_pagination_over_three_pages(
    fake: FakeRegistry, host: str
) -> None:
    tags = ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0", "3.0.0", "3.0.1"]
    for number, tag in enumerate(tags):
        fake.add_manifest(REPO, tag, manifest_body(config=str(number).encode()), DOCKER_MANIFEST)

    async with DistributionClient(retry=FAST, tags_page_size=3) as client:
        listed = await client.list_tags(f"{host}/{REPO}")

    assert listed == tags
    pages = [r for r in fake.requests if r.path.endswith("/tags/list")]
    assert len(pages) == 3
    assert [r.query.get("last") for r in pages] == [None, ["1.2.0"], ["3.0.0"]]
    assert all(r.query["n"] == ["3"] for r in pages)


# --- errors ----------------------------------------------------------------------------


async def test_missing_tag_and_repository_are_manifest_not_found_without_retry(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    with pytest.raises(ManifestNotFound) as tag:
        await client.resolve_digest(f"{host}/{REPO}:9.9.9")
    assert f"tag 9.9.9 of {host}/{REPO} not found" in tag.value.message
    assert "MANIFEST_UNKNOWN" in tag.value.message
    assert tag.value.details == {"registry": host, "repository": REPO, "status": 404}

    with pytest.raises(ManifestNotFound) as repo:
        await client.list_tags(f"{host}/stacksup/nope")
    assert f"repository stacksup/nope does not exist on registry {host}" in repo.value.message
    # HEAD, then GET for the error's explanation; then one tags request: nothing retried.
    assert [r.method for r in fake.requests] == ["HEAD", "GET", "GET"]


async def test_rate_limit_honours_retry_after_then_succeeds(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    fake.failures = [(429, {"Retry-After": "1"})]
    started = time.monotonic()

    digest = await client.resolve_digest(f"{host}/{REPO}:1.0.0")

    assert time.monotonic() - started >= 0.95
    assert digest == sha256(fake.manifests[REPO]["1.0.0"][1])
    assert len(fake.requests) == 2


async def test_rate_limit_longer_than_the_cap_is_reported_not_waited(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    fake.failures = [(429, {"Retry-After": "3600"})]
    started = time.monotonic()
    with pytest.raises(RegistryRateLimited) as limited:
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    assert time.monotonic() - started < 1
    assert "retry after 3600 s" in limited.value.message
    assert limited.value.details["retry_after"] == 3600
    assert len(fake.requests) == 1


async def test_server_errors_are_retried_a_bounded_number_of_times(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    fake.failures = [(502, {}), (503, {})]
    assert await client.list_tags(f"{host}/{REPO}") == ["1.0.0"]
    assert len(fake.requests) == 3

    fake.requests.clear()
    fake.failures = [(503, {})] * 5
    with pytest.raises(RegistryError) as failed:
        await client.list_tags(f"{host}/{REPO}")
    assert type(failed.value) is RegistryError
    assert failed.value.details["status"] == 503
    assert f"registry {host} failed on tags of {host}/{REPO} (503)" in failed.value.message
    assert len(fake.requests) == FAST.attempts


async def test_forbidden_is_auth_failed_denied_and_not_retried(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    fake.denied.add(REPO)
    with pytest.raises(RegistryAuthFailed, match=f"registry {host} denied access to {REPO}"):
        await client.resolve_digest(f"{host}/{REPO}:1.0.0")
    assert len(fake.requests) == 1


async def test_closed_port_is_unreachable(client: DistributionClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RegistryUnreachable) as unreachable:
        await client.resolve_digest(f"127.0.0.1:{port}/{REPO}:1.0.0")
    message = unreachable.value.message
    assert f"cannot reach registry 127.0.0.1:{port} (via http://127.0.0.1:{port})" in message
    assert isinstance(unreachable.value.__cause__, aiohttp.ClientConnectorError)


async def test_slow_registry_times_out_as_unreachable(fake: FakeRegistry, host: str) -> None:
    fake.delay = 2
    async with DistributionClient(retry=RetryPolicy(attempts=1), timeout=0.3) as client:
        with pytest.raises(RegistryUnreachable, match="did not answer in time"):
            await client.resolve_digest(f"{host}/{REPO}:1.0.0")


# --- referrers -------------------------------------------------------------------------


async def test_referrers_api_lists_and_filters(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    subject = sha256(fake.manifests[REPO]["1.0.0"][1])
    bundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
    sbom = "application/spdx+json"
    fake.referrers_api = True
    fake.referrers[subject] = [
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"a"), "size": 1, "artifactType": bundle},
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"b"), "size": 1, "artifactType": sbom},
    ]
    every = await client.get_referrers(f"{host}/{REPO}", subject)
    assert every is not None
    assert [m["artifactType"] for m in every] == [bundle, sbom]

    for server_filters in (True, False):
        fake.filters_applied = server_filters
        only = await client.get_referrers(f"{host}/{REPO}", subject, artifact_type=bundle)
        assert only is not None
        assert [m["digest"] for m in only] == [sha256(b"a")]
    assert fake.requests[-1].query["artifactType"] == [bundle]
    assert fake.requests[-1].headers["Accept"] == OCI_INDEX

    assert await client.get_referrers(f"{host}/{REPO}", sha256(b"nothing")) == []


async def test_registry_without_referrers_api_gives_none(
    client: DistributionClient, fake: FakeRegistry, host: str
) -> None:
    subject = sha256(fake.manifests[REPO]["1.0.0"][1])
    assert await client.get_referrers(f"{host}/{REPO}", subject) is None
    fake.failures = [(405, {})]
    assert await client.get_referrers(f"{host}/{REPO}", subject) is None
    fake.failures = [(500, {})] * 3
    with pytest.raises(RegistryError, match="500"):
        await client.get_referrers(f"{host}/{REPO}", subject)


# --- endpoint mapping and sessions -----------------------------------------------------


async def test_mirror_mapping_dials_the_mapped_url_and_keeps_the_reference_host(
    fake: FakeRegistry, host: str
) -> None:
    fake.auth, fake.users = "basic", {"mirror-user": "mirror-pass"}
    credentials = CredentialStore(
        {"registry.example:5000": Credentials("mirror-user", "mirror-pass")}
    )
    ref = ImageReference.parse(f"registry.example:5000/{REPO}:1.0.0")
    mirrors = {"registry.example:5000": f"http://{host}"}

    async with DistributionClient(mirrors=mirrors, credentials=credentials, retry=FAST) as client:
        assert str(client.base_url(ref)) == f"http://{host}"
        pinned = ref.with_digest(await client.resolve_digest(ref))
        tags = await client.list_tags(ref)

    assert pinned.registry == "registry.example:5000"
    assert (
        str(pinned)
        == f"registry.example:5000/{REPO}:1.0.0@{sha256(fake.manifests[REPO]['1.0.0'][1])}"
    )
    assert pinned.by_digest().startswith(f"registry.example:5000/{REPO}@sha256:")
    assert tags == ["1.0.0"]
    assert fake.requests[-1].headers["Host"] == host
    assert fake.requests[-1].headers["Authorization"].startswith("Basic ")


async def test_mirror_errors_name_the_host_and_the_url_dialled(
    fake: FakeRegistry, host: str
) -> None:
    mirrors = {"registry.example:5000": f"http://{host}"}
    async with DistributionClient(mirrors=mirrors, retry=FAST) as client:
        with pytest.raises(ManifestNotFound) as missing:
            await client.resolve_digest(f"registry.example:5000/{REPO}:4.0.0")
    assert f"registry.example:5000 (via http://{host})" in missing.value.message


async def test_passed_session_is_left_open_and_owned_session_is_closed(host: str) -> None:
    async with aiohttp.ClientSession() as session:
        client = DistributionClient(session=session)
        assert await client.list_tags(f"{host}/{REPO}") == ["1.0.0"]
        await client.close()
        assert not session.closed

    owned = DistributionClient()
    await owned.list_tags(f"{host}/{REPO}")
    session = owned._transport.session
    await owned.close()
    assert session.closed
    with pytest.raises(RuntimeError, match="used after close"):
        await owned.list_tags(f"{host}/{REPO}")
