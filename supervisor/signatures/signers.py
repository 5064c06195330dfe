"""Who may sign a service's images: a cosign public key, a keyless identity, or both.

Built from settings at start-up (:meth:`TrustedSigners.from_settings`), so a
missing or malformed key or trust root stops the sidecar before any update
(:class:`PublicKeyInvalid`, :class:`TrustRootInvalid`, both ``ConfigError``).
A signature is accepted when it verifies with the key *or* satisfies the keyless
identity; which one is recorded in the verdict's ``signer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.exceptions import TrustRootInvalid
from supervisor.signatures.identity import IdentityPolicy
from supervisor.signatures.keys import PublicKey
from supervisor.signatures.trustroot import TrustRoot

if TYPE_CHECKING:
    from supervisor.config import Settings


@dataclass(frozen=True)
class TrustedSigners:
    public_key: PublicKey | None = None
    identity: IdentityPolicy | None = None
    trust_root: TrustRoot | None = None
    # Require the classic payload's docker-reference to name the repository pulled.
    strict_reference: bool = False

    def __post_init__(self) -> None:
        if self.identity is not None and self.trust_root is None:
            raise TrustRootInvalid(
                "keyless verification (SUPERVISOR_SIGNATURE_IDENTITY or _IDENTITY_REGEXP) "
                "needs a Sigstore trust root: set SUPERVISOR_TRUSTED_ROOT to a mounted "
                "trusted_root.json (see docs/signatures.md)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> TrustedSigners:
        """The global signers of ``settings``; reads the key and trust root files now."""
        key = (
            PublicKey.from_file(settings.cosign_public_key)
            if settings.cosign_public_key is not None
            else None
        )
        identity = None
        if settings.signature_issuer and (
            settings.signature_identity or settings.signature_identity_regexp
        ):
            identity = IdentityPolicy(
                issuer=settings.signature_issuer,
                identity=settings.signature_identity,
                identity_regexp=None
                if settings.signature_identity
                else settings.signature_identity_regexp,
            )
        root = TrustRoot.from_file(settings.trusted_root) if settings.trusted_root else None
        return cls(key, identity, root, settings.signature_strict_reference)

    def describe(self) -> str:
        """Who is trusted, for messages: ``key sha256:… or <identity> from <issuer>``."""
        parts = []
        if self.public_key is not None:
            parts.append(self.public_key.signer)
        if self.identity is not None:
            parts.append(self.identity.describe())
        return " or ".join(parts) or "nobody (no key and no keyless identity configured)"
