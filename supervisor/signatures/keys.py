"""The operator's cosign public key (``cosign.pub``): ECDSA P-256, PEM.

cosign signs with ECDSA P-256 over SHA-256 and writes DER signatures; that is
the only key type accepted here, so a wrong file (a certificate, an RSA key, a
private key) is refused at start-up rather than making every image "unsigned".
The fingerprint (SHA-256 of the DER SubjectPublicKeyInfo) is what verdicts name
and what Sigstore bundles carry as their key hint.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from supervisor.exceptions import PublicKeyInvalid


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 of the DER public key: Sigstore's key id and cosign's key hint."""
    return hashlib.sha256(spki_der(key)).digest()


def ecdsa_verifies(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` (DER) is valid for ``data`` under ``key`` with SHA-256."""
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class PublicKey:
    """A cosign verification key; ``source`` says where it came from, for messages."""

    key: ec.EllipticCurvePublicKey
    source: str = "settings"

    @classmethod
    def from_pem(cls, pem: bytes | str, source: str = "settings") -> PublicKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            loaded = serialization.load_pem_public_key(data)
        except ValueError as err:
            raise PublicKeyInvalid(
                f"cosign public key from {source} is not a PEM public key ({err}); "
                "use the cosign.pub written by `cosign generate-key-pair`"
            ) from err
        if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(
            loaded.curve, ec.SECP256R1
        ):
            raise PublicKeyInvalid(
                f"cosign public key from {source} is not an ECDSA P-256 key; "
                "cosign keys are ECDSA P-256"
            )
        return cls(loaded, source)

    @classmethod
    def from_file(cls, path: Path) -> PublicKey:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise PublicKeyInvalid(
                f"cannot read the cosign public key {path}: {err.strerror}", path=str(path)
            ) from err
        return cls.from_pem(data, str(path))

    @property
    def fingerprint(self) -> str:
        return "sha256:" + key_id(self.key).hex()

    @property
    def hint(self) -> str:
        """The key hint Sigstore bundles carry: base64 of the key id."""
        return base64.b64encode(key_id(self.key)).decode()

    @property
    def signer(self) -> str:
        """How verdicts name this key."""
        return f"key {self.fingerprint}"

    def verifies(self, signature: bytes, data: bytes) -> bool:
        return ecdsa_verifies(self.key, signature, data)

    def same_key(self, pem: bytes) -> bool | None:
        """Whether ``pem`` (a public key or certificate found in an artifact) is this key;
        None when it cannot be read, so the caller cannot tell."""
        try:
            other = serialization.load_pem_public_key(pem)
        except ValueError:
            return None
        return isinstance(other, ec.EllipticCurvePublicKey) and spki_der(other) == spki_der(
            self.key
        )
