"""Where ``serve`` and the local commands get their services: the one seam to wire.

:func:`build_services` returns :class:`Services` built from ``settings`` (see
:mod:`supervisor.services` for the object graph). ``serving`` tells whether the result
runs the API (then include the background lifetimes: start-up recovery, the periodic release
check) or backs a one-off local command such as ``supervisor restore`` (then only the resources
the call needs, e.g. the engine client: a second manager must not recover or auto-update).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from supervisor.api import SnapshotService
from supervisor.config import Settings
from supervisor.signatures.models import Policy, SignatureVerdict
from supervisor.update.protocol import UpdateService

if TYPE_CHECKING:
    import supervisor.signatures.verifier
    import supervisor.snapshots.service

Lifespan = Callable[[], AbstractAsyncContextManager[Any]]


class ImageVerifier(Protocol):
    async def verify_image(self, image: str, policy: Policy) -> SignatureVerdict:
        """The verdict for ``image`` (``name@sha256:…``) under ``policy``; never raises for a
        refusal (the verdict says why)."""
        ...


@dataclass
class Services:
    updates: UpdateService
    snapshots: SnapshotService
    verifier: ImageVerifier | None = None
    # Entered in order before the first request (or local call), left in reverse at the end.
    lifespans: Sequence[Lifespan] = ()
    # Where the manager keeps its own metrics, if any; /metrics adds the run metrics to it.
    registry: CollectorRegistry | None = None


def build_services(settings: Settings, *, serving: bool = True) -> Services:
    """Build the real services from ``settings``; call inside the running event loop.

    Network clients are created here and closed by the first lifespan. When
    ``serving``, the manager's start-up recovery runs before the first request
    and the periodic release check runs in the background.
    """
    from supervisor.services import build_runtime

    runtime = build_runtime(settings)
    lifespans: list[Lifespan] = [runtime.lifespan]
    if serving:
        lifespans.append(runtime.manager_lifespan)
    return Services(
        updates=runtime.manager,
        snapshots=runtime.snapshots,
        verifier=runtime.verifier,
        lifespans=lifespans,
    )


if TYPE_CHECKING:  # mypy proves the real classes fit the seams above

    def _fits(
        snapshots: supervisor.snapshots.service.SnapshotService,
        verifier: supervisor.signatures.verifier.SignaturePolicyVerifier,
    ) -> tuple[SnapshotService, ImageVerifier]:
        return snapshots, verifier
