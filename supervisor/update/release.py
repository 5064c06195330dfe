"""Which release to go to, and the images it means per service.

A target comes from (a) an explicit version, (b) a release manifest in the
CanopyOS format ``{"version": "1.4.2", "services": {"app": "repo/app:1.4.2"}}``
(image references may carry ``@sha256:`` digests), or (c) the registry's tags,
read as versions with :mod:`packaging` in a channel (``stable``: no pre- or
dev-releases; ``beta``: those too). All managed app services move together.

Tags are resolved to digests here, once; from then on a run uses digests only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from packaging.version import InvalidVersion as _PackagingInvalidVersion
from packaging.version import Version

from supervisor.exceptions import (
    CurrentVersionUnknown,
    InvalidVersion,
    ManifestNotFound,
    RegistryError,
)
from supervisor.reference import ImageReference
from supervisor.registry.protocol import RegistryClient
from supervisor.update.models import VERSION_PATTERN

_LOGGER = logging.getLogger(__name__)

ManifestFetcher = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class Release:
    version: str
    images: dict[str, ImageReference]  # service → reference, pinned once resolved
    source: str  # "explicit", "manifest", "tags"
    # The manifest says its migrations only expand the schema (the old version still works
    # on it): what start-first updates need (supervisor.update.update_order).
    compatible_migrations: bool = False


def parse_version(text: str) -> Version:
    try:
        return Version(text)
    except _PackagingInvalidVersion as err:
        raise InvalidVersion(f"{text!r} is not a version (expected e.g. 1.4.2)") from err


def parse_requested_version(text: str) -> Version:
    """A version a caller or a release names: a version that can be an image tag.

    ``packaging`` ignores surrounding whitespace (``"\x0c2"`` is version 2), but the
    text becomes the tag of every image, and no tag has whitespace: such a request is
    the caller's ``invalid_version``, not the registry's refusal later.
    """
    if not re.fullmatch(VERSION_PATTERN, text):
        raise InvalidVersion(
            f"{text[:64]!r} is not a version (expected e.g. 1.4.2: letters, digits, '.', '_' "
            "and '-' as in an image tag, at most 128 characters)"
        )
    return parse_version(text)


def unknown_current_version(current: str) -> CurrentVersionUnknown | None:
    """Why the running stack's version cannot be compared with a target, or None if it can.

    ``current`` comes from the stack (a label or the tag its containers were created from),
    not from the caller, so a tag like ``latest`` is the stack's state (409), never the
    caller's ``invalid_version``.
    """
    try:
        Version(current)
    except _PackagingInvalidVersion:
        return CurrentVersionUnknown(
            f"the running version is unknown: the stack's images say {current[:64]!r}, which "
            "is not a version (e.g. 1.4.2). Deploy the stack with version tags (app:1.4.2 "
            "instead of app:latest) or label the images org.opencontainers.image.version; "
            "or start this update with force=true to go to the target anyway"
        )
    return None


def newer_than_running(target: str, current: str | None) -> bool:
    """True when ``target`` is newer than ``current``; an unknown current version (none, or
    a tag like ``latest``) counts as older, so a real release is offered."""
    if current is None or unknown_current_version(current) is not None:
        return True
    return parse_version(target) > parse_version(current)


def in_channel(version: Version, channel: str) -> bool:
    return channel == "beta" or not (version.is_prerelease or version.is_devrelease)


def latest_in_channel(tags: Sequence[str], channel: str) -> str | None:
    """The highest tag that reads as a version in ``channel``; other tags are ignored."""
    best: tuple[Version, str] | None = None
    for tag in tags:
        try:
            version = Version(tag)
        except _PackagingInvalidVersion:
            continue
        if in_channel(version, channel) and (best is None or version > best[0]):
            best = (version, tag)
    return best[1] if best else None


def parse_manifest(
    raw: bytes, managed: Sequence[str]
) -> tuple[str, dict[str, ImageReference], bool]:
    """Validate a release manifest; every service it names must be managed."""
    try:
        data = json.loads(raw)
        version = data["version"]
        services = data["services"]
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidVersion(
            'release manifest does not parse: expected {"version": …, "services": {…}}'
        ) from err
    if not isinstance(version, str) or not isinstance(services, dict):
        raise InvalidVersion("release manifest: version must be a string, services an object")
    parse_version(version)
    unknown = sorted(set(services) - set(managed))
    if unknown:
        raise InvalidVersion(
            f"release manifest {version} names services this stack does not manage: "
            f"{', '.join(unknown)} (managed: {', '.join(managed)})"
        )
    images = {name: ImageReference.parse(str(ref)) for name, ref in services.items()}
    # "compatible_migrations": true (nothing else) declares expand-only migrations
    return version, images, data.get("compatible_migrations") is True


class ReleaseResolver:
    """Turns a request (version or none, channel) into a :class:`Release` with digests."""

    def __init__(
        self,
        registry: RegistryClient,
        current_images: Mapping[str, ImageReference],
        fetch_manifest: ManifestFetcher | None = None,
    ) -> None:
        if not current_images:
            raise ValueError("no managed services to resolve a release for")
        self._registry = registry
        self._current = dict(current_images)
        self._fetch_manifest = fetch_manifest

    async def latest(self, channel: str) -> str | None:
        """The newest version available in ``channel`` (manifest first, then tags)."""
        if self._fetch_manifest is not None:
            version, _, _ = parse_manifest(await self._fetch_manifest(), list(self._current))
            return version
        repository = next(iter(self._current.values()))
        return latest_in_channel(await self._registry.list_tags(repository), channel)

    async def resolve(self, version: str | None, channel: str) -> Release:
        if version is not None:
            parse_requested_version(version)  # the caller's: it may become every image's tag
        manifest_images: dict[str, ImageReference] = {}
        source, compatible = "explicit", False
        if self._fetch_manifest is not None:
            manifest_version, listed, declared = parse_manifest(
                await self._fetch_manifest(), list(self._current)
            )
            if version is None or parse_version(version) == parse_version(manifest_version):
                version, manifest_images, source = manifest_version, listed, "manifest"
                compatible = declared
        if version is None:
            version = await self.latest(channel)
            source = "tags"
            if version is None:
                raise InvalidVersion(f"no release found in channel {channel!r}")
        parse_version(version)
        images: dict[str, ImageReference] = {}
        for service, current in self._current.items():
            wanted = manifest_images.get(service) or current.with_tag(version)
            images[service] = await self._pin(service, wanted, version)
        return Release(
            version=version, images=images, source=source, compatible_migrations=compatible
        )

    async def _pin(self, service: str, reference: ImageReference, version: str) -> ImageReference:
        try:
            digest = await self._registry.resolve_digest(reference)
        except ManifestNotFound as err:
            raise InvalidVersion(
                f"version {version} is not available for {service}: {reference} not found"
            ) from err
        except RegistryError:
            raise
        if reference.digest and reference.digest != digest:
            raise InvalidVersion(f"{reference} does not match the registry ({digest})")
        return reference.with_digest(digest)
