"""Verifying one layer of the classic ``sha256-<hex>.sig`` layout (cosign 1 and 2).

The annotation ``dev.cosignproject.cosign/signature`` is a base64 DER ECDSA
signature over the **exact payload blob bytes**; the payload is only parsed
after that signature verified.

* key-based: the configured P-256 key must verify it (with or without a certificate
  annotation, as ``cosign verify --key`` does).
  When it does not, the Rekor entry cosign 2 attaches (``…/bundle``) names the
  key that did sign, which tells "another key" from "altered"; without that
  annotation the two cannot be told apart (any (r, s) verifies under *some* key)
  and the reason says so. The key is the only trust anchor: Rekor entries of
  key-based signatures are neither required nor checked.
* keyless (``dev.sigstore.cosign/certificate``): see :func:`verify_keyless`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sigstore.errors import VerificationError

from supervisor.reference import ImageReference
from supervisor.signatures.artifacts import ClassicSignature
from supervisor.signatures.fulcio import check_chain, check_usage
from supervisor.signatures.identity import IdentityMismatch, IssuerMismatch, describe_signer
from supervisor.signatures.keys import PublicKey, ecdsa_verifies, key_id
from supervisor.signatures.models import Outcome, Refusal
from supervisor.signatures.payloads import check_simple_signing
from supervisor.signatures.signers import TrustedSigners
from supervisor.signatures.transparency import check_hashedrekord, check_sct, check_set

ANN_SIGNATURE = "dev.cosignproject.cosign/signature"
ANN_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANN_BUNDLE = "dev.sigstore.cosign/bundle"


def verify_classic(
    signature: ClassicSignature, target: ImageReference, signers: TrustedSigners
) -> str:
    """The signer (for the verdict) if this layer is acceptable; otherwise a :class:`Refusal`."""
    try:
        raw = base64.b64decode(signature.annotations.get(ANN_SIGNATURE, ""), validate=True)
    except binascii.Error as err:
        raise Refusal(Outcome.MALFORMED, f"{signature.where}: signature is not base64") from err
    if not raw:
        raise Refusal(Outcome.MALFORMED, f"{signature.where}: no signature annotation")
    key = signers.public_key
    if key is not None and key.verifies(raw, signature.payload):
        signer = key.signer  # like cosign --key: a certificate alongside changes nothing
    elif ANN_CERTIFICATE in signature.annotations:
        signer = verify_keyless(signature, raw, signers)
    else:
        _refuse_key_based(signature, key)
    check_simple_signing(signature.payload, target, signers.strict_reference)
    return signer


def _refuse_key_based(signature: ClassicSignature, key: PublicKey | None) -> NoReturn:
    """Why a key-based layer that the configured key does not verify is refused."""
    if key is None:
        raise Refusal(
            Outcome.UNTRUSTED_SIGNER,
            "key-based signature, but only keyless signatures are trusted (no public key set)",
        )
    logged = _logged_key(signature.annotations.get(ANN_BUNDLE))
    if logged is not None and key_id(logged) != key_id(key.key):
        raise Refusal(
            Outcome.WRONG_KEY,
            f"signed by another key (sha256:{key_id(logged).hex()}), not {key.fingerprint}",
        )
    if logged is None:
        raise Refusal(
            Outcome.SIGNATURE_INVALID,
            f"signature does not verify with {key.fingerprint}: signed by another key, or the "
            "payload or signature was altered (this signature names no key to tell which)",
        )
    raise Refusal(
        Outcome.SIGNATURE_INVALID,
        f"signature by {key.fingerprint} does not match the payload: payload or signature altered",
    )


def _logged_key(annotation: str | None) -> ec.EllipticCurvePublicKey | None:
    """The public key a cosign 2 Rekor annotation names (unverified: only a hint)."""
    if not annotation:
        return None
    try:
        body = json.loads(base64.b64decode(json.loads(annotation)["Payload"]["body"]))
        pem = base64.b64decode(body["spec"]["signature"]["publicKey"]["content"])
        loaded = load_pem_public_key(pem)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return loaded if isinstance(loaded, ec.EllipticCurvePublicKey) else None


def verify_keyless(signature: ClassicSignature, raw: bytes, signers: TrustedSigners) -> str:
    """A classic keyless layer, checked against the trust root as far as its format allows.

    Checked: the signature over the payload with the certificate's key; the Rekor SET
    (signed by a log of the trust root) and that its entry records this signature,
    certificate and payload; the certificate chains to a Fulcio CA of the trust root
    *at the logged time* and was valid then; its embedded SCT; Fulcio's key usages;
    the identity and issuer policy. Not checked (the format does not carry them): an
    inclusion proof or checkpoint, RFC 3161 timestamps; the ``…/chain`` annotation
    is ignored (only the trust root's CAs count).
    """
    identity, root = signers.identity, signers.trust_root
    try:
        cert = x509.load_pem_x509_certificate(signature.annotations[ANN_CERTIFICATE].encode())
    except ValueError as err:
        raise Refusal(Outcome.MALFORMED, f"{signature.where}: certificate does not parse") from err
    if identity is None or root is None:
        raise Refusal(
            Outcome.UNTRUSTED_SIGNER,
            f"keyless signature by {describe_signer(cert)}, but only key-based signatures "
            "are trusted (no keyless identity set)",
        )
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not ecdsa_verifies(
        public, raw, signature.payload
    ):
        raise Refusal(
            Outcome.SIGNATURE_INVALID,
            f"signature does not verify with the certificate of {describe_signer(cert)}: "
            "payload or signature altered",
        )
    bundle = signature.annotations.get(ANN_BUNDLE)
    if not bundle:
        raise Refusal(
            Outcome.TRANSPARENCY_INVALID,
            "keyless signature without a transparency-log entry (signed with "
            "--tlog-upload=false): its signing time cannot be established",
        )
    entry = check_set(bundle, root)
    check_hashedrekord(entry, raw, cert, signature.payload)
    issuer = check_chain(cert, root, entry.signed_at)
    check_sct(cert, issuer, root)
    check_usage(cert)
    try:
        identity.verify(cert)
    except IssuerMismatch as err:
        raise Refusal(Outcome.WRONG_ISSUER, str(err)) from err
    except (IdentityMismatch, VerificationError) as err:
        raise Refusal(Outcome.WRONG_IDENTITY, str(err)) from err
    return describe_signer(cert)
