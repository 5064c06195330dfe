"""Finding a digest's signatures in its repository, through the ``RegistryClient`` only.

::

    classic   GET manifests/sha256-<hex>.sig ─▶ layers of type simplesigning ─▶ payload blobs
                                                 (signature and certificate in annotations)
    bundle    referrers of the digest (OCI 1.1 API, or the sha256-<hex> index when the
              registry has none) ─▶ artifactType sigstore bundle v0.3 ─▶ manifest ─▶ bundle blob

A 404 for the ``.sig`` tag or the referrers tag means "no signature in this
layout". Any other registry failure is kept as a ``REGISTRY_ERROR`` problem: the
verdict must never call an image unsigned because the registry was down. Items
that do not parse become ``MALFORMED`` problems; they never hide other signatures.
Nothing here is trusted yet: manifests, annotations and descriptors are unsigned
hints, and only the verifiers decide.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from supervisor.exceptions import ManifestNotFound, RegistryError
from supervisor.reference import ImageReference
from supervisor.registry.protocol import (
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    RegistryClient,
)
from supervisor.signatures.models import Outcome, Refusal
from supervisor.signatures.payloads import COSIGN_PREDICATE, json_object

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE_ARTIFACT_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
# Per layout: a repository with thousands of referrers must not stall a run.
MAX_SIGNATURES = 32
MAX_SIGNATURE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ClassicSignature:
    payload: bytes
    annotations: dict[str, str]
    where: str


@dataclass(frozen=True)
class BundleSignature:
    raw: bytes
    where: str


@dataclass
class Found:
    """Every signature artifact found, and every problem met while looking."""

    signatures: list[ClassicSignature | BundleSignature] = field(default_factory=list)
    problems: list[Refusal] = field(default_factory=list)

    def extend(self, other: Found) -> None:
        self.signatures.extend(other.signatures)
        self.problems.extend(other.problems)


def signature_tag(digest: str, suffix: str = "") -> str:
    """``sha256-<hex>`` (referrers fallback) or ``sha256-<hex>.sig`` (classic)."""
    return digest.replace(":", "-", 1) + suffix


def _registry_problem(err: RegistryError, what: str) -> Refusal:
    return Refusal(Outcome.REGISTRY_ERROR, f"registry error while fetching {what}: {err}")


async def fetch_signatures(registry: RegistryClient, target: ImageReference) -> Found:
    """Both layouts, fetched concurrently; never raises for registry failures."""
    classic, bundles = await asyncio.gather(
        fetch_classic(registry, target), fetch_bundles(registry, target)
    )
    classic.extend(bundles)
    return classic


async def fetch_classic(registry: RegistryClient, target: ImageReference) -> Found:
    found = Found()
    tag = signature_tag(target.digest or "", ".sig")
    try:
        manifest = await registry.get_manifest(
            target, tag, accept=(MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
        )
    except ManifestNotFound:
        return found
    except RegistryError as err:
        found.problems.append(_registry_problem(err, f"the signature tag {tag}"))
        return found
    try:
        layers = json_object(manifest.raw, f"signature manifest {tag}").get("layers")
        if not isinstance(layers, list):
            raise Refusal(Outcome.MALFORMED, f"signature manifest {tag} has no layers")
    except Refusal as refusal:
        found.problems.append(refusal)
        return found
    for position, layer in enumerate(layers[:MAX_SIGNATURES]):
        where = f"{tag} layer {position}"
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        annotations = layer.get("annotations")
        digest = layer.get("digest")
        if not isinstance(annotations, dict) or not isinstance(digest, str):
            found.problems.append(Refusal(Outcome.MALFORMED, f"{where} lacks annotations"))
            continue
        try:
            payload = await registry.get_blob(target, digest, MAX_SIGNATURE_BYTES)
        except RegistryError as err:
            found.problems.append(_registry_problem(err, f"the payload of {where}"))
            continue
        clean = {str(k): str(v) for k, v in annotations.items()}
        found.signatures.append(ClassicSignature(payload, clean, where))
    return found


async def _bundle_descriptors(
    registry: RegistryClient, target: ImageReference
) -> list[dict[str, Any]]:
    """Referrer descriptors from the API, or from the referrers tag; [] when there are none."""
    digest = target.digest or ""
    listed = await registry.get_referrers(target, digest, artifact_type=BUNDLE_ARTIFACT_TYPE)
    if listed is not None:
        return listed
    tag = signature_tag(digest)
    try:
        index = await registry.get_manifest(target, tag, accept=(MEDIA_OCI_INDEX,))
    except ManifestNotFound:
        return []
    manifests = json_object(index.raw, f"referrers index {tag}").get("manifests")
    if not isinstance(manifests, list):
        raise Refusal(Outcome.MALFORMED, f"referrers index {tag} lists no manifests")
    return [m for m in manifests if isinstance(m, dict)]


def _wanted(descriptor: dict[str, Any]) -> bool:
    if descriptor.get("artifactType", BUNDLE_ARTIFACT_TYPE) != BUNDLE_ARTIFACT_TYPE:
        return False
    annotations = descriptor.get("annotations")
    predicate = annotations.get(PREDICATE_ANNOTATION) if isinstance(annotations, dict) else None
    return predicate in (None, COSIGN_PREDICATE)  # attestations are not signatures


async def fetch_bundles(registry: RegistryClient, target: ImageReference) -> Found:
    found = Found()
    try:
        descriptors = [d for d in await _bundle_descriptors(registry, target) if _wanted(d)]
    except RegistryError as err:
        found.problems.append(_registry_problem(err, "the image's referrers"))
        return found
    except Refusal as refusal:
        found.problems.append(refusal)
        return found
    for descriptor in descriptors[:MAX_SIGNATURES]:
        digest = descriptor.get("digest")
        if not isinstance(digest, str):
            continue
        where = f"referrer {digest}"
        try:
            manifest = await registry.get_manifest(target, digest, accept=(MEDIA_OCI_MANIFEST,))
            document = json_object(manifest.raw, where)
            if document.get("artifactType", BUNDLE_ARTIFACT_TYPE) != BUNDLE_ARTIFACT_TYPE:
                continue  # another kind of referrer listed without its artifactType
            layers = [
                layer
                for layer in document.get("layers") or []
                if isinstance(layer, dict) and layer.get("mediaType") == BUNDLE_ARTIFACT_TYPE
            ]
            if not layers or not isinstance(layers[0].get("digest"), str):
                raise Refusal(Outcome.MALFORMED, f"{where} holds no Sigstore bundle layer")
            raw = await registry.get_blob(target, layers[0]["digest"], MAX_SIGNATURE_BYTES)
        except RegistryError as err:
            found.problems.append(_registry_problem(err, where))
            continue
        except Refusal as refusal:
            found.problems.append(refusal)
            continue
        found.signatures.append(BundleSignature(raw, where))
    return found
