"""The signature check of an update run: one verdict per service and target digest.

::

    verify(service, "name@sha256:…")
        │ policy off ─────────────────────────────▶ verdict "policy off" (no network)
        ▼
    fetch_signatures (artifacts.py) ── classic .sig layers + bundle referrers
        ▼
    verify_classic / verify_bundle, per signature ── first accepted one ─▶ verified
        ▼ none accepted
    the refusal closest to acceptance (see _RANK), others summarised ─▶ not verified

The verdict never raises: registry failures, malformed artifacts and every kind
of refusal are reasons. Whether a refused verdict stops the run is the policy's
business: :func:`check_verdicts` raises :class:`SignatureRefused` for ``enforce``
services and returns the warnings to record for ``warn`` ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from supervisor.exceptions import InvalidReference, SignatureRefused
from supervisor.reference import ImageReference
from supervisor.registry.protocol import RegistryClient
from supervisor.signatures.artifacts import BundleSignature, ClassicSignature, fetch_signatures
from supervisor.signatures.bundles import verify_bundle
from supervisor.signatures.classic import verify_classic
from supervisor.signatures.models import Layout, Outcome, Policy, Refusal, SignatureVerdict
from supervisor.signatures.signers import TrustedSigners

if TYPE_CHECKING:
    from supervisor.config import Settings

_LOGGER = logging.getLogger(__name__)

# Which refusal explains a verdict best when several signatures were refused: the one
# that got furthest (a valid signature for another digest says more than a stray one).
_RANK = {
    outcome: position
    for position, outcome in enumerate(
        [
            Outcome.REFERENCE_MISMATCH,
            Outcome.DIGEST_MISMATCH,
            Outcome.CERTIFICATE_EXPIRED,
            Outcome.WRONG_IDENTITY,
            Outcome.WRONG_ISSUER,
            Outcome.TRANSPARENCY_INVALID,
            Outcome.UNTRUSTED_CERTIFICATE,
            Outcome.SIGNATURE_INVALID,
            Outcome.WRONG_KEY,
            Outcome.UNTRUSTED_SIGNER,
            Outcome.REGISTRY_ERROR,
            Outcome.MALFORMED,
        ]
    )
}


class SignaturePolicyVerifier:
    """Satisfies ``supervisor.update.ports.SignatureVerifier``.

    ``signers`` applies to every service unless ``service_signers`` names others for
    it; ``policy_for`` gives each service's policy (``Settings.policy_for``). The
    registry client stays the caller's (it is not closed here).
    """

    def __init__(
        self,
        registry: RegistryClient,
        signers: TrustedSigners,
        policy_for: Callable[[str], Policy],
        service_signers: Mapping[str, TrustedSigners] | None = None,
    ) -> None:
        self.registry = registry
        self.signers = signers
        self.policy_for = policy_for
        self.service_signers = dict(service_signers or {})

    @classmethod
    def from_settings(cls, settings: Settings, registry: RegistryClient) -> SignaturePolicyVerifier:
        """Read the key and trust root now: a bad one is a ``ConfigError`` at start-up."""
        return cls(registry, TrustedSigners.from_settings(settings), settings.policy_for)

    async def verify(self, service: str, image: str) -> SignatureVerdict:
        """The verdict for ``image`` (``name@digest``) under ``service``'s policy."""
        signers = self.service_signers.get(service, self.signers)
        verdict = await self.verify_image(image, self.policy_for(service), signers, service)
        level = (
            logging.INFO if verdict.verified or verdict.policy is Policy.OFF else logging.WARNING
        )
        _LOGGER.log(level, "signature of %s (%s): %s", service, image, verdict.reason)
        return verdict

    async def verify_image(
        self,
        image: str,
        policy: Policy,
        signers: TrustedSigners | None = None,
        service: str = "",
    ) -> SignatureVerdict:
        """The verdict for any image under ``policy`` (what ``supervisor verify IMAGE`` needs)."""

        def verdict(outcome: Outcome, reason: str, **fields: object) -> SignatureVerdict:
            return SignatureVerdict.model_validate(
                {
                    "service": service,
                    "image": image,
                    "policy": policy,
                    "verified": outcome is Outcome.VERIFIED,
                    "reason": reason,
                    "outcome": outcome,
                    **fields,
                }
            )

        if policy is Policy.OFF:
            return verdict(Outcome.POLICY_OFF, "policy off")
        try:
            target = ImageReference.parse(image)
        except InvalidReference as err:
            return verdict(Outcome.INVALID_IMAGE, str(err))
        if not target.pinned:
            return verdict(Outcome.INVALID_IMAGE, f"{image} is not pinned to a digest")
        signers = self.signers if signers is None else signers
        found = await fetch_signatures(self.registry, target)
        refusals: list[tuple[Layout | None, Refusal]] = [(None, p) for p in found.problems]
        for signature in found.signatures:
            layout = Layout.CLASSIC if isinstance(signature, ClassicSignature) else Layout.BUNDLE
            try:
                signer = _verify_one(signature, target, signers)
            except Refusal as refusal:
                refusals.append((layout, refusal))
                continue
            return verdict(
                Outcome.VERIFIED,
                f"signed by {signer} ({layout} layout)",
                layout=layout,
                signer=signer,
            )
        if not refusals:
            return verdict(
                Outcome.UNSIGNED,
                f"no signature found (no {target.digest} .sig tag, no Sigstore bundle referrer)",
            )
        near, best = min(refusals, key=lambda item: _RANK.get(item[1].outcome, len(_RANK)))
        others = _distinct(r.reason for _, r in refusals if r is not best)
        reason = best.reason + (f"; also: {'; '.join(others)}" if others else "")
        return verdict(best.outcome, reason, layout=near)


def _verify_one(
    signature: ClassicSignature | BundleSignature, target: ImageReference, signers: TrustedSigners
) -> str:
    if isinstance(signature, ClassicSignature):
        return verify_classic(signature, target, signers)
    return verify_bundle(signature, target, signers)


def _distinct(reasons: Iterable[str], limit: int = 3) -> list[str]:
    unique = list(dict.fromkeys(reasons))
    return unique[:limit] + ([f"{len(unique) - limit} more"] if len(unique) > limit else [])


def check_verdicts(verdicts: Iterable[SignatureVerdict]) -> list[str]:
    """Raise :class:`SignatureRefused` if any ``enforce`` verdict is unverified (listing every
    such service and its reason); otherwise return one warning per unverified ``warn`` one."""
    verdicts = list(verdicts)
    refused = [v for v in verdicts if v.refused]
    if refused:
        raise SignatureRefused(
            "signature policy refused: "
            + "; ".join(f"{v.service} ({v.image}): {v.reason}" for v in refused),
            services={v.service: v.outcome for v in refused},
        )
    return [
        f"{v.service}: unverified signature allowed by policy warn ({v.reason})"
        for v in verdicts
        if v.policy is Policy.WARN and not v.verified
    ]
