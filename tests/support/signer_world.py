"""One private signing world per test: CA, logs, a cosign key, a trusted_root.json.

``SigningWorld.create(tmp_path)`` gives a test everything the product trusts (the
key file, the trust root file, the identity and issuer) plus signers, including
the "rogue" ones the bad-input tests need (another key, another CA).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor.signatures.identity import IdentityPolicy
from supervisor.signatures.keys import PublicKey
from supervisor.signatures.signers import TrustedSigners
from supervisor.signatures.trustroot import TrustRoot
from tests.support.cosign_signer import KeylessSigner, KeySigner
from tests.support.signer_pki import FulcioCA, trusted_root_json
from tests.support.signer_rekor import TransparencyLog

IDENTITY = "https://github.com/stacksup/app/.github/workflows/release.yml@refs/tags/v1.4.0"
IDENTITY_REGEXP = r"https://github\.com/stacksup/app/\.github/workflows/.*"
ISSUER = "https://token.actions.githubusercontent.com"


@dataclass
class SigningWorld:
    ca: FulcioCA
    log: TransparencyLog
    key: KeySigner
    key_file: Path
    trusted_root: Path
    root: TrustRoot

    @classmethod
    def create(cls, directory: Path) -> SigningWorld:
        ca, log = FulcioCA(), TransparencyLog()
        key = KeySigner(log=log)
        key_file = directory / "cosign.pub"
        key_file.write_bytes(key.public_pem)
        trusted_root = directory / "trusted_root.json"
        trusted_root.write_text(json.dumps(trusted_root_json(ca, log.key.public_key())))
        return cls(ca, log, key, key_file, trusted_root, TrustRoot.from_file(trusted_root))

    def keyless(
        self,
        identity: str = IDENTITY,
        issuer: str = ISSUER,
        ca: FulcioCA | None = None,
        signed_at: datetime | None = None,
        **issue_options: Any,
    ) -> KeylessSigner:
        return KeylessSigner(
            ca or self.ca, self.log, identity, issuer,
            issue_options=issue_options, signed_at=signed_at,
        )  # fmt: skip

    def signers(
        self,
        key: bool = True,
        keyless: bool = True,
        strict: bool = False,
        regexp: bool = False,
    ) -> TrustedSigners:
        policy = None
        if keyless:
            policy = (
                IdentityPolicy(ISSUER, identity_regexp=IDENTITY_REGEXP)
                if regexp
                else IdentityPolicy(ISSUER, identity=IDENTITY)
            )
        return TrustedSigners(
            public_key=PublicKey.from_file(self.key_file) if key else None,
            identity=policy,
            trust_root=self.root if keyless else None,
            strict_reference=strict,
        )
