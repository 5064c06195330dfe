"""Transparency evidence of classic keyless signatures, checked against the trust root.

Bundles are checked by sigstore. Classic ``.sig`` layers carry less: a Rekor
*SET* (the log's signed promise of inclusion, in the ``dev.sigstore.cosign/bundle``
annotation) but no inclusion proof or checkpoint, which sigstore's bundle model
requires; so these checks are done here with the same keys:

* :func:`check_sct` — the certificate's embedded SCT (RFC 6962 precertificate
  entry) is signed by a CT log of the trust root;
* :func:`check_set` — the SET is signed by a Rekor key of the trust root over the
  RFC 8785 form of ``body``/``integratedTime``/``logID``/``logIndex``; the
  integrated time it vouches for is the signing time;
* :func:`check_hashedrekord` — the logged entry is this signature: same signature
  bytes, same certificate, SHA-256 of the same payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.certificate_transparency import LogEntryType

from supervisor.signatures.models import Outcome, Refusal
from supervisor.signatures.trustroot import TrustRoot

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _refuse(reason: str) -> Refusal:
    return Refusal(Outcome.TRANSPARENCY_INVALID, reason)


def check_sct(cert: x509.Certificate, issuer: x509.Certificate, trust: TrustRoot) -> None:
    """Refuse unless one embedded SCT verifies with a CT log key of the trust root."""
    try:
        scts = cert.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound as err:
        raise _refuse("the certificate carries no signed certificate timestamp (SCT)") from err
    issuer_key = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tbs = cert.tbs_precertificate_bytes
    signed_entry = hashlib.sha256(issuer_key).digest() + len(tbs).to_bytes(3, "big") + tbs
    for sct in scts:
        key = trust.ct_keys.get(sct.log_id)
        if key is None or sct.entry_type is not LogEntryType.PRE_CERTIFICATE:
            continue
        millis = (sct.timestamp.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
        extensions = sct.extension_bytes
        data = (
            struct.pack("!BBQH", sct.version.value, 0, millis, 1)
            + signed_entry
            + struct.pack("!H", len(extensions))
            + extensions
        )
        if key.verifies(sct.signature, data):
            return
    raise _refuse("no SCT of the certificate verifies with a CT log key of the trust root")


@dataclass(frozen=True)
class LoggedEntry:
    body: dict[str, Any]
    signed_at: datetime
    log_index: int


def check_set(annotation: str, trust: TrustRoot) -> LoggedEntry:
    """Verify the ``dev.sigstore.cosign/bundle`` annotation; return the entry it vouches for."""
    try:
        document = json.loads(annotation)
        payload = document["Payload"]
        body_text = payload["body"]
        integrated, index, log_id = (
            payload["integratedTime"],
            payload["logIndex"],
            payload["logID"],
        )
        promise = base64.b64decode(document["SignedEntryTimestamp"], validate=True)
        body = json.loads(base64.b64decode(body_text, validate=True))
        log_key_id = bytes.fromhex(log_id)
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise _refuse(f"the transparency-log bundle annotation does not parse ({err})") from err
    if not (
        isinstance(body_text, str)
        and all(type(v) is int for v in (integrated, index))
        and isinstance(body, dict)
    ):
        raise _refuse("the transparency-log bundle annotation has fields of the wrong type")
    key = trust.rekor_keys.get(log_key_id)
    if key is None:
        raise _refuse(f"logged in transparency log {log_id[:16]}…, which the trust root lacks")
    canonical = json.dumps(
        {"body": body_text, "integratedTime": integrated, "logID": log_id, "logIndex": index},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    if not key.verifies(promise, canonical):
        raise _refuse("the transparency log's signed entry timestamp (SET) does not verify")
    return LoggedEntry(body, datetime.fromtimestamp(integrated, UTC), index)


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        return b""


def _dig(document: Any, *path: str) -> Any:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def check_hashedrekord(
    entry: LoggedEntry, signature: bytes, cert: x509.Certificate, payload: bytes
) -> None:
    """Refuse unless the logged entry records this very signature, certificate and payload."""
    body = entry.body
    if body.get("kind") != "hashedrekord":
        raise _refuse(f"the log entry is a {body.get('kind')!r}, not a hashedrekord")
    if (
        _dig(body, "spec", "data", "hash", "algorithm") != "sha256"
        or _dig(body, "spec", "data", "hash", "value") != hashlib.sha256(payload).hexdigest()
    ):
        raise _refuse("the log entry is for other content than this payload")
    if _b64(_dig(body, "spec", "signature", "content")) != signature:
        raise _refuse("the log entry records another signature")
    try:
        logged = x509.load_pem_x509_certificate(
            _b64(_dig(body, "spec", "signature", "publicKey", "content"))
        )
    except ValueError as err:
        raise _refuse("the log entry records no certificate") from err
    if logged != cert:
        raise _refuse("the log entry records another certificate")
