"""Per-service policy (enforce / warn / off), start-up errors, registry errors, check_verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from supervisor.api.errors import http_status
from supervisor.config import Settings
from supervisor.exceptions import (
    ConfigError,
    DigestMismatch,
    PublicKeyInvalid,
    RegistryError,
    RegistryUnreachable,
    SignatureRefused,
    TrustRootInvalid,
)
from supervisor.signatures.keys import PublicKey
from supervisor.signatures.models import Outcome, Policy, SignatureVerdict
from supervisor.signatures.signers import TrustedSigners
from supervisor.signatures.verifier import SignaturePolicyVerifier, check_verdicts
from tests.support.cosign_signer import KeySigner, classic_signature, dsse_bundle
from tests.support.signer_stage import NAME, Stage
from tests.support.signer_world import IDENTITY, ISSUER, SigningWorld


@pytest.fixture
def world(tmp_path: Path) -> SigningWorld:
    return SigningWorld.create(tmp_path)


def settings(world: SigningWorld, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "compose_project": "canopy",
        "services": {"app": "app", "worker": "app", "migrate": "migrations", "db": "postgres"},
        "signature_policy": "enforce",
        "signature_policy_overrides": {"worker": "warn", "migrate": "off"},
        "cosign_public_key": world.key_file,
        "signature_identity": IDENTITY,
        "signature_issuer": ISSUER,
        "trusted_root": world.trusted_root,
    }
    return Settings(**{**values, **overrides})


# --- policy ------------------------------------------------------------------------------


async def test_per_service_policies_from_settings(world: SigningWorld) -> None:
    stage = Stage()
    verifier = SignaturePolicyVerifier.from_settings(settings(world), stage.registry)
    verdicts = {s: await verifier.verify(s, stage.pinned) for s in ("app", "worker", "migrate")}
    assert {s: v.policy for s, v in verdicts.items()} == {
        "app": Policy.ENFORCE, "worker": Policy.WARN, "migrate": Policy.OFF,
    }  # fmt: skip
    assert [s for s, v in verdicts.items() if v.refused] == ["app"]
    assert verdicts["worker"].outcome is Outcome.UNSIGNED
    assert not verdicts["worker"].refused


async def test_policy_off_answers_without_touching_the_registry(world: SigningWorld) -> None:
    stage = Stage()
    verdict = await stage.verdict(world.signers(), policy=Policy.OFF)
    assert (verdict.verified, verdict.outcome, verdict.reason) == (
        False, Outcome.POLICY_OFF, "policy off",
    )  # fmt: skip
    assert not verdict.refused
    assert stage.registry.calls == []


async def test_signed_image_passes_every_policy(world: SigningWorld) -> None:
    stage = Stage()
    stage.classic(classic_signature(world.key, NAME, stage.digest))
    for policy in (Policy.ENFORCE, Policy.WARN):
        verdict = await stage.verdict(world.signers(), policy=policy)
        assert verdict.verified
        assert verdict.policy is policy


async def test_service_specific_signers_override_the_global_ones(world: SigningWorld) -> None:
    stage = Stage()
    other = KeySigner(log=world.log)
    stage.classic(classic_signature(other, NAME, stage.digest))
    key_file = world.key_file.with_name("other.pub")
    key_file.write_bytes(other.public_pem)
    verifier = SignaturePolicyVerifier(
        stage.registry,
        world.signers(keyless=False),
        lambda _s: Policy.ENFORCE,
        service_signers={"vendor": TrustedSigners(public_key=PublicKey.from_file(key_file))},
    )
    assert (await verifier.verify("vendor", stage.pinned)).verified
    assert (await verifier.verify("app", stage.pinned)).outcome is Outcome.WRONG_KEY


def verdict_for(service: str, policy: Policy, verified: bool, reason: str) -> SignatureVerdict:
    return SignatureVerdict(
        service=service, image=f"{NAME}@sha256:{'a' * 64}", policy=policy,
        verified=verified, reason=reason,
    )  # fmt: skip


def test_check_verdicts_refuses_listing_every_enforced_service() -> None:
    verdicts = [
        verdict_for("app", Policy.ENFORCE, False, "no signature found"),
        verdict_for("worker", Policy.ENFORCE, False, "signed by another key"),
        verdict_for("api", Policy.ENFORCE, True, "signed by key sha256:…"),
        verdict_for("cron", Policy.WARN, False, "no signature found"),
    ]
    with pytest.raises(SignatureRefused) as caught:
        check_verdicts(verdicts)
    message = caught.value.message
    assert "app (" in message
    assert "no signature found" in message
    assert "worker (" in message
    assert "signed by another key" in message
    assert "api" not in message
    assert "cron" not in message
    assert (http_status(caught.value), caught.value.error_key) == (400, "signature_refused")


def test_check_verdicts_returns_warnings_for_warn_services_only() -> None:
    warnings = check_verdicts(
        [
            verdict_for("app", Policy.ENFORCE, True, "signed"),
            verdict_for("cron", Policy.WARN, False, "no signature found"),
            verdict_for("job", Policy.OFF, False, "policy off"),
            verdict_for("api", Policy.WARN, True, "signed"),
        ]
    )
    assert warnings == ["cron: unverified signature allowed by policy warn (no signature found)"]


# --- bad image references and registry errors ------------------------------------------


@pytest.mark.parametrize("image", [f"{NAME}:1.4.0", "Not A Reference", f"{NAME}@sha256:abc"])
async def test_image_not_pinned_by_digest_is_refused(world: SigningWorld, image: str) -> None:
    verdict = await Stage().verdict(world.signers(), image=image)
    assert verdict.outcome is Outcome.INVALID_IMAGE
    assert verdict.refused


def _fails(method: str, match: str, error: RegistryError) -> Any:
    return lambda m, ref: error if m == method and match in ref else None


REGISTRY_FAILURES = {
    # name: (which request fails, which layout is signed, referrers API?)
    "sig-tag-unsigned": (_fails("manifest", ".sig", RegistryUnreachable("refused")), None, False),
    "sig-tag": (_fails("manifest", ".sig", RegistryUnreachable("refused")), "classic", False),
    "payload-blob": (_fails("blob", "", DigestMismatch("altered in transit")), "classic", False),
    "referrers-tag": (_fails("manifest", "-", RegistryError("HTTP 500")), "bundle", False),
    "referrers-api": (_fails("referrers", "", RegistryError("HTTP 502")), "bundle", True),
    "bundle-blob": (_fails("blob", "", RegistryError("HTTP 500")), "bundle", True),
}  # fmt: skip


@pytest.mark.parametrize("case", REGISTRY_FAILURES, ids=list(REGISTRY_FAILURES))
async def test_registry_error_is_reported_never_as_unsigned(world: SigningWorld, case: str) -> None:
    failure, signed, referrers_api = REGISTRY_FAILURES[case]
    stage = Stage()
    stage.registry.referrers_api = referrers_api
    if signed == "classic":
        stage.classic(classic_signature(world.key, NAME, stage.digest))
    elif signed == "bundle":
        stage.bundles(dsse_bundle(world.key, stage.digest))
    stage.registry.failure = failure
    verdict = await stage.verdict(world.signers())
    assert verdict.outcome is Outcome.REGISTRY_ERROR, verdict.reason
    assert "registry error while fetching" in verdict.reason
    assert verdict.refused


async def test_registry_error_in_one_layout_does_not_hide_the_other(world: SigningWorld) -> None:
    stage = Stage()
    stage.bundles(dsse_bundle(world.key, stage.digest))
    stage.registry.failure = _fails("manifest", ".sig", RegistryUnreachable("refused"))
    assert (await stage.verdict(world.signers())).verified


# --- start-up: keys and trust roots --------------------------------------------------------


def test_from_settings_loads_key_identity_and_trust_root(world: SigningWorld) -> None:
    signers = TrustedSigners.from_settings(settings(world, signature_strict_reference=True))
    assert signers.public_key is not None
    assert signers.public_key.fingerprint == world.key.fingerprint
    assert signers.identity is not None
    assert signers.identity.identity == IDENTITY
    assert signers.strict_reference
    assert f"key {world.key.fingerprint} or {IDENTITY} from {ISSUER}" == signers.describe()


def test_identity_regexp_from_settings(world: SigningWorld) -> None:
    signers = TrustedSigners.from_settings(
        settings(world, signature_identity=None, signature_identity_regexp=r"https://.*")
    )
    assert signers.identity is not None
    assert signers.identity.matches(IDENTITY)
    assert not signers.identity.matches(f"x{IDENTITY}\n")


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read"),
        (b"not a key", "not a PEM public key"),
        (_pem(rsa.generate_private_key(65537, 2048)), "not an ECDSA P-256 key"),
        (_pem(ec.generate_private_key(ec.SECP384R1())), "not an ECDSA P-256 key"),
    ],
    ids=["missing", "garbage", "rsa", "p384"],
)
def test_bad_public_key_is_a_config_error_at_start_up(
    world: SigningWorld, tmp_path: Path, content: bytes | None, words: str
) -> None:
    path = tmp_path / "bad.pub"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PublicKeyInvalid, match=words) as caught:
        SignaturePolicyVerifier.from_settings(
            settings(world, cosign_public_key=path), Stage().registry
        )
    assert isinstance(caught.value, ConfigError)


def _root(world: SigningWorld) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(world.trusted_root.read_text())
    return document


BAD_ROOTS = {
    "missing": (None, "cannot be read"),
    "not-json": (b"{", "is not JSON"),
    "not-an-object": (b"[]", "not a JSON object"),
    "wrong-media-type": (lambda r: {**r, "mediaType": "application/json"}, "not a Sigstore"),
    "no-ca": (lambda r: {**r, "certificateAuthorities": []}, "not a Sigstore"),
    "no-ct-log": (lambda r: {**r, "ctlogs": []}, "no ctlogs"),
    "no-rekor": (lambda r: {**r, "tlogs": []}, "not a Sigstore"),
    "bad-key": (
        lambda r: {**r, "ctlogs": [{**r["ctlogs"][0], "publicKey": {"rawBytes": "!!"}}]},
        "not a Sigstore",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_ROOTS, ids=list(BAD_ROOTS))
def test_bad_trust_root_is_a_config_error_at_start_up(
    world: SigningWorld, tmp_path: Path, case: str
) -> None:
    change, words = BAD_ROOTS[case]
    path = tmp_path / "bad_root.json"
    if isinstance(change, bytes):
        path.write_bytes(change)
    elif change is not None:
        path.write_text(json.dumps(change(_root(world))))
    with pytest.raises(TrustRootInvalid, match=words) as caught:
        SignaturePolicyVerifier.from_settings(settings(world, trusted_root=path), Stage().registry)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.error_key == "trust_root_invalid"


def test_keyless_identity_without_trust_root_is_a_config_error(world: SigningWorld) -> None:
    with pytest.raises(TrustRootInvalid, match="SUPERVISOR_TRUSTED_ROOT"):
        TrustedSigners.from_settings(settings(world, trusted_root=None))
