"""Sign image digests the way cosign does, without cosign (tests only).

::

    KeySigner / KeylessSigner      who signs (a P-256 key; or an ephemeral key with a
                                   Fulcio-style certificate, logged in a Rekor-style log)
    classic_signature()            one layer of the ``sha256-<hex>.sig`` manifest: the
                                   simple-signing payload and its annotations
    dsse_bundle()                  a Sigstore bundle v0.3 with a DSSE envelope of the
                                   cosign v3 in-toto statement
    classic_upload / bundle_upload what to push: blobs, then manifests under their tags
                                   (the ``.sig`` tag; the referrer manifest and the
                                   ``sha256-<hex>`` referrers-tag index)

Every knob exists so that a test can break one thing (sign another digest, name
another repository, alter the payload after signing, …) and see it refused.
Pushing is left to ``signer_registry.py`` (a real registry or the in-memory fake).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.signer_pki import FulcioCA, b64, key_id, new_key
from tests.support.signer_rekor import TransparencyLog, dsse_body, hashedrekord_body

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
COSIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
ANN_SIGNATURE = "dev.cosignproject.cosign/signature"
ANN_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANN_CHAIN = "dev.sigstore.cosign/chain"
ANN_BUNDLE = "dev.sigstore.cosign/bundle"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pem(obj: x509.Certificate | ec.EllipticCurvePublicKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def simple_signing_payload(docker_reference: str, digest: str) -> bytes:
    """cosign's payload, byte for byte as Go's json.Marshal writes it."""
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def cosign_statement(digest: str, name: str | None = None) -> bytes:
    """cosign v3's statement; the stray spaces prove the payload is treated as opaque bytes."""
    algorithm, hexdigest = digest.split(":", 1)
    subject: dict[str, Any] = {"digest": {algorithm: hexdigest}}
    if name is not None:
        subject = {"name": name, **subject}
    document = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [subject],
        "predicateType": COSIGN_PREDICATE,
        "predicate": {},
    }
    return json.dumps(document, separators=(", ", ": ")).encode() + b" \n"


@dataclass
class KeySigner:
    """``cosign sign --key``; with ``log`` set, classic signatures carry the Rekor bundle
    annotation (cosign 2's default), whose body names the public key."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    log: TransparencyLog | None = None

    @property
    def public_pem(self) -> bytes:
        return pem(self.key.public_key())

    @property
    def fingerprint(self) -> str:
        return "sha256:" + key_id(self.key.public_key()).hex()

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass
class KeylessSigner:
    """``cosign sign`` keyless: an ephemeral key, a certificate for ``identity``/``issuer``."""

    ca: FulcioCA
    log: TransparencyLog
    identity: str
    issuer: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    certificate: x509.Certificate = field(init=False)
    issue_options: dict[str, Any] = field(default_factory=dict)
    signed_at: datetime | None = None  # the log's integrated time (default: now)

    def __post_init__(self) -> None:
        self.certificate = self.ca.issue(
            self.key.public_key(), self.identity, self.issuer, **self.issue_options
        )

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


Signer = KeySigner | KeylessSigner


@dataclass
class ClassicLayer:
    payload: bytes
    annotations: dict[str, str]


def classic_signature(
    signer: Signer,
    docker_reference: str,
    digest: str,
    *,
    payload: bytes | None = None,
    alter_payload: bool = False,
    alter_signature: bool = False,
) -> ClassicLayer:
    """One signature of the classic layout. ``alter_*`` change bytes *after* signing."""
    signed = payload if payload is not None else simple_signing_payload(docker_reference, digest)
    signature = signer.sign(signed)
    annotations: dict[str, str] = {}
    if isinstance(signer, KeylessSigner):
        annotations[ANN_CERTIFICATE] = pem(signer.certificate).decode()
        annotations[ANN_CHAIN] = b"".join(pem(c) for c in signer.ca.chain).decode()
        body = hashedrekord_body(signature, pem(signer.certificate), signed)
        entry = signer.log.append(body, "hashedrekord", signer.signed_at)
        annotations[ANN_BUNDLE] = signer.log.classic_bundle(entry)
    elif signer.log is not None:
        body = hashedrekord_body(signature, signer.public_pem, signed)
        annotations[ANN_BUNDLE] = signer.log.classic_bundle(signer.log.append(body, "hashedrekord"))
    if alter_signature:
        signature = _flip_last_bit(signature)
    if alter_payload:
        signed = signed.replace(b'"optional":null', b'"optional":{"x":1}')
    annotations[ANN_SIGNATURE] = b64(signature)
    return ClassicLayer(signed, annotations)


def _flip_last_bit(signature: bytes) -> bytes:
    """Change the signature's ``s`` value but keep it valid DER."""
    return signature[:-1] + bytes([signature[-1] ^ 0x01])


def dsse_bundle(
    signer: Signer,
    digest: str,
    *,
    statement: bytes | None = None,
    alter_payload: bool = False,
    alter_signature: bool = False,
) -> bytes:
    """A Sigstore bundle v0.3 as ``cosign sign --new-bundle-format`` pushes it."""
    payload = statement if statement is not None else cosign_statement(digest)
    signature = signer.sign(pae(IN_TOTO, payload))
    envelope: dict[str, Any] = {
        "payload": b64(payload),
        "payloadType": IN_TOTO,
        "signatures": [{"sig": b64(signature), "keyid": ""}],
    }
    material: dict[str, Any]
    if isinstance(signer, KeylessSigner):
        verifier = pem(signer.certificate)
        envelope_bytes = json.dumps(envelope).encode()
        body = dsse_body(envelope_bytes, payload, signature, verifier)
        entry = signer.log.append(body, "dsse", signer.signed_at)
        der = signer.certificate.public_bytes(serialization.Encoding.DER)
        material = {
            "certificate": {"rawBytes": b64(der)},
            "tlogEntries": [signer.log.entry_json(entry)],
            "timestampVerificationData": {},
        }
    else:
        hint = b64(key_id(signer.key.public_key()))
        material = {"publicKey": {"hint": hint}, "tlogEntries": []}
    if alter_signature:
        envelope["signatures"][0]["sig"] = b64(_flip_last_bit(signature))
    if alter_payload:
        envelope["payload"] = b64(payload.replace(b'"predicate": {}', b'"predicate": {"x": 1}'))
    bundle = {"mediaType": BUNDLE_TYPE, "verificationMaterial": material, "dsseEnvelope": envelope}
    return json.dumps(bundle).encode()


@dataclass
class Upload:
    """What to push to one repository: every blob first, then manifests in order."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[tuple[str | None, str, bytes]] = field(default_factory=list)  # tag, type, body

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = sha256_digest(data)
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    def manifest(self, tag: str | None, media_type: str, document: dict[str, Any]) -> bytes:
        body = json.dumps(document).encode()
        self.manifests.append((tag, media_type, body))
        return body


def signature_tag(digest: str, suffix: str = ".sig") -> str:
    return digest.replace(":", "-") + suffix


def classic_upload(digest: str, layers: list[ClassicLayer]) -> Upload:
    """The ``sha256-<hex>.sig`` manifest holding ``layers`` (cosign appends one per signature)."""
    upload = Upload()
    config = {
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(x.payload) for x in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **upload.blob(json.dumps(config).encode()),
        },
        "layers": [
            {"mediaType": SIMPLE_SIGNING, **upload.blob(x.payload), "annotations": x.annotations}
            for x in layers
        ],
    }
    upload.manifest(signature_tag(digest), OCI_MANIFEST, manifest)
    return upload


def bundle_upload(subject: dict[str, Any], bundles: list[bytes]) -> Upload:
    """Referrer manifests for ``bundles`` and the referrers-tag index that lists them.

    ``subject`` is the image's descriptor (mediaType, digest, size).
    """
    upload = Upload()
    empty = upload.blob(b"{}")
    descriptors = []
    for bundle in bundles:
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_TYPE,
            "config": {"mediaType": OCI_EMPTY, **empty},
            "layers": [{"mediaType": BUNDLE_TYPE, **upload.blob(bundle)}],
            "subject": subject,
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": COSIGN_PREDICATE,
            },
        }
        body = upload.manifest(None, OCI_MANIFEST, manifest)
        descriptors.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256_digest(body),
                "size": len(body),
                "artifactType": BUNDLE_TYPE,
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    upload.manifest(signature_tag(subject["digest"], ""), OCI_INDEX, index)
    return upload
