"""A stage for unit tests: one image in a ``FakeRegistry``, signed on demand.

``stage.classic(layer, …)`` and ``stage.bundles(bundle, …)`` push signatures the
way cosign lays them out; ``await stage.verdict(signers)`` runs the product's
verifier against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from supervisor.signatures.models import Policy, SignatureVerdict
from supervisor.signatures.signers import TrustedSigners
from supervisor.signatures.verifier import SignaturePolicyVerifier
from tests.support.cosign_signer import ClassicLayer, bundle_upload, classic_upload
from tests.support.signer_registry import FakeRegistry

HOST = "registry.test"
REPOSITORY = "stacksup/app"
NAME = f"{HOST}/{REPOSITORY}"


@dataclass
class Stage:
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    image: dict[str, Any] = field(init=False)
    other: dict[str, Any] = field(init=False)  # another image of the same repository

    def __post_init__(self) -> None:
        self.image = self.registry.add_image(REPOSITORY, "1.4.0")
        self.other = self.registry.add_image(REPOSITORY, "1.3.0")

    @property
    def digest(self) -> str:
        return str(self.image["digest"])

    @property
    def pinned(self) -> str:
        return f"{NAME}@{self.digest}"

    def classic(self, *layers: ClassicLayer) -> None:
        self.registry.push(REPOSITORY, classic_upload(self.digest, list(layers)))

    def bundles(self, *bundles: bytes) -> None:
        self.registry.push(REPOSITORY, bundle_upload(self.image, list(bundles)))

    async def verdict(
        self, signers: TrustedSigners, policy: Policy = Policy.ENFORCE, image: str | None = None
    ) -> SignatureVerdict:
        verifier = SignaturePolicyVerifier(self.registry, signers, lambda _service: policy)
        return await verifier.verify("app", image or self.pinned)
