"""Which URL to dial for the registry host written in an image reference.

Image references name the registry as the *engine* sees it (``127.0.0.1:5000``
on the host); the sidecar, in its own container, may have to dial something
else (``http://registry:5000`` on the stack network). Like containerd's
``hosts.toml`` or a registry mirror, the mapping changes only where requests
go: digests, pins and credentials stay keyed by the original host.

Without a mapping the scheme is ``https``, except for hosts the operator
listed as insecure and for loopback hosts (``127.0.0.0/8``, ``::1``,
``localhost``), which the Docker engine also trusts over plain ``http``. An
explicit mapping URL is used with the scheme the operator wrote.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from yarl import URL

from supervisor.exceptions import ConfigError
from supervisor.reference import DOCKER_HUB

DOCKER_HUB_URL = "https://registry-1.docker.io"
HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests for one reference host go."""

    host: str  # as written in image references, e.g. "127.0.0.1:5000"
    base_url: URL  # what is dialled, e.g. http://registry:5000
    mirrored: bool

    def url(self, path: str) -> URL:
        """``base_url`` with ``path`` (starting with ``/v2/``) appended."""
        return self.base_url.with_path(self.base_url.path.rstrip("/") + path)

    def describe(self, with_url: bool = False) -> str:
        """The host, and the URL dialled when a mapping redirects it (or ``with_url``)."""
        return f"{self.host} (via {self.base_url})" if self.mirrored or with_url else self.host


class EndpointMap:
    """Resolves reference hosts to endpoints; pure, so it is tested without a network."""

    def __init__(
        self, mirrors: Mapping[str, str] | None = None, insecure: Collection[str] = ()
    ) -> None:
        self._mirrors: dict[str, URL] = {}
        for host, url in (mirrors or {}).items():
            parsed = URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ConfigError(
                    f"registry endpoint for {host!r} must be an http(s)://host[:port] URL, "
                    f"not {url!r}"
                )
            self._mirrors[_normalise(host)] = parsed
        self._insecure = {_normalise(host) for host in insecure}

    def endpoint(self, host: str) -> Endpoint:
        """The endpoint for ``host`` (the registry part of an ``ImageReference``)."""
        key = _normalise(host)
        if key in self._mirrors:
            return Endpoint(host, self._mirrors[key], mirrored=True)
        if key == DOCKER_HUB:
            return Endpoint(host, URL(DOCKER_HUB_URL), mirrored=False)
        scheme = "http" if self.allows_plain_http(host) else "https"
        return Endpoint(host, URL(f"{scheme}://{host}"), mirrored=False)

    def allows_plain_http(self, host: str) -> bool:
        """True for loopback hosts and hosts listed as insecure (with or without port)."""
        key = _normalise(host)
        name = _hostname(key)
        return key in self._insecure or name in self._insecure or is_loopback(name)


def is_loopback(hostname: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` and ``::1`` (brackets and port already removed)."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _normalise(host: str) -> str:
    host = host.strip().lower()
    if "://" in host:
        host = URL(host).raw_authority or host
    host = host.rstrip("/")
    return DOCKER_HUB if host in HUB_ALIASES else host


def _hostname(host: str) -> str:
    """``host`` without its port and IPv6 brackets."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host
