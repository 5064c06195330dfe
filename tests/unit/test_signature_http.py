"""Signatures through the real ``DistributionClient`` over HTTP, against the fake upstream.

The real registry of the test environment has no Referrers API; this fake
(tests/support/registry_fake.py, real HTTP on port 0) has one, so the OCI 1.1
path is proven end to end here: discovery by ``GET /v2/<name>/referrers/<digest>``,
a registry that ignores the ``artifactType`` filter, and content the registry
altered in transit (a registry error, never "unsigned" nor "tampered signature").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from supervisor.registry import DistributionClient, RetryPolicy
from supervisor.signatures.models import Layout, Outcome, Policy, SignatureVerdict
from supervisor.signatures.verifier import SignaturePolicyVerifier
from tests.support.cosign_signer import (
    OCI_MANIFEST,
    Upload,
    bundle_upload,
    classic_signature,
    classic_upload,
    dsse_bundle,
    sha256_digest,
)
from tests.support.registry_fake import DOCKER_MANIFEST, FakeRegistry, manifest_body
from tests.support.signer_world import SigningWorld

REPO = "stacksup/app"
FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)
ServerFactory = Callable[[aiohttp.web.Application], Awaitable[TestServer]]


@pytest.fixture
def world(tmp_path: Path) -> SigningWorld:
    return SigningWorld.create(tmp_path)


@pytest.fixture
def upstream() -> FakeRegistry:
    registry = FakeRegistry(referrers_api=True)
    registry.add_manifest(REPO, "1.4.0", manifest_body(DOCKER_MANIFEST, b"app"), DOCKER_MANIFEST)
    return registry


@pytest.fixture
async def host(aiohttp_server: ServerFactory, upstream: FakeRegistry) -> str:
    server = await aiohttp_server(upstream.app())
    return f"127.0.0.1:{server.port}"


@pytest.fixture
async def client() -> AsyncIterator[DistributionClient]:
    async with DistributionClient(retry=FAST, timeout=5) as registry_client:
        yield registry_client


def image(upstream: FakeRegistry) -> dict[str, Any]:
    media_type, body = upstream.manifests[REPO]["1.4.0"]
    return {"mediaType": media_type, "digest": sha256_digest(body), "size": len(body)}


def publish(upstream: FakeRegistry, upload: Upload) -> None:
    """Store an upload; referrer manifests are also listed by the Referrers API."""
    for data in upload.blobs.values():
        upstream.add_blob(REPO, data)
    for tag, media_type, body in upload.manifests:
        digest = upstream.add_manifest(REPO, tag, body, media_type)
        document = json.loads(body)
        if "subject" in document:
            upstream.referrers.setdefault(document["subject"]["digest"], []).append(
                {"mediaType": media_type, "digest": digest, "size": len(body),
                 "artifactType": document.get("artifactType")}
            )  # fmt: skip


async def verdict(
    client: DistributionClient, world: SigningWorld, host: str, upstream: FakeRegistry
) -> SignatureVerdict:
    verifier = SignaturePolicyVerifier(client, world.signers(), lambda _s: Policy.ENFORCE)
    return await verifier.verify("app", f"{host}/{REPO}@{image(upstream)['digest']}")


async def test_bundle_found_through_the_referrers_api(
    client: DistributionClient, world: SigningWorld, host: str, upstream: FakeRegistry
) -> None:
    subject = image(upstream)
    publish(upstream, bundle_upload(subject, [dsse_bundle(world.keyless(), subject["digest"])]))
    result = await verdict(client, world, host, upstream)
    assert (result.outcome, result.layout) == (Outcome.VERIFIED, Layout.BUNDLE), result.reason
    paths = [r.path for r in upstream.requests]
    assert f"/v2/{REPO}/referrers/{subject['digest']}" in paths
    fallback = f"/v2/{REPO}/manifests/{subject['digest'].replace(':', '-')}"
    assert fallback not in paths  # the API answered: the referrers tag is not consulted


async def test_other_referrers_are_skipped_when_the_registry_ignores_the_filter(
    client: DistributionClient, world: SigningWorld, host: str, upstream: FakeRegistry
) -> None:
    upstream.filters_applied = False
    subject = image(upstream)
    sbom = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 10,
            "artifactType": "application/spdx+json"}  # fmt: skip
    upstream.referrers[subject["digest"]] = [sbom]
    publish(upstream, bundle_upload(subject, [dsse_bundle(world.key, subject["digest"])]))
    result = await verdict(client, world, host, upstream)
    assert result.verified, result.reason
    assert f"/v2/{REPO}/manifests/{sbom['digest']}" not in [r.path for r in upstream.requests]


async def test_payload_altered_by_the_registry_is_a_registry_error(
    client: DistributionClient, world: SigningWorld, host: str, upstream: FakeRegistry
) -> None:
    digest = image(upstream)["digest"]
    layer = classic_signature(world.key, f"{host}/{REPO}", digest)
    publish(upstream, classic_upload(digest, [layer]))
    upstream.tampered.add(sha256_digest(layer.payload))
    result = await verdict(client, world, host, upstream)
    assert result.outcome is Outcome.REGISTRY_ERROR, result.reason
    assert "does not match its digest" in result.reason


async def test_registry_failure_is_a_registry_error(
    client: DistributionClient, world: SigningWorld, host: str, upstream: FakeRegistry
) -> None:
    upstream.failures = [(500, {})] * 8
    result = await verdict(client, world, host, upstream)
    assert result.outcome is Outcome.REGISTRY_ERROR, result.reason
    assert result.refused
