"""The verdict on one image digest, as recorded in runs, plans and /admin/version."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Policy(StrEnum):
    """Per service: ``enforce`` refuses an unverified image, ``warn`` records it, ``off`` skips."""

    ENFORCE = "enforce"
    WARN = "warn"
    OFF = "off"


class Layout(StrEnum):
    CLASSIC = "classic"  # tag sha256-<hex>.sig, simple-signing payload
    BUNDLE = "bundle"  # OCI referrer holding a Sigstore bundle (cosign v3)


class Outcome(StrEnum):
    """Why a verdict is what it is: stable codes for scripts, tests and the run record.

    Several signatures may be found for one digest; the verdict carries the outcome of the
    one that came closest to being accepted (see ``verifier.py``).
    """

    VERIFIED = "verified"
    POLICY_OFF = "policy_off"
    INVALID_IMAGE = "invalid_image"  # not name@sha256:…
    REGISTRY_ERROR = "registry_error"  # signatures could not be fetched: NOT "unsigned"
    UNSIGNED = "unsigned"  # the registry answered: there is no signature at all
    MALFORMED = "malformed"  # a signature artifact that does not parse
    UNTRUSTED_SIGNER = "untrusted_signer"  # key-based when only keyless is trusted, or the reverse
    WRONG_KEY = "wrong_key"  # signed by another key (named by the artifact's key hint)
    SIGNATURE_INVALID = "signature_invalid"  # payload or signature altered after signing
    DIGEST_MISMATCH = "digest_mismatch"  # a valid signature, for another digest
    REFERENCE_MISMATCH = "reference_mismatch"  # strict mode: signed for another repository
    CERTIFICATE_EXPIRED = "certificate_expired"  # not valid when the log saw the signature
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"  # does not chain to the trust root
    WRONG_IDENTITY = "wrong_identity"
    WRONG_ISSUER = "wrong_issuer"
    TRANSPARENCY_INVALID = "transparency_invalid"  # SCT, log entry, SET, proof or checkpoint


class SignatureVerdict(BaseModel):
    """Whether ``image`` (always ``name@digest``) carries a signature the policy trusts."""

    model_config = ConfigDict(frozen=True)

    service: str
    image: str
    policy: Policy
    verified: bool
    layout: Layout | None = None
    signer: str | None = None  # "key sha256:<fingerprint>" or "<identity> from <issuer>"
    reason: str  # why verified, or why not ("no signature found", "signed by another key", …)
    outcome: Outcome | None = None  # the reason as a stable code (None: made by older code)

    @property
    def refused(self) -> bool:
        """The run must fail in ``verify``."""
        return self.policy is Policy.ENFORCE and not self.verified


class Refusal(Exception):
    """One signature artifact was not accepted; carries the outcome code and the reason."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
