"""Keyless bad input, in both layouts, against the tests' private Sigstore trust root.

Each case breaks exactly one thing (the certificate's lifetime, its identity,
its issuer, its CA, its SCT, the log it was entered in, the log's promise) and
must be refused with its own outcome. The same case runs on the classic layout
(checked by our code) and the bundle layout (checked by sigstore), so the two
paths cannot drift apart.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.signatures.models import Outcome
from tests.support.cosign_signer import (
    ANN_BUNDLE,
    ClassicLayer,
    KeylessSigner,
    classic_signature,
    dsse_bundle,
)
from tests.support.signer_pki import FulcioCA
from tests.support.signer_rekor import TransparencyLog
from tests.support.signer_stage import NAME, Stage
from tests.support.signer_world import IDENTITY, ISSUER, SigningWorld

NOW = datetime.now(UTC)

SIGNERS: dict[str, tuple[Callable[[SigningWorld], KeylessSigner], Outcome, str]] = {
    "expired-certificate": (
        lambda w: w.keyless(not_before=NOW - timedelta(hours=1)),
        Outcome.CERTIFICATE_EXPIRED, "transparency log saw the signature",
    ),
    "not-yet-valid-certificate": (
        lambda w: w.keyless(not_before=NOW + timedelta(hours=1)),
        Outcome.CERTIFICATE_EXPIRED, "transparency log saw the signature",
    ),
    "wrong-identity": (
        lambda w: w.keyless(identity="https://github.com/evil/app/.github/workflows/x.yml@main"),
        Outcome.WRONG_IDENTITY, "evil/app",
    ),
    "wrong-identity-email": (
        lambda w: w.keyless(identity="mallory@example.com"),
        Outcome.WRONG_IDENTITY, "mallory@example.com",
    ),
    "wrong-issuer": (
        lambda w: w.keyless(issuer="https://accounts.example.com"),
        Outcome.WRONG_ISSUER, "accounts.example.com",
    ),
    "another-ca": (
        lambda w: w.keyless(ca=FulcioCA(name="rogue")),
        Outcome.UNTRUSTED_CERTIFICATE, "does not chain",
    ),
    "no-sct": (
        lambda w: w.keyless(with_sct=False),
        Outcome.TRANSPARENCY_INVALID, "SCT",
    ),
    "untrusted-log": (
        lambda w: KeylessSigner(w.ca, TransparencyLog(), IDENTITY, ISSUER),
        Outcome.TRANSPARENCY_INVALID, "",
    ),
}  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> SigningWorld:
    return SigningWorld.create(tmp_path)


@pytest.mark.parametrize("case", SIGNERS, ids=list(SIGNERS))
async def test_bad_keyless_classic_signature_is_refused(world: SigningWorld, case: str) -> None:
    make, outcome, words = SIGNERS[case]
    stage = Stage()
    stage.classic(classic_signature(make(world), NAME, stage.digest))
    verdict = await stage.verdict(world.signers(key=False))
    assert (verdict.verified, verdict.outcome) == (False, outcome), verdict.reason
    assert words in verdict.reason


@pytest.mark.parametrize("case", SIGNERS, ids=list(SIGNERS))
async def test_bad_keyless_bundle_is_refused(world: SigningWorld, case: str) -> None:
    make, outcome, words = SIGNERS[case]
    stage = Stage()
    stage.bundles(dsse_bundle(make(world), stage.digest))
    verdict = await stage.verdict(world.signers(key=False))
    assert (verdict.verified, verdict.outcome) == (False, outcome), verdict.reason
    assert words in verdict.reason


@pytest.mark.parametrize("layout", ["classic", "bundle"])
@pytest.mark.parametrize("alter", ["payload", "signature"])
async def test_altered_keyless_signature_is_refused(
    world: SigningWorld, layout: str, alter: str
) -> None:
    stage = Stage()
    payload, signature = alter == "payload", alter == "signature"
    if layout == "classic":
        stage.classic(
            classic_signature(
                world.keyless(),
                NAME,
                stage.digest,
                alter_payload=payload,
                alter_signature=signature,
            )
        )
    else:
        stage.bundles(
            dsse_bundle(
                world.keyless(), stage.digest, alter_payload=payload, alter_signature=signature
            )
        )
    verdict = await stage.verdict(world.signers(key=False))
    assert verdict.outcome is Outcome.SIGNATURE_INVALID, verdict.reason


async def test_keyless_signature_for_another_digest_is_refused(world: SigningWorld) -> None:
    stage = Stage()
    other = stage.other["digest"]
    stage.classic(classic_signature(world.keyless(), NAME, other))
    stage.bundles(dsse_bundle(world.keyless(), other))
    verdict = await stage.verdict(world.signers(key=False))
    assert verdict.outcome is Outcome.DIGEST_MISMATCH, verdict.reason


def _with_bundle_annotation(
    layer: ClassicLayer, change: Callable[[dict[str, object]], None]
) -> None:
    document = json.loads(layer.annotations[ANN_BUNDLE])
    change(document)
    layer.annotations[ANN_BUNDLE] = json.dumps(document)


async def test_classic_keyless_with_a_forged_log_time_is_refused(world: SigningWorld) -> None:
    """Moving the logged time inside the certificate's lifetime breaks the log's promise."""
    stage = Stage()
    layer = classic_signature(world.keyless(), NAME, stage.digest)

    def forge(document: dict[str, object]) -> None:
        payload = document["Payload"]
        assert isinstance(payload, dict)
        payload["integratedTime"] -= 1

    _with_bundle_annotation(layer, forge)
    stage.classic(layer)
    verdict = await stage.verdict(world.signers(key=False))
    assert verdict.outcome is Outcome.TRANSPARENCY_INVALID
    assert "signed entry timestamp" in verdict.reason


async def test_classic_keyless_whose_log_entry_is_another_signature_is_refused(
    world: SigningWorld,
) -> None:
    stage = Stage()
    signer = world.keyless()
    layer = classic_signature(signer, NAME, stage.digest)
    donor = classic_signature(signer, NAME, stage.other["digest"])
    layer.annotations[ANN_BUNDLE] = donor.annotations[ANN_BUNDLE]  # a valid SET, wrong entry
    stage.classic(layer)
    verdict = await stage.verdict(world.signers(key=False))
    assert verdict.outcome is Outcome.TRANSPARENCY_INVALID
    assert "other content" in verdict.reason


async def test_classic_keyless_without_log_entry_is_refused(world: SigningWorld) -> None:
    stage = Stage()
    layer = classic_signature(world.keyless(), NAME, stage.digest)
    del layer.annotations[ANN_BUNDLE]
    stage.classic(layer)
    verdict = await stage.verdict(world.signers(key=False))
    assert verdict.outcome is Outcome.TRANSPARENCY_INVALID
    assert "tlog-upload=false" in verdict.reason


async def test_keyless_bundle_with_a_broken_inclusion_proof_is_refused(world: SigningWorld) -> None:
    stage = Stage()
    bundle = json.loads(dsse_bundle(world.keyless(), stage.digest))
    proof = bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["hashes"][0] = base64.b64encode(b"\x00" * 32).decode()
    stage.bundles(json.dumps(bundle).encode())
    verdict = await stage.verdict(world.signers(key=False))
    assert verdict.outcome is Outcome.TRANSPARENCY_INVALID, verdict.reason
