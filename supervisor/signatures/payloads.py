"""What a signature says it signs: cosign's two payload formats, checked against the target.

Both formats are parsed from the exact bytes that were signed, after the
signature over those bytes was checked; they are never re-serialised.

* classic simple-signing payload (``critical.image.docker-manifest-digest``,
  ``critical.identity.docker-reference``);
* cosign v3 in-toto statement in a DSSE envelope (``subject[].digest``, predicate
  ``https://sigstore.dev/cosign/sign/v1``; cosign writes the subject without a name).

The signed digest must equal the digest we will run. The repository name is
ignored unless ``strict`` (mirrors copy images *and* signatures between
registries, so the name legitimately differs); in strict mode a classic payload
must name the repository, and a statement subject must when it has a name at all
(cosign v3 writes none, so strict mode cannot check those and says so).
"""

from __future__ import annotations

import json
from typing import Any

from supervisor.exceptions import InvalidReference
from supervisor.reference import ImageReference
from supervisor.signatures.models import Outcome, Refusal

SIMPLE_SIGNING_TYPE = "cosign container image signature"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset(
    {"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}
)
COSIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


def json_object(payload: bytes, what: str) -> dict[str, Any]:
    """Parse signed or fetched bytes that must hold a JSON object, or refuse them."""
    try:
        document = json.loads(payload)
    except ValueError as err:
        raise Refusal(Outcome.MALFORMED, f"{what} is not JSON: {err}") from err
    if not isinstance(document, dict):
        raise Refusal(Outcome.MALFORMED, f"{what} is not a JSON object")
    return document


def _field(document: dict[str, Any], *path: str) -> Any:
    value: Any = document
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def same_repository(signed_name: str, target: ImageReference) -> bool:
    """Whether ``signed_name`` names ``target``'s registry and repository (tags ignored)."""
    try:
        signed = ImageReference.parse(signed_name)
    except InvalidReference:
        return False
    return (signed.registry, signed.repository) == (target.registry, target.repository)


def check_simple_signing(payload: bytes, target: ImageReference, strict: bool) -> None:
    """Refuse unless the classic payload signs ``target.digest`` (and, strict, its repository)."""
    document = json_object(payload, "simple-signing payload")
    if _field(document, "critical", "type") != SIMPLE_SIGNING_TYPE:
        raise Refusal(Outcome.MALFORMED, "payload is not a cosign container image signature")
    signed = _field(document, "critical", "image", "docker-manifest-digest")
    if not isinstance(signed, str):
        raise Refusal(Outcome.MALFORMED, "payload names no docker-manifest-digest")
    if signed != target.digest:
        raise Refusal(
            Outcome.DIGEST_MISMATCH,
            f"valid signature, but for digest {signed}, not {target.digest}",
        )
    if strict:
        name = _field(document, "critical", "identity", "docker-reference")
        if not isinstance(name, str) or not same_repository(name, target):
            raise Refusal(
                Outcome.REFERENCE_MISMATCH,
                f"valid signature for this digest, but signed for repository {name!r}, "
                f"not {target.name} (strict reference check)",
            )


def check_statement(
    payload_type: str, payload: bytes, target: ImageReference, strict: bool
) -> None:
    """Refuse unless the DSSE payload is cosign's statement with ``target.digest`` as subject."""
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise Refusal(Outcome.MALFORMED, f"DSSE payload type {payload_type!r} is not in-toto")
    document = json_object(payload, "in-toto statement")
    if document.get("_type") not in STATEMENT_TYPES:
        raise Refusal(Outcome.MALFORMED, "DSSE payload is not an in-toto statement")
    predicate = document.get("predicateType")
    if predicate != COSIGN_PREDICATE:
        raise Refusal(
            Outcome.MALFORMED,
            f"statement is an attestation ({predicate!r}), not a cosign image signature",
        )
    subjects = document.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise Refusal(Outcome.MALFORMED, "statement has no subject")
    algorithm, _, hexdigest = (target.digest or "").partition(":")
    matching = [
        s for s in subjects if isinstance(s, dict) and _field(s, "digest", algorithm) == hexdigest
    ]
    if not matching:
        signed = [
            f"{alg}:{value}"
            for s in subjects
            if isinstance(s, dict) and isinstance(s.get("digest"), dict)
            for alg, value in s["digest"].items()
        ]
        raise Refusal(
            Outcome.DIGEST_MISMATCH,
            f"valid signature, but for digest {', '.join(signed) or '(none)'}, not {target.digest}",
        )
    if strict:
        names = [s["name"] for s in matching if isinstance(s.get("name"), str) and s["name"]]
        if names and not any(same_repository(name, target) for name in names):
            raise Refusal(
                Outcome.REFERENCE_MISMATCH,
                f"valid signature for this digest, but signed for {', '.join(names)}, "
                f"not {target.name} (strict reference check)",
            )
