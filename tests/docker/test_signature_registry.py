"""Signatures on the REAL registry (Debian's distribution 2.8, no Referrers API).

Each test copies fakeapp 1.0.0 and 1.1.0 (same digests as ``testenv.fakeapp``,
blobs mounted, nothing rebuilt) into this session's own repository, signs them
there the way cosign does, and runs the product's verifier through
``DistributionClient``. 1.1.0 stays unsigned. Everything a test pushed is deleted
afterwards; fakeapp's own repository is never written to, so other tests never
see these signatures.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from supervisor.registry import DistributionClient, RetryPolicy
from supervisor.signatures.models import Layout, Outcome, Policy, SignatureVerdict
from supervisor.signatures.signers import TrustedSigners
from supervisor.signatures.verifier import SignaturePolicyVerifier
from tests.support.cosign_signer import (
    KeySigner,
    Signer,
    bundle_upload,
    classic_signature,
    classic_upload,
    cosign_statement,
    dsse_bundle,
)
from tests.support.signer_pki import FulcioCA
from tests.support.signer_registry import RegistryWriter
from tests.support.signer_world import IDENTITY, ISSUER, SigningWorld
from tests.support.testenv import StackTestEnv

FAST = RetryPolicy(attempts=2, backoff=0.05)
# One repository per pytest session (concurrent sessions never meet); every test deletes
# what it pushed, so the next one starts from unsigned copies again.
SESSION_REPOSITORY = f"stacksup/sigtest-{secrets.token_hex(4)}"


@dataclass
class SignedRepository:
    writer: RegistryWriter
    client: DistributionClient
    host: str
    repository: str
    images: dict[str, dict[str, Any]]  # version -> descriptor

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def pinned(self, version: str = "1.0.0") -> str:
        return f"{self.name}@{self.images[version]['digest']}"

    def digest(self, version: str = "1.0.0") -> str:
        return str(self.images[version]["digest"])

    async def sign_classic(self, signer: Signer, version: str = "1.0.0", **options: Any) -> None:
        digest = options.pop("signed_digest", self.digest(version))
        reference = options.pop("docker_reference", self.name)
        layer = classic_signature(signer, reference, digest, **options)
        await self.writer.push(self.repository, classic_upload(self.digest(version), [layer]))

    async def sign_bundle(self, signer: Signer, version: str = "1.0.0", **options: Any) -> None:
        bundle = dsse_bundle(signer, self.digest(version), **options)
        await self.writer.push(self.repository, bundle_upload(self.images[version], [bundle]))

    async def verdict(
        self, signers: TrustedSigners, version: str = "1.0.0", policy: Policy = Policy.ENFORCE
    ) -> SignatureVerdict:
        verifier = SignaturePolicyVerifier(self.client, signers, lambda _s: policy)
        return await verifier.verify("app", self.pinned(version))


@pytest.fixture
def world(tmp_path: Path) -> SigningWorld:
    return SigningWorld.create(tmp_path)


@pytest.fixture
async def repo(testenv: StackTestEnv) -> AsyncIterator[SignedRepository]:
    source = testenv.fakeapp["1.0.0"].repository.split("/", 1)[1]
    repository = SESSION_REPOSITORY
    async with (
        aiohttp.ClientSession() as session,
        DistributionClient(retry=FAST, timeout=10) as client,
    ):
        writer = RegistryWriter(session, testenv.registry)
        images = {
            version: await writer.copy_image(source, repository, testenv.fakeapp[version].digest)
            for version in ("1.0.0", "1.1.0")
        }
        try:
            yield SignedRepository(writer, client, testenv.registry, repository, images)
        finally:
            await writer.delete_pushed()


async def test_copied_images_keep_fakeapps_digests(
    repo: SignedRepository, testenv: StackTestEnv
) -> None:
    for version in ("1.0.0", "1.1.0"):
        assert (
            await repo.client.resolve_digest(repo.pinned(version))
            == testenv.fakeapp[version].digest
        )
    assert await repo.client.get_referrers(repo.name, repo.digest()) is None  # no Referrers API


async def test_unsigned_release_is_refused_as_unsigned(
    repo: SignedRepository, world: SigningWorld
) -> None:
    await repo.sign_classic(world.key)  # 1.0.0 only
    verdict = await repo.verdict(world.signers(), version="1.1.0")
    assert (verdict.outcome, verdict.refused) == (Outcome.UNSIGNED, True)
    assert (
        await repo.verdict(world.signers(), version="1.1.0", policy=Policy.WARN)
    ).refused is False


FORMATS: dict[str, tuple[str, Callable[[SigningWorld], Signer], Layout]] = {
    "classic-key": ("classic", lambda w: w.key, Layout.CLASSIC),
    "classic-keyless": ("classic", lambda w: w.keyless(), Layout.CLASSIC),
    "bundle-key": ("bundle", lambda w: w.key, Layout.BUNDLE),
    "bundle-keyless": ("bundle", lambda w: w.keyless(), Layout.BUNDLE),
}


@pytest.mark.parametrize("case", FORMATS, ids=list(FORMATS))
async def test_every_format_is_verified_on_the_real_registry(
    repo: SignedRepository, world: SigningWorld, case: str
) -> None:
    layout, make, expected = FORMATS[case]
    signer = make(world)
    if layout == "classic":
        await repo.sign_classic(signer)
    else:
        await repo.sign_bundle(signer)
    verdict = await repo.verdict(world.signers())
    assert (verdict.outcome, verdict.layout) == (Outcome.VERIFIED, expected), verdict.reason
    assert verdict.signer == (
        f"key {world.key.fingerprint}"
        if isinstance(signer, KeySigner)
        else f"{IDENTITY} from {ISSUER}"
    )


EARLIER = datetime.now(UTC) - timedelta(hours=2)
BAD: dict[str, tuple[str, Callable[[SigningWorld, SignedRepository], dict[str, Any]], Outcome]] = {
    "another-key": ("classic", lambda w, r: {"signer": KeySigner(log=w.log)}, Outcome.WRONG_KEY),
    "another-key-bundle": ("bundle", lambda w, r: {"signer": KeySigner()}, Outcome.WRONG_KEY),
    "altered-payload": ("classic", lambda w, r: {"alter_payload": True}, Outcome.SIGNATURE_INVALID),
    "altered-signature": ("bundle", lambda w, r: {"alter_signature": True}, Outcome.SIGNATURE_INVALID),
    "another-digest": (
        "classic", lambda w, r: {"signed_digest": r.digest("1.1.0")}, Outcome.DIGEST_MISMATCH,
    ),
    "another-digest-bundle": (
        "bundle", lambda w, r: {"statement": cosign_statement(r.digest("1.1.0"))},
        Outcome.DIGEST_MISMATCH,
    ),
    "expired-certificate": (
        "classic", lambda w, r: {"signer": w.keyless(not_before=EARLIER)}, Outcome.CERTIFICATE_EXPIRED,
    ),
    "wrong-identity": (
        "bundle", lambda w, r: {"signer": w.keyless(identity="mallory@example.com")},
        Outcome.WRONG_IDENTITY,
    ),
    "wrong-issuer": (
        "classic", lambda w, r: {"signer": w.keyless(issuer="https://evil.example")},
        Outcome.WRONG_ISSUER,
    ),
    "untrusted-ca": (
        "bundle", lambda w, r: {"signer": w.keyless(ca=FulcioCA(name="rogue"))},
        Outcome.UNTRUSTED_CERTIFICATE,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
async def test_bad_signature_is_refused_with_its_own_outcome(
    repo: SignedRepository, world: SigningWorld, case: str
) -> None:
    layout, make, outcome = BAD[case]
    options = make(world, repo)
    signer = options.pop("signer", world.key)
    if layout == "classic":
        await repo.sign_classic(signer, **options)
    else:
        await repo.sign_bundle(signer, **options)
    verdict = await repo.verdict(world.signers())
    assert (verdict.verified, verdict.outcome) == (False, outcome), verdict.reason
    assert verdict.refused


async def test_strict_reference_on_the_real_registry(
    repo: SignedRepository, world: SigningWorld
) -> None:
    await repo.sign_classic(world.key, docker_reference=f"{repo.host}/stacksup/fakeapp")
    assert (await repo.verdict(world.signers())).verified  # like cosign: name ignored
    strict = await repo.verdict(world.signers(strict=True))
    assert strict.outcome is Outcome.REFERENCE_MISMATCH, strict.reason


async def test_unreachable_registry_is_a_registry_error_not_unsigned(world: SigningWorld) -> None:
    async with DistributionClient(retry=FAST, timeout=2) as client:
        verifier = SignaturePolicyVerifier(client, world.signers(), lambda _s: Policy.ENFORCE)
        verdict = await verifier.verify("app", f"127.0.0.1:9/stacksup/fakeapp@sha256:{'a' * 64}")
    assert verdict.outcome is Outcome.REGISTRY_ERROR, verdict.reason
    assert verdict.refused
