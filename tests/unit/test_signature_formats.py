"""Every cosign format verified, and key-based bad input refused, each with its own outcome.

Signatures are made by the test signer exactly as cosign lays them out and read
back through the ``RegistryClient`` protocol (an in-memory registry here; the
real registry in tests/docker/test_signature_registry.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.signatures.models import Layout, Outcome, Policy
from tests.support.cosign_signer import (
    ClassicLayer,
    KeySigner,
    classic_signature,
    classic_upload,
    cosign_statement,
    dsse_bundle,
)
from tests.support.signer_stage import NAME, REPOSITORY, Stage
from tests.support.signer_world import IDENTITY, ISSUER, SigningWorld


@pytest.fixture
def world(tmp_path: Path) -> SigningWorld:
    return SigningWorld.create(tmp_path)


@pytest.fixture
def stage() -> Stage:
    return Stage()


# --- accepted ---------------------------------------------------------------------------


async def test_classic_key_based_signature_is_verified(world: SigningWorld, stage: Stage) -> None:
    stage.classic(classic_signature(world.key, NAME, stage.digest))
    verdict = await stage.verdict(world.signers(keyless=False))
    assert (verdict.verified, verdict.outcome, verdict.layout) == (
        True,
        Outcome.VERIFIED,
        Layout.CLASSIC,
    )
    assert verdict.signer == f"key {world.key.fingerprint}"
    assert verdict.image == stage.pinned
    assert not verdict.refused


async def test_classic_key_based_signature_without_rekor_annotation_is_verified(
    world: SigningWorld, stage: Stage
) -> None:
    stage.classic(classic_signature(KeySigner(world.key.key), NAME, stage.digest))
    assert (await stage.verdict(world.signers(keyless=False))).verified


@pytest.mark.parametrize("regexp", [False, True], ids=["exact", "regexp"])
async def test_classic_keyless_signature_is_verified(
    world: SigningWorld, stage: Stage, regexp: bool
) -> None:
    stage.classic(classic_signature(world.keyless(), NAME, stage.digest))
    verdict = await stage.verdict(world.signers(key=False, regexp=regexp))
    assert (verdict.outcome, verdict.layout) == (Outcome.VERIFIED, Layout.CLASSIC), verdict.reason
    assert verdict.signer == f"{IDENTITY} from {ISSUER}"


@pytest.mark.parametrize("referrers_api", [False, True], ids=["referrers-tag", "referrers-api"])
async def test_key_based_bundle_is_verified(world: SigningWorld, referrers_api: bool) -> None:
    stage = Stage()
    stage.registry.referrers_api = referrers_api
    stage.bundles(dsse_bundle(world.key, stage.digest))
    verdict = await stage.verdict(world.signers(keyless=False))
    assert (verdict.outcome, verdict.layout) == (Outcome.VERIFIED, Layout.BUNDLE), verdict.reason
    assert verdict.signer == f"key {world.key.fingerprint}"
    fallback_fetched = ("manifest", stage.digest.replace(":", "-")) in stage.registry.calls
    assert fallback_fetched is not referrers_api


@pytest.mark.parametrize("referrers_api", [False, True], ids=["referrers-tag", "referrers-api"])
async def test_keyless_bundle_is_verified(world: SigningWorld, referrers_api: bool) -> None:
    stage = Stage()
    stage.registry.referrers_api = referrers_api
    stage.bundles(dsse_bundle(world.keyless(), stage.digest))
    verdict = await stage.verdict(world.signers(key=False))
    assert (verdict.outcome, verdict.layout) == (Outcome.VERIFIED, Layout.BUNDLE), verdict.reason
    assert verdict.signer == f"{IDENTITY} from {ISSUER}"


async def test_one_good_signature_among_bad_ones_is_enough(
    world: SigningWorld, stage: Stage
) -> None:
    stage.classic(
        classic_signature(KeySigner(), NAME, stage.digest),
        classic_signature(world.key, NAME, stage.digest),
    )
    stage.bundles(dsse_bundle(world.key, stage.digest, alter_payload=True))
    assert (await stage.verdict(world.signers())).verified


async def test_docker_reference_is_ignored_by_default_like_cosign(
    world: SigningWorld, stage: Stage
) -> None:
    stage.classic(classic_signature(world.key, "mirror.example/other/app", stage.digest))
    assert (await stage.verdict(world.signers(keyless=False))).verified


async def test_strict_reference_accepts_the_same_repository(
    world: SigningWorld, stage: Stage
) -> None:
    stage.classic(classic_signature(world.key, NAME, stage.digest))
    assert (await stage.verdict(world.signers(keyless=False, strict=True))).verified


async def test_strict_reference_accepts_a_bundle_without_subject_name(
    world: SigningWorld, stage: Stage
) -> None:
    stage.bundles(dsse_bundle(world.key, stage.digest))  # cosign v3 writes no name
    assert (await stage.verdict(world.signers(keyless=False, strict=True))).verified


# --- refused ----------------------------------------------------------------------------


async def test_unsigned_image_is_refused_as_unsigned(world: SigningWorld, stage: Stage) -> None:
    verdict = await stage.verdict(world.signers())
    assert (verdict.verified, verdict.outcome, verdict.refused) == (False, Outcome.UNSIGNED, True)
    assert "no signature found" in verdict.reason


async def test_signature_of_another_image_does_not_count(world: SigningWorld, stage: Stage) -> None:
    other = stage.other["digest"]
    stage.registry.push(
        REPOSITORY, classic_upload(other, [classic_signature(world.key, NAME, other)])
    )
    verdict = await stage.verdict(world.signers())
    assert verdict.outcome is Outcome.UNSIGNED


CASES: dict[str, tuple[Callable[[SigningWorld, Stage], ClassicLayer], Outcome, str]] = {
    # name: (how the classic layer is made, outcome, words in the reason)
    "classic-another-key": (
        lambda w, s: classic_signature(KeySigner(log=w.log), NAME, s.digest),
        Outcome.WRONG_KEY, "signed by another key",
    ),
    "classic-another-key-no-hint": (
        lambda w, s: classic_signature(KeySigner(), NAME, s.digest),
        Outcome.SIGNATURE_INVALID, "names no key",
    ),
    "classic-altered-payload": (
        lambda w, s: classic_signature(w.key, NAME, s.digest, alter_payload=True),
        Outcome.SIGNATURE_INVALID, "altered",
    ),
    "classic-altered-signature": (
        lambda w, s: classic_signature(w.key, NAME, s.digest, alter_signature=True),
        Outcome.SIGNATURE_INVALID, "altered",
    ),
    "classic-another-digest": (
        lambda w, s: classic_signature(w.key, NAME, s.other["digest"]),
        Outcome.DIGEST_MISMATCH, "for digest sha256:",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_bad_classic_key_based_signature_is_refused(
    world: SigningWorld, stage: Stage, case: str
) -> None:
    make, outcome, words = CASES[case]
    stage.classic(make(world, stage))
    verdict = await stage.verdict(world.signers(keyless=False))
    assert (verdict.verified, verdict.outcome) == (False, outcome), verdict.reason
    assert words in verdict.reason
    assert verdict.layout is Layout.CLASSIC


BUNDLE_CASES: dict[str, tuple[Callable[[SigningWorld, Stage], bytes], Outcome, str]] = {
    "bundle-another-key": (
        lambda w, s: dsse_bundle(KeySigner(), s.digest), Outcome.WRONG_KEY, "signed by another key",
    ),
    "bundle-altered-payload": (
        lambda w, s: dsse_bundle(w.key, s.digest, alter_payload=True),
        Outcome.SIGNATURE_INVALID, "altered",
    ),
    "bundle-altered-signature": (
        lambda w, s: dsse_bundle(w.key, s.digest, alter_signature=True),
        Outcome.SIGNATURE_INVALID, "altered",
    ),
    "bundle-another-digest": (
        lambda w, s: dsse_bundle(w.key, s.digest, statement=cosign_statement(s.other["digest"])),
        Outcome.DIGEST_MISMATCH, "for digest sha256:",
    ),
    "bundle-not-json": (lambda w, s: b"{not json", Outcome.MALFORMED, "not JSON"),
}  # fmt: skip


@pytest.mark.parametrize("case", BUNDLE_CASES, ids=list(BUNDLE_CASES))
async def test_bad_key_based_bundle_is_refused(
    world: SigningWorld, stage: Stage, case: str
) -> None:
    make, outcome, words = BUNDLE_CASES[case]
    stage.bundles(make(world, stage))
    verdict = await stage.verdict(world.signers(keyless=False))
    assert (verdict.verified, verdict.outcome) == (False, outcome), verdict.reason
    assert words in verdict.reason


async def test_strict_reference_refuses_another_repository(
    world: SigningWorld, stage: Stage
) -> None:
    stage.classic(classic_signature(world.key, "mirror.example/other/app", stage.digest))
    verdict = await stage.verdict(world.signers(keyless=False, strict=True))
    assert verdict.outcome is Outcome.REFERENCE_MISMATCH, verdict.reason
    assert "mirror.example/other/app" in verdict.reason


async def test_strict_reference_refuses_a_bundle_subject_naming_another_repository(
    world: SigningWorld, stage: Stage
) -> None:
    statement = cosign_statement(stage.digest, name="mirror.example/other/app")
    stage.bundles(dsse_bundle(world.key, stage.digest, statement=statement))
    verdict = await stage.verdict(world.signers(keyless=False, strict=True))
    assert verdict.outcome is Outcome.REFERENCE_MISMATCH, verdict.reason


async def test_keyless_signature_is_untrusted_when_only_a_key_is_set(
    world: SigningWorld, stage: Stage
) -> None:
    stage.bundles(dsse_bundle(world.keyless(), stage.digest))
    stage.classic(classic_signature(world.keyless(), NAME, stage.digest))
    verdict = await stage.verdict(world.signers(keyless=False))
    assert verdict.outcome is Outcome.UNTRUSTED_SIGNER, verdict.reason
    assert IDENTITY in verdict.reason


async def test_key_based_signature_is_untrusted_when_only_keyless_is_set(
    world: SigningWorld, stage: Stage
) -> None:
    stage.classic(classic_signature(world.key, NAME, stage.digest))
    verdict = await stage.verdict(world.signers(key=False))
    assert verdict.outcome is Outcome.UNTRUSTED_SIGNER, verdict.reason


async def test_the_nearest_refusal_explains_the_verdict(world: SigningWorld, stage: Stage) -> None:
    stage.classic(
        classic_signature(KeySigner(log=world.log), NAME, stage.digest),
        classic_signature(world.key, NAME, stage.other["digest"]),
    )
    verdict = await stage.verdict(world.signers(keyless=False), policy=Policy.WARN)
    assert verdict.outcome is Outcome.DIGEST_MISMATCH
    assert "also: signed by another key" in verdict.reason
    assert not verdict.refused  # warn: recorded, not refused
