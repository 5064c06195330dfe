"""The Sigstore trust root: which Fulcio CAs, CT logs and Rekor logs keyless signatures
must chain to. Loaded once, at start-up, from the ``trusted_root.json`` the operator mounts.

::

    trusted_root.json ──▶ sigstore TrustedRoot ──▶ sigstore Verifier   (bundles)
                     └──▶ fulcio_certs, ct_keys, rekor_keys            (classic keyless)

No network: the file is the whole trust decision (docs/signatures.md says how to
get the public-good one, or write one for a private Sigstore). Anything wrong
with it is a :class:`TrustRootInvalid` (a ``ConfigError``), never a verdict.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import ValidationError
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier

from supervisor.exceptions import TrustRootInvalid

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "PKIX_ECDSA_P256_SHA_256": hashes.SHA256(),
    "PKIX_ECDSA_P384_SHA_384": hashes.SHA384(),
    "PKIX_ECDSA_P521_SHA_512": hashes.SHA512(),
}


@dataclass(frozen=True)
class LogKey:
    """A transparency or CT log's public key, as the trust root lists it."""

    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    hash_algorithm: hashes.HashAlgorithm | None  # None for Ed25519

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            elif self.hash_algorithm is not None:
                self.key.verify(signature, data, ec.ECDSA(self.hash_algorithm))
            else:
                return False
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class TrustRoot:
    """One loaded trust root; ``verifier`` is sigstore's, built once and reused."""

    source: str
    verifier: Verifier
    fulcio_certs: list[x509.Certificate]
    ct_keys: dict[bytes, LogKey] = field(default_factory=dict)  # by SHA-256 of the DER key
    rekor_keys: dict[bytes, LogKey] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> TrustRoot:
        """Load and check ``path``; every problem is a :class:`TrustRootInvalid`."""
        source = str(path)
        try:
            document = json.loads(path.read_bytes())
        except OSError as err:
            raise _invalid(source, f"cannot be read: {err.strerror}") from err
        except ValueError as err:
            raise _invalid(source, f"is not JSON: {err}") from err
        if not isinstance(document, dict):
            raise _invalid(source, "is not a JSON object")
        try:
            trusted = TrustedRoot.from_file(source)
            verifier = Verifier(trusted_root=trusted)
            fulcio = trusted.get_fulcio_certs()
        except (ValidationError, SigstoreError, ValueError) as err:
            raise _invalid(source, f"is not a Sigstore trusted root: {_first_line(err)}") from err
        ct_keys = _log_keys(document, "ctlogs", source)
        rekor_keys = _log_keys(document, "tlogs", source)
        return cls(source, verifier, fulcio, ct_keys, rekor_keys)


def _log_keys(document: dict[str, Any], section: str, source: str) -> dict[bytes, LogKey]:
    entries = document.get(section)
    if not isinstance(entries, list) or not entries:
        raise _invalid(source, f"lists no {section} (keyless verification needs them)")
    keys: dict[bytes, LogKey] = {}
    for position, entry in enumerate(entries):
        try:
            public = entry["publicKey"]
            der = base64.b64decode(public["rawBytes"], validate=True)
            details = str(public.get("keyDetails", ""))
            key = serialization.load_der_public_key(der)
        except (KeyError, TypeError, binascii.Error, ValueError) as err:
            raise _invalid(source, f"{section}[{position}] has no readable public key") from err
        if isinstance(key, ed25519.Ed25519PublicKey):
            log_key = LogKey(key, None)
        elif isinstance(key, ec.EllipticCurvePublicKey) and details in _HASHES:
            log_key = LogKey(key, _HASHES[details])
        else:
            continue  # a key type cosign's logs do not use (RSA): never matched, not fatal
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keys[_sha256(spki)] = log_key
    if not keys:
        raise _invalid(source, f"has no usable {section} key (ECDSA or Ed25519)")
    return keys


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _invalid(source: str, what: str) -> TrustRootInvalid:
    return TrustRootInvalid(
        f"the Sigstore trusted root {source} {what}; mount a trusted_root.json "
        "(see docs/signatures.md) or change SUPERVISOR_TRUSTED_ROOT",
        path=source,
    )
