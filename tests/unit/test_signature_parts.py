"""The small parts: payload reading, identity matching, keys, and real trust roots."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sigstore
from cryptography import x509

from supervisor.reference import ImageReference
from supervisor.signatures.identity import (
    IdentityMismatch,
    IdentityPolicy,
    IssuerMismatch,
    certificate_identities,
    certificate_issuer,
)
from supervisor.signatures.keys import PublicKey
from supervisor.signatures.models import Outcome, Refusal
from supervisor.signatures.payloads import check_simple_signing, check_statement, same_repository
from supervisor.signatures.trustroot import TrustRoot
from tests.support.cosign_signer import (
    ANN_CERTIFICATE,
    IN_TOTO,
    KeySigner,
    classic_signature,
    cosign_statement,
    pem,
    simple_signing_payload,
)
from tests.support.signer_pki import ISSUER_V2_OID, FulcioCA, new_key
from tests.support.signer_stage import NAME, Stage
from tests.support.signer_world import IDENTITY, ISSUER, SigningWorld

DIGEST = "sha256:" + "1" * 64
TARGET = ImageReference.parse(f"{NAME}@{DIGEST}")


@pytest.mark.parametrize(
    ("signed", "target", "same"),
    [
        ("index.docker.io/library/nginx", "nginx", True),
        ("docker.io/library/nginx:1.25", "nginx", True),
        ("nginx", "docker.io/library/nginx", True),
        ("ghcr.io/acme/app", "ghcr.io/acme/app", True),
        ("ghcr.io/acme/app", "ghcr.io/evil/app", False),
        ("not a reference", "nginx", False),
    ],
)
def test_same_repository_normalises_docker_hub_names(signed: str, target: str, same: bool) -> None:
    assert same_repository(signed, ImageReference.parse(target)) is same


def test_simple_signing_payload_must_be_cosigns() -> None:
    check_simple_signing(simple_signing_payload(NAME, DIGEST), TARGET, strict=True)
    wrong_type = json.dumps({"critical": {"type": "atomic container signature"}}).encode()
    for payload, outcome in [
        (b"[]", Outcome.MALFORMED),
        (b"\xff", Outcome.MALFORMED),
        (wrong_type, Outcome.MALFORMED),
        (simple_signing_payload(NAME, "sha256:" + "2" * 64), Outcome.DIGEST_MISMATCH),
    ]:
        with pytest.raises(Refusal) as caught:
            check_simple_signing(payload, TARGET, strict=False)
        assert caught.value.outcome is outcome


def test_statement_with_several_subjects_matches_any() -> None:
    statement = json.loads(cosign_statement("sha256:" + "2" * 64))
    statement["subject"].append({"digest": {"sha256": "1" * 64}})
    check_statement(IN_TOTO, json.dumps(statement).encode(), TARGET, strict=True)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda s: {**s, "predicateType": "https://slsa.dev/provenance/v1"}, "attestation"),
        (lambda s: {**s, "_type": "https://example.com/other"}, "not an in-toto statement"),
        (lambda s: {**s, "subject": []}, "no subject"),
    ],
    ids=["attestation", "not-a-statement", "no-subject"],
)
def test_statements_that_are_not_cosign_signatures_are_refused(
    change: Callable[[dict[str, Any]], dict[str, Any]], words: str
) -> None:
    statement = change(json.loads(cosign_statement(DIGEST)))
    with pytest.raises(Refusal, match=words) as caught:
        check_statement(IN_TOTO, json.dumps(statement).encode(), TARGET, strict=False)
    assert caught.value.outcome is Outcome.MALFORMED


def test_dsse_payload_type_must_be_in_toto() -> None:
    with pytest.raises(Refusal, match="not in-toto"):
        check_statement("text/plain", cosign_statement(DIGEST), TARGET, strict=False)


def _leaf(identity: str = IDENTITY, issuer: str = ISSUER) -> x509.Certificate:
    return FulcioCA().issue(new_key().public_key(), identity, issuer)


def test_identity_and_issuer_are_read_like_fulcio_writes_them() -> None:
    cert = _leaf("dev@example.com")
    assert certificate_identities(cert) == ["dev@example.com"]
    assert certificate_issuer(cert) == ISSUER
    ext = cert.extensions.get_extension_for_oid(ISSUER_V2_OID).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    assert ext.value[0] == 0x0C  # a DER UTF8String, read as text (not raw bytes)


def test_regexp_must_match_the_whole_identity() -> None:
    policy = IdentityPolicy(ISSUER, identity_regexp=r"https://github\.com/stacksup/.*")
    policy.verify(_leaf())
    with pytest.raises(IdentityMismatch):
        policy.verify(_leaf("https://evil.example/https://github.com/stacksup/app"))
    with pytest.raises(IssuerMismatch):
        policy.verify(_leaf(issuer="https://evil.example"))


def test_identity_policy_needs_exactly_one_identity_form() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        IdentityPolicy(ISSUER)
    with pytest.raises(ValueError, match="exactly one"):
        IdentityPolicy(ISSUER, identity="a", identity_regexp="b")


def test_public_key_fingerprint_and_hint_name_the_same_key(tmp_path: Path) -> None:
    signer = KeySigner()
    key = PublicKey.from_pem(signer.public_pem)
    assert key.fingerprint == signer.fingerprint
    assert base64.b64decode(key.hint).hex() == key.fingerprint.removeprefix("sha256:")
    assert key.same_key(signer.public_pem) is True
    assert key.same_key(KeySigner().public_pem) is False
    assert key.same_key(b"junk") is None


async def test_key_signature_with_a_certificate_alongside_verifies_by_key(tmp_path: Path) -> None:
    world = SigningWorld.create(tmp_path)
    stage = Stage()
    layer = classic_signature(world.key, NAME, stage.digest)
    layer.annotations[ANN_CERTIFICATE] = pem(_leaf()).decode()
    stage.classic(layer)
    verdict = await stage.verdict(world.signers(keyless=False))
    assert verdict.signer == f"key {world.key.fingerprint}"


@pytest.mark.parametrize("instance", ["tuf-repo-cdn.sigstore.dev", "tuf-repo-cdn.sigstage.dev"])
def test_the_public_good_trusted_roots_load(instance: str) -> None:
    """The files sigstore ships (what an operator would mount) are accepted as they are."""
    store = Path(sigstore.__file__).parent / "_store" / f"https%3A%2F%2F{instance}"
    root = TrustRoot.from_file(store / "trusted_root.json")
    assert root.fulcio_certs
    assert root.ct_keys
    assert root.rekor_keys
