"""Registry credentials: a Docker ``config.json`` plus what the settings name.

The sidecar reads the same ``config.json`` an operator's ``docker login``
wrote (``auths`` entries with ``auth`` = base64 ``user:password``, or
``username``/``password``, or an ``identitytoken`` refresh token), so no new
secret format is needed. Credential helpers (``credsStore``/``credHelpers``)
are programs on the operator's machine that the sidecar's container cannot
run: they are reported once per host and otherwise ignored.

Entries are keyed by the registry host *as written in image references*, also
when an endpoint mapping sends the requests elsewhere. Nothing here ever logs
or ``repr``\\ s a secret.

``SUPERVISOR_REGISTRY_USERNAME``/``_PASSWORD`` are the credentials of the
registry the stack's images come from, whatever its name (``ghcr.io``,
``registry.example:5000``, ``127.0.0.1:5001`` …): they answer every registry
that has no ``config.json`` entry of its own (the sidecar only talks to the
registries of the managed images, their mirrors and signature repositories),
and replace the ``config.json`` entry of a mirror or insecure registry named
in the settings. ``config.json`` keeps per-host precedence everywhere else.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yarl import URL

from supervisor.config import Settings
from supervisor.exceptions import ConfigError
from supervisor.reference import DOCKER_HUB
from supervisor.registry.endpoints import HUB_ALIASES

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name with a password, or an OAuth2 refresh token (``identitytoken``)."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: str | None = field(default=None, repr=False)


class CredentialStore:
    """Credentials per registry host; explicit entries win over ``config.json`` ones."""

    def __init__(self, entries: Mapping[str, Credentials] | None = None) -> None:
        self._entries = {registry_key(host): creds for host, creds in (entries or {}).items()}
        self._helpers: dict[str, str] = {}  # host -> credential helper we cannot run
        self._default_helper: str | None = None
        self._fallback: Credentials | None = None  # the settings' user, for the stack's registry
        self._warned: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialStore:
        """``config.json`` (if set) plus the settings' user name and password."""
        store = (
            cls.from_docker_config(settings.docker_config)
            if settings.docker_config is not None
            else cls()
        )
        username, password = settings.registry_username, settings.registry_password
        if username and password:
            secret = password.get_secret_value()
            for host in {*settings.registry_mirrors, *settings.insecure_registries}:
                store.add(host, username, secret)
            store.add_fallback(username, secret)
        return store

    @classmethod
    def from_docker_config(cls, path: Path | str) -> CredentialStore:
        """Load ``path``; a missing file is an empty store, an unreadable one a ConfigError."""
        store = cls()
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            _LOGGER.debug("no Docker config at %s; registries are used anonymously", path)
            return store
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read Docker config {path}: {err}") from err
        if not isinstance(document, dict):
            raise ConfigError(f"Docker config {path} is not a JSON object")
        for host, entry in (document.get("auths") or {}).items():
            creds = _parse_auth_entry(path, host, entry)
            if creds is not None:
                store._entries[registry_key(host)] = creds
        for host, helper in (document.get("credHelpers") or {}).items():
            store._helpers[registry_key(host)] = str(helper)
        if document.get("credsStore"):
            store._default_helper = str(document["credsStore"])
        _LOGGER.info("loaded registry credentials for %s from %s", sorted(store._entries), path)
        return store

    def add(self, host: str, username: str, password: str) -> None:
        """Credentials for ``host`` from the settings; they replace any ``config.json`` entry."""
        self._entries[registry_key(host)] = Credentials(username, password)

    def add_fallback(self, username: str, password: str) -> None:
        """Credentials for every registry without an entry of its own: the settings' user for
        the registry of the stack's images, whatever host name it has."""
        self._fallback = Credentials(username, password)

    def get(self, host: str) -> Credentials | None:
        """The credentials for ``host``, or None for anonymous access."""
        key = registry_key(host)
        own = self._entries.get(key)
        creds = own or self._fallback
        helper = self._helpers.get(key) or (self._default_helper if own is None else None)
        if helper and key not in self._warned:
            self._warned.add(key)
            _LOGGER.warning(
                "Docker config names credential helper %r for registry %s; helpers cannot run "
                "inside the sidecar, so %s. Put the credentials in 'auths' or in the "
                "SUPERVISOR_REGISTRY_USERNAME/_PASSWORD settings",
                helper,
                key,
                "its 'auths' entry is used"
                if own
                else "SUPERVISOR_REGISTRY_USERNAME is used"
                if creds
                else "it is accessed anonymously",
            )
        return creds

    def __repr__(self) -> str:
        fallback = ", fallback=set" if self._fallback else ""
        return f"CredentialStore(hosts={sorted(self._entries)}{fallback})"


def registry_key(host: str) -> str:
    """``config.json`` keys are URLs or hosts; Docker Hub has several spellings."""
    host = host.strip()
    if "://" in host:
        host = URL(host).raw_authority or host
    host = host.partition("/")[0].lower()
    return DOCKER_HUB if host in HUB_ALIASES else host


def _parse_auth_entry(path: Path, host: str, entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        raise ConfigError(f"Docker config {path}: auths entry for {host!r} is not an object")
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as err:
            raise ConfigError(
                f"Docker config {path}: 'auth' for {host!r} is not base64 of user:password"
            ) from err
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ConfigError(
                f"Docker config {path}: 'auth' for {host!r} is not base64 of user:password"
            )
    token = entry.get("identitytoken") or None
    if not username and not token:
        return None  # an empty entry: the credentials live in a helper
    return Credentials(str(username), str(password), str(token) if token else None)
