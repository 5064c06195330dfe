"""A Rekor-style transparency log for the tests: entries, SETs, checkpoints, proofs.

What it produces is what a real Rekor v1 hands to cosign:

* ``entry_json`` — the bundle's ``tlogEntries[0]``: canonicalized body, log id,
  integrated time, inclusion promise (the SET: the log key's signature over the
  RFC 8785 form of body/integratedTime/logID/logIndex) and an RFC 6962 inclusion
  proof with a signed checkpoint (a "signed note");
* ``classic_bundle`` — the ``dev.sigstore.cosign/bundle`` annotation of the
  classic layout, which carries only the SET, no proof.

The log holds some filler leaves so that proofs are not trivial.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.signer_pki import b64, key_id, new_key


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (RFC 6962 section 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return _leaf_hash(leaves[0])
    k = _split(len(leaves))
    return _node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), leaf to root."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


def hashedrekord_body(signature: bytes, verifier_pem: bytes, payload: bytes) -> bytes:
    """A ``hashedrekord`` 0.0.1 entry body (what classic cosign signatures are logged as)."""
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {"content": b64(signature), "publicKey": {"content": b64(verifier_pem)}},
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def dsse_body(envelope_json: bytes, payload: bytes, signature: bytes, verifier_pem: bytes) -> bytes:
    """A ``dsse`` 0.0.1 entry body (what DSSE bundles are logged as in Rekor v1)."""
    body = {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {
                "algorithm": "sha256",
                "value": hashlib.sha256(envelope_json).hexdigest(),
            },
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [{"signature": b64(signature), "verifier": b64(verifier_pem)}],
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class LoggedEntry:
    body: bytes
    kind: str
    index: int
    integrated_time: int
    log_id: bytes
    set_signature: bytes


@dataclass
class TransparencyLog:
    """An append-only log with one signing key; ``origin`` names it in checkpoints."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    origin: str = "rekor.stacksup-test.invalid - 1"
    leaves: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.leaves.extend(secrets.token_bytes(40) for _ in range(5))

    @property
    def log_id(self) -> bytes:
        return key_id(self.key.public_key())

    def append(self, body: bytes, kind: str, when: datetime | None = None) -> LoggedEntry:
        index = len(self.leaves)
        self.leaves.append(body)
        integrated = int((when or datetime.now(UTC)).timestamp())
        promise = rfc8785.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "integratedTime": integrated,
                "logID": self.log_id.hex(),
                "logIndex": index,
            }
        )
        signature = self.key.sign(promise, ec.ECDSA(hashes.SHA256()))
        return LoggedEntry(body, kind, index, integrated, self.log_id, signature)

    def checkpoint(self, size: int, root: bytes) -> str:
        note = f"{self.origin}\n{size}\n{b64(root)}\n"
        signature = self.key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        name = self.origin.split(" ", 1)[0]
        return f"{note}\n\u2014 {name} {b64(self.log_id[:4] + signature)}\n"

    def entry_json(self, entry: LoggedEntry) -> dict[str, Any]:
        """``tlogEntries[0]`` of a Sigstore bundle, proven against the log as it is now."""
        leaves = self.leaves[:]
        root = merkle_root(leaves)
        return {
            "logIndex": str(entry.index),
            "logId": {"keyId": b64(entry.log_id)},
            "kindVersion": {"kind": entry.kind, "version": "0.0.1"},
            "integratedTime": str(entry.integrated_time),
            "inclusionPromise": {"signedEntryTimestamp": b64(entry.set_signature)},
            "inclusionProof": {
                "logIndex": str(entry.index),
                "rootHash": b64(root),
                "treeSize": str(len(leaves)),
                "hashes": [b64(h) for h in inclusion_path(entry.index, leaves)],
                "checkpoint": {"envelope": self.checkpoint(len(leaves), root)},
            },
            "canonicalizedBody": b64(entry.body),
        }

    @staticmethod
    def classic_bundle(entry: LoggedEntry) -> str:
        """The ``dev.sigstore.cosign/bundle`` annotation value (the SET and its payload)."""
        return json.dumps(
            {
                "SignedEntryTimestamp": b64(entry.set_signature),
                "Payload": {
                    "body": b64(entry.body),
                    "integratedTime": entry.integrated_time,
                    "logIndex": entry.index,
                    "logID": entry.log_id.hex(),
                },
            }
        )
