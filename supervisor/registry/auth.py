"""Answering a registry's ``401`` challenge: Bearer tokens and Basic auth.

::

    GET /v2/…  ──401  WWW-Authenticate: Bearer realm=R,service=S,scope=X──▶
    GET R?service=S&scope=X   (Basic user:password if we have it; anonymous otherwise,
                               or POST grant_type=refresh_token with an identitytoken)
        ◀── {"token" | "access_token": T, "expires_in": N}
    GET /v2/…  Authorization: Bearer T   (T cached per (host, scope) for N seconds)

A ``Basic`` challenge is answered with the host's credentials, which are then
sent pre-emptively. Tokens and credentials are keyed by the host written in
the image reference (not a mirror URL). Nothing here logs a secret; messages
name the host, repository and user name only.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from supervisor.exceptions import RegistryAuthFailed, RegistryError
from supervisor.registry.credentials import Credentials, CredentialStore
from supervisor.registry.endpoints import Endpoint
from supervisor.registry.errors import connection_error, error_for_status

__all__ = ["Authenticator", "Authorization", "Challenge", "CredentialStore", "parse_challenges"]

_LOGGER = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME = 60.0  # seconds, when the token service does not say (distribution spec)
_SCHEME_RE = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?=\s|,|$)")
_PARAM_RE = re.compile(r'\s*,?\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge; ``scheme`` is lower-case."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in the given header values (quoted commas handled)."""
    found: list[Challenge] = []
    for value in values:
        pos, current = 0, None
        while pos < len(value.rstrip()):
            param = _PARAM_RE.match(value, pos)
            if param and current is not None:
                raw = param.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                current.params[param.group(1).lower()] = raw
                pos = param.end()
                continue
            scheme = _SCHEME_RE.match(value, pos)
            if not scheme or scheme.end() == pos:
                break
            current = Challenge(scheme.group(1).lower())
            found.append(current)
            pos = scheme.end()
    return found


@dataclass(frozen=True, slots=True)
class Authorization:
    """An ``Authorization`` header value (never logged) and who it speaks for."""

    header: str = field(repr=False)
    username: str | None  # None: an anonymous token


class Authenticator:
    """Caches and obtains authorizations per (reference host, scope)."""

    def __init__(
        self,
        credentials: CredentialStore | None,
        *,
        allows_plain_http: Callable[[str], bool],
        timeout: float,
        user_agent: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials or CredentialStore()
        self._allows_plain_http = allows_plain_http
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[Authorization, float]] = {}
        self._basic_hosts: set[str] = set()

    def cached(self, host: str, scope: str) -> Authorization | None:
        """What to send pre-emptively: a live token, or Basic for a host that asked for it."""
        entry = self._tokens.get((host, scope))
        if entry is not None:
            if self._clock() < entry[1]:
                return entry[0]
            del self._tokens[(host, scope)]
        if host in self._basic_hosts:
            creds = self._credentials.get(host)
            if creds is not None:
                return _basic(creds)
        return None

    async def answer(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        repository: str,
        scope: str,
        challenge_headers: Iterable[str],
    ) -> Authorization:
        """Answer the 401's challenges or raise :class:`RegistryAuthFailed` saying why not."""
        host, where = endpoint.host, endpoint.describe()
        self._tokens.pop((host, scope), None)
        challenges = {c.scheme: c for c in parse_challenges(challenge_headers)}
        creds = self._credentials.get(host)
        details = {"registry": where, "repository": repository, "status": 401}
        if "bearer" in challenges and "realm" in challenges["bearer"].params:
            bearer = challenges["bearer"].params
            scopes = [s for s in (bearer.get("scope"), scope) if s]
            authorization, lifetime = await self._fetch_token(
                session, endpoint, repository, bearer, list(dict.fromkeys(scopes)), creds
            )
            self._tokens[(host, scope)] = (authorization, self._clock() + lifetime)
            return authorization
        if "basic" in challenges:
            if creds is None or not creds.password:
                raise RegistryAuthFailed(
                    f"registry {where} requires a user name and password for {repository} "
                    f"(Basic auth) and none are configured for {host}",
                    **details,
                )
            self._basic_hosts.add(host)
            return _basic(creds)
        raise RegistryAuthFailed(
            f"registry {where} requires authentication for {repository} but offers no "
            f"supported scheme ({', '.join(challenges) or 'no WWW-Authenticate header'})",
            **details,
        )

    async def _fetch_token(
        self,
        session: aiohttp.ClientSession,
        endpoint: Endpoint,
        repository: str,
        challenge: dict[str, str],
        scopes: list[str],
        creds: Credentials | None,
    ) -> tuple[Authorization, float]:
        where = endpoint.describe()
        realm = URL(challenge["realm"])
        details = {"registry": where, "repository": repository}
        if realm.scheme not in ("http", "https") or not realm.host:
            raise RegistryAuthFailed(f"registry {where} names an invalid token service", **details)
        if (
            creds is not None
            and realm.scheme == "http"
            and realm.host != endpoint.base_url.host
            and not self._allows_plain_http(realm.raw_authority)
        ):
            raise RegistryAuthFailed(
                f"registry {where} asks for credentials at a plain-http token service "
                f"({realm.host}); refusing to send them unencrypted (list it as insecure)",
                **details,
            )
        user = creds.username if creds else None
        headers = {"User-Agent": self._user_agent}
        _LOGGER.debug(
            "requesting a token for %s scope %s from %s as %s",
            endpoint.host, scopes, realm.host, user or "anonymous",
        )  # fmt: skip
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "client_id": "stack-supervisor",
                    "scope": " ".join(scopes),
                    **({"service": challenge["service"]} if "service" in challenge else {}),
                }
                request = session.post(realm, data=form, headers=headers, timeout=self._timeout)
            else:
                params = [("service", challenge["service"])] if "service" in challenge else []
                params += [("scope", s) for s in scopes]
                if creds is not None:
                    headers["Authorization"] = _basic(creds).header
                request = session.get(realm, params=params, headers=headers, timeout=self._timeout)
            async with request as response:
                body = await response.read()
                status, answer_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as err:
            raise connection_error(
                err, registry=f"{where} token service {realm.host}", repository=repository
            ) from err
        if status in (400, 401, 403):
            who = f"the credentials of user {user!r}" if user else "anonymous access"
            raise RegistryAuthFailed(
                f"token service {realm.host} of registry {where} refused {who} for "
                f"{repository} ({status})",
                **details,
                status=status,
            )
        if status != 200:
            raise error_for_status(
                status, answer_headers, body, registry=where, repository=repository,
                what=f"a token from {realm.host}",
            )  # fmt: skip
        return _token_from(body, where, repository, user)


def _token_from(
    body: bytes, where: str, repository: str, user: str | None
) -> tuple[Authorization, float]:
    try:
        document = json.loads(body)
        token = document.get("token") or document.get("access_token")
        lifetime = float(document.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
    except (ValueError, AttributeError, TypeError) as err:
        raise RegistryError(
            f"token service of registry {where} answered something that is not a token",
            registry=where,
            repository=repository,
        ) from err
    if not isinstance(token, str) or not token:
        raise RegistryError(
            f"token service of registry {where} answered without a token",
            registry=where,
            repository=repository,
        )
    # Renew a little early so a token does not expire between the check and its use.
    margin = min(5.0, lifetime / 10)
    return Authorization(f"Bearer {token}", user), max(0.0, lifetime - margin)


def _basic(creds: Credentials) -> Authorization:
    raw = f"{creds.username}:{creds.password}".encode()
    return Authorization(f"Basic {base64.b64encode(raw).decode('ascii')}", creds.username)
