"""Image references: ``[registry/]repository[:tag][@digest]``.

Parsed once, at the edge, into a value the rest of the code can trust. The
grammar follows the distribution project's reference grammar (the one the
Docker CLI and Compose use): the first path component is a registry host only
when it contains a ``.`` or a ``:`` or is ``localhost``; otherwise the image
lives on Docker Hub and a one-component name gets the ``library/`` prefix.

A run pins images by digest: after resolution every reference the run uses
has ``digest`` set, and the tag is kept only to explain to humans what the
digest was resolved from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from supervisor.exceptions import InvalidReference

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$|^sha512:[0-9a-f]{128}$")
MAX_REFERENCE_LENGTH = 255


def is_digest(value: str) -> bool:
    """True for ``sha256:<64 hex>`` (or sha512) as registries report them."""
    return bool(_DIGEST_RE.match(value))


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed image reference. ``str()`` gives the canonical text form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``text`` or raise :class:`InvalidReference` saying what is wrong."""
        if not text or len(text) > MAX_REFERENCE_LENGTH + 72:
            raise InvalidReference(f"image reference {text!r} is empty or too long")
        if text != text.strip() or any(c.isspace() for c in text):
            raise InvalidReference(f"image reference {text!r} contains whitespace")
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not is_digest(digest):
                raise InvalidReference(
                    f"image reference {text!r}: {digest!r} is not a digest (want sha256:<64 hex>)"
                )
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, tag = rest.rsplit(":", 1)
            if not _TAG_RE.match(tag):
                raise InvalidReference(f"image reference {text!r}: {tag!r} is not a valid tag")
        registry, repository = _split_registry(rest)
        if not _REPOSITORY_RE.match(repository):
            raise InvalidReference(
                f"image reference {text!r}: repository {repository!r} must be lowercase "
                "components of letters, digits and separators"
            )
        if not _HOST_RE.match(registry):
            raise InvalidReference(f"image reference {text!r}: {registry!r} is not a host")
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository`` as Docker writes it (Hub names stay short)."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    def with_digest(self, digest: str) -> ImageReference:
        """The same image pinned to ``digest`` (the tag is kept for humans)."""
        if not is_digest(digest):
            raise InvalidReference(f"{digest!r} is not a digest")
        return replace(self, digest=digest)

    def with_tag(self, tag: str) -> ImageReference:
        """Another tag of the same repository, not pinned."""
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"{tag!r} is not a valid tag")
        return replace(self, tag=tag, digest=None)

    def by_digest(self) -> str:
        """``name@digest``: what a pull or a container should use once pinned."""
        if self.digest is None:
            raise InvalidReference(f"{self} is not pinned to a digest")
        return f"{self.name}@{self.digest}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_registry(remainder: str) -> tuple[str, str]:
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry = DOCKER_HUB if first in _HUB_ALIASES else first
        repository = rest
    else:
        registry, repository = DOCKER_HUB, remainder
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository
