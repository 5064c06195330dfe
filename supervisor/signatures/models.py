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

    @property
    def refused(self) -> bool:
        """The run must fail in ``verify``."""
        return self.policy is Policy.ENFORCE and not self.verified
