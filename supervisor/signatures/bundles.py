"""Verifying one Sigstore bundle (v0.3, DSSE envelope): the cosign v3 layout.

* key-based (``verificationMaterial.publicKey``): parsed here, the configured key
  must verify the DSSE signature over ``PAE(payloadType, payload)``. The bundle's
  key hint (base64 SHA-256 of the signer's DER key, as sigstore-go writes it)
  tells "signed by another key" from "altered". Like the classic layout, the key
  is the only trust anchor: transparency-log entries are not required or checked.
* keyless (``verificationMaterial.certificate``): entirely sigstore's
  ``Verifier.verify_dsse`` with the trust root and :class:`IdentityPolicy`: time
  from the log entry, chain to Fulcio, SCT, key usages, identity and issuer,
  inclusion proof, checkpoint and SET, certificate valid at signing time, DSSE
  signature, log entry consistent with the envelope. When sigstore refuses, the
  refusal is mapped to an outcome (for chain failures :func:`chain_refusal` finds
  whether the certificate was expired or untrusted).

Either way the payload is then read as cosign's in-toto statement, whose subject
must be the digest we will run.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sigstore.errors import CertValidationError, VerificationError
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle

from supervisor.reference import ImageReference
from supervisor.signatures.artifacts import BundleSignature
from supervisor.signatures.fulcio import chain_refusal
from supervisor.signatures.identity import IdentityMismatch, IssuerMismatch, describe_signer
from supervisor.signatures.keys import PublicKey
from supervisor.signatures.models import Outcome, Refusal
from supervisor.signatures.payloads import check_statement
from supervisor.signatures.signers import TrustedSigners
from supervisor.signatures.trustroot import TrustRoot

BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _field(document: Any, *path: str) -> Any:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def verify_bundle(
    signature: BundleSignature, target: ImageReference, signers: TrustedSigners
) -> str:
    """The signer (for the verdict) if this bundle is acceptable; otherwise a :class:`Refusal`."""
    try:
        document = json.loads(signature.raw)
    except ValueError as err:
        raise Refusal(Outcome.MALFORMED, f"{signature.where}: bundle is not JSON") from err
    if _field(document, "mediaType") not in BUNDLE_MEDIA_TYPES:
        raise Refusal(Outcome.MALFORMED, f"{signature.where}: not a Sigstore bundle v0.3")
    material = _field(document, "verificationMaterial")
    if _field(material, "publicKey") is not None:
        payload_type, payload, signer = _verify_with_key(document, signers.public_key)
    elif _field(material, "certificate") is not None:
        payload_type, payload, signer = _verify_keyless(signature, document, signers)
    else:
        raise Refusal(Outcome.MALFORMED, f"{signature.where}: bundle has no key or certificate")
    check_statement(payload_type, payload, target, signers.strict_reference)
    return signer


def _envelope(document: dict[str, Any]) -> tuple[str, bytes, list[bytes]]:
    envelope = _field(document, "dsseEnvelope")
    if not isinstance(envelope, dict):
        raise Refusal(
            Outcome.MALFORMED, "bundle holds no DSSE envelope (cosign signs images with DSSE)"
        )
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
        payload_type = envelope["payloadType"]
    except (KeyError, TypeError, binascii.Error) as err:
        raise Refusal(Outcome.MALFORMED, "the bundle's DSSE envelope does not parse") from err
    if not isinstance(payload_type, str) or not signatures:
        raise Refusal(Outcome.MALFORMED, "the bundle's DSSE envelope has no signature")
    return payload_type, payload, signatures


def _verify_with_key(document: dict[str, Any], key: PublicKey | None) -> tuple[str, bytes, str]:
    if key is None:
        raise Refusal(
            Outcome.UNTRUSTED_SIGNER,
            "key-based signature, but only keyless signatures are trusted (no public key set)",
        )
    payload_type, payload, signatures = _envelope(document)
    signed = pae(payload_type, payload)
    if any(key.verifies(sig, signed) for sig in signatures):
        return payload_type, payload, key.signer
    hint = _field(document, "verificationMaterial", "publicKey", "hint")
    if isinstance(hint, str) and hint and hint != key.hint:
        try:
            named = "sha256:" + base64.b64decode(hint, validate=True).hex()
        except binascii.Error:
            named = repr(hint)
        raise Refusal(Outcome.WRONG_KEY, f"signed by another key ({named}), not {key.fingerprint}")
    raise Refusal(
        Outcome.SIGNATURE_INVALID,
        f"DSSE signature does not verify with {key.fingerprint}: payload or signature altered",
    )


def _signed_at(document: dict[str, Any]) -> datetime | None:
    entries = _field(document, "verificationMaterial", "tlogEntries")
    first = entries[0] if isinstance(entries, list) and entries else None
    try:
        return datetime.fromtimestamp(int(_field(first, "integratedTime")), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _verify_keyless(
    signature: BundleSignature, document: dict[str, Any], signers: TrustedSigners
) -> tuple[str, bytes, str]:
    identity, root = signers.identity, signers.trust_root
    try:
        bundle = Bundle.from_json(signature.raw)
    except (SigstoreError, ValueError) as err:
        raise Refusal(Outcome.MALFORMED, f"{signature.where}: bundle is invalid: {err}") from err
    cert = bundle.signing_certificate
    if identity is None or root is None:
        raise Refusal(
            Outcome.UNTRUSTED_SIGNER,
            f"keyless signature by {describe_signer(cert)}, but only key-based signatures "
            "are trusted (no keyless identity set)",
        )
    try:
        payload_type, payload = root.verifier.verify_dsse(bundle, identity)
    except IssuerMismatch as err:
        raise Refusal(Outcome.WRONG_ISSUER, str(err)) from err
    except IdentityMismatch as err:
        raise Refusal(Outcome.WRONG_IDENTITY, str(err)) from err
    except VerificationError as err:
        raise _explain(err, bundle, document, root) from err
    return payload_type, payload, describe_signer(cert)


def _explain(
    err: VerificationError, bundle: Bundle, document: dict[str, Any], root: TrustRoot
) -> Refusal:
    """Map a sigstore refusal to an outcome; sigstore's own words stay in the reason."""
    message = str(err)
    signed_at = _signed_at(document)
    if isinstance(err, CertValidationError) or "expired at time of signing" in message:
        if signed_at is not None:
            return chain_refusal(bundle.signing_certificate, root, signed_at, message)
        return Refusal(Outcome.UNTRUSTED_CERTIFICATE, message)
    if message.startswith("DSSE"):
        return Refusal(
            Outcome.SIGNATURE_INVALID,
            f"DSSE signature does not verify with the certificate of "
            f"{describe_signer(bundle.signing_certificate)}: payload or signature altered",
        )
    if "usage" in message.lower():
        return Refusal(Outcome.UNTRUSTED_CERTIFICATE, message)
    return Refusal(Outcome.TRANSPARENCY_INVALID, f"transparency evidence refused: {message}")
