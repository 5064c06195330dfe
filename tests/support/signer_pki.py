"""A private, Sigstore-shaped public-key infrastructure for the tests (no network).

::

    FulcioCA            root ─▶ intermediate ─▶ short-lived leaf (identity + issuer extensions,
                                                embedded SCT from CTLog)
    CTLog               one P-256 key: signs RFC 6962 precertificate SCTs
    TransparencyLog     (signer_rekor.py) the Rekor-style log key, entries, proofs
    trusted_root_json   all of the above as the ``trusted_root.json`` sigstore loads

Real Fulcio certificates are copied closely enough that ``sigstore.verify.Verifier``
(4.x) accepts them: empty subject, critical SAN, digitalSignature key usage,
codeSigning EKU, the ``1.3.6.1.4.1.57264.1.1`` (raw) and ``.1.8`` (DER UTF8String)
issuer extensions and one embedded precertificate SCT. Knobs let tests break
exactly one property at a time (expired validity, another CA, no SCT).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

ISSUER_V1_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST_OID = ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """Sigstore's key id: SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(key)).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_octet_string(data: bytes) -> bytes:
    return b"\x04" + _der_length(len(data)) + data


def der_utf8_string(text: str) -> bytes:
    data = text.encode()
    return b"\x0c" + _der_length(len(data)) + data


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CTLog:
    """A certificate-transparency log that only ever signs SCTs."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)

    @property
    def log_id(self) -> bytes:
        return key_id(self.key.public_key())

    def sct_list(self, tbs_precert: bytes, issuer_key_hash: bytes, when: datetime) -> bytes:
        """The TLS-encoded SignedCertificateTimestampList for a precertificate (RFC 6962)."""
        millis = int(when.timestamp() * 1000)
        signed_entry = issuer_key_hash + len(tbs_precert).to_bytes(3, "big") + tbs_precert
        signed = struct.pack("!BBQH", 0, 0, millis, 1) + signed_entry + struct.pack("!H", 0)
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack("!B", 0)
            + self.log_id
            + struct.pack("!QH", millis, 0)
            + struct.pack("!BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )
        serialized = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(serialized)) + serialized


def _key_usage(**granted: bool) -> x509.KeyUsage:
    names = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{name: granted.get(name, False) for name in names})


def _ca_cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int,
    not_before: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            _key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class FulcioCA:
    """A two-level code-signing CA like Fulcio's (root ─▶ intermediate ─▶ leaves)."""

    name: str = "stacksup-test"
    ct_log: CTLog = field(default_factory=CTLog)
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    intermediate_key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    root: x509.Certificate = field(init=False)
    intermediate: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        start = datetime.now(UTC) - timedelta(days=30)
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} root"),
            ]
        )
        inter_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} intermediate"),
            ]
        )
        self.root = _ca_cert(root_name, self.root_key, root_name, self.root_key, 1, start)
        self.intermediate = _ca_cert(
            inter_name, self.intermediate_key, root_name, self.root_key, 0, start
        )

    @property
    def chain(self) -> list[x509.Certificate]:
        """Intermediate first, root last (the order trusted roots and cosign use)."""
        return [self.intermediate, self.root]

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        identity: str,
        issuer: str,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=10),
        with_sct: bool = True,
    ) -> x509.Certificate:
        """A Fulcio-style leaf for ``identity`` (an e-mail, or a URI when it has ``://``)."""
        start = not_before or datetime.now(UTC) - timedelta(minutes=1)
        san: x509.GeneralName = (
            x509.UniformResourceIdentifier(identity)
            if "://" in identity
            else x509.RFC822Name(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(
                _key_usage(digital_signature=True),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V1_OID, issuer.encode()), False)
            .add_extension(
                x509.UnrecognizedExtension(ISSUER_V2_OID, der_utf8_string(issuer)), False
            )
        )
        if not with_sct:
            return builder.sign(self.intermediate_key, hashes.SHA256())
        # The SCT signs the certificate without its SCT extension: build that first, then
        # the same certificate (same serial, same extension order) with the SCT appended.
        precert = builder.sign(self.intermediate_key, hashes.SHA256())
        issuer_hash = key_id(self.intermediate_key.public_key())
        sct_list = self.ct_log.sct_list(precert.tbs_certificate_bytes, issuer_hash, start)
        extension = x509.UnrecognizedExtension(SCT_LIST_OID, der_octet_string(sct_list))
        return builder.add_extension(extension, False).sign(self.intermediate_key, hashes.SHA256())


def _public_key_entry(key: ec.EllipticCurvePublicKey, start: datetime) -> dict[str, Any]:
    return {
        "rawBytes": b64(spki_der(key)),
        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
        "validFor": {"start": _iso(start)},
    }


def trusted_root_json(
    ca: FulcioCA, rekor_key: ec.EllipticCurvePublicKey, name: str = "stacksup-test"
) -> dict[str, Any]:
    """The ``trusted_root.json`` document (media type 0.1) for this private instance."""
    start = ca.root.not_valid_before_utc
    return {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [
            {
                "baseUrl": f"https://rekor.{name}.invalid",
                "hashAlgorithm": "SHA2_256",
                "publicKey": _public_key_entry(rekor_key, start),
                "logId": {"keyId": b64(key_id(rekor_key))},
            }
        ],
        "certificateAuthorities": [
            {
                "subject": {"organization": ca.name, "commonName": f"{ca.name} root"},
                "uri": f"https://fulcio.{name}.invalid",
                "certChain": {
                    "certificates": [
                        {"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                        for c in ca.chain
                    ]
                },
                "validFor": {"start": _iso(start)},
            }
        ],
        "ctlogs": [
            {
                "baseUrl": f"https://ctfe.{name}.invalid",
                "hashAlgorithm": "SHA2_256",
                "publicKey": _public_key_entry(ca.ct_log.key.public_key(), start),
                "logId": {"keyId": b64(ca.ct_log.log_id)},
            }
        ],
        "timestampAuthorities": [],
    }
