"""The webhook signature: HMAC-SHA256 over ``"<timestamp>.<raw body>"``.

The timestamp is signed with the body so a captured delivery cannot be replayed later
under a fresh timestamp; receivers should also refuse timestamps older than a few minutes
(the snippet in docs/notifications.md does). The header is ``sha256=<hex>``, the form
GitHub and Stripe receivers already know how to check.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-StackSup-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str | bytes, timestamp: str, body: bytes, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` at ``timestamp`` (constant time)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.compare_digest(sign(key, timestamp, body), header.strip())
