"""What the update run needs from the snapshot, signature and probe adapters.

Small protocols owned by the domain; the adapters (``supervisor.snapshots``,
``supervisor.signatures``, ``supervisor.probes``) satisfy them, and the unit
tests hand in fakes.
"""

from __future__ import annotations

from typing import Protocol

from supervisor.signatures.models import SignatureVerdict
from supervisor.snapshots.protocol import Snapshots

__all__ = ["Prober", "SignatureVerifier", "Snapshots"]


class SignatureVerifier(Protocol):
    async def verify(self, service: str, image: str) -> SignatureVerdict:
        """Verdict for ``image`` (``name@digest``) under the service's policy."""
        ...


class Prober(Protocol):
    async def check(self, url: str, expect_status: int, timeout: float) -> None:
        """Raise HealthCheckFailed unless ``url`` answers ``expect_status`` in time."""
        ...

    async def version(self, url: str, json_field: str, timeout: float) -> str:
        """The version a service reports at ``url`` (a JSON field)."""
        ...
