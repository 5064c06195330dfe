"""Bearer-token authentication: two tokens, three scopes, constant-time comparison.

``Authorization: Bearer <token>``. The admin token grants everything; the read token grants
:attr:`Scope.READ` routes only (a read token on an admin route is 403, so a misconfigured
dashboard learns it has the wrong token rather than a missing one). No token, an unknown
token, or a malformed header is 401 with ``WWW-Authenticate: Bearer``. If no read token is
configured, only the admin token works.

Tokens are compared as bytes with :func:`hmac.compare_digest` against both configured
tokens, always, so the time taken does not tell which one nearly matched. The presented
token is never logged nor echoed.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import SecretStr

from supervisor.exceptions import Forbidden, Unauthorized

from .const import Scope
from .keys import SETTINGS, route_policy

_LOGGER = logging.getLogger(__name__)


def _matches(presented: bytes, configured: SecretStr | None) -> bool:
    if configured is None:
        hmac.compare_digest(presented, presented)  # same work either way
        return False
    return hmac.compare_digest(presented, configured.get_secret_value().encode())


def granted_scope(header: str | None, admin: SecretStr | None, read: SecretStr | None) -> Scope:
    """The scope ``header`` grants; :attr:`Scope.PUBLIC` when it grants nothing."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Scope.PUBLIC
    presented = token.strip().encode("utf-8", "surrogateescape")
    is_admin = _matches(presented, admin)
    is_read = _matches(presented, read)
    if is_admin:
        return Scope.ADMIN
    return Scope.READ if is_read else Scope.PUBLIC


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404/405: nothing to protect, the envelope says so
    needed = route_policy(request).scope
    settings = request.app[SETTINGS]
    granted = granted_scope(
        request.headers.get("Authorization"), settings.admin_token, settings.read_token
    )
    if needed is Scope.PUBLIC:
        return await handler(request)
    if granted is Scope.PUBLIC:
        _LOGGER.info("refused %s %s: missing or unknown token", request.method, request.path)
        raise Unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
    if needed is Scope.ADMIN and granted is not Scope.ADMIN:
        _LOGGER.info("refused %s %s: read token on an admin endpoint", request.method, request.path)
        raise Forbidden("this endpoint needs the admin token; the read token may only read")
    return await handler(request)
