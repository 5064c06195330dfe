"""The one error middleware: every failure leaves the API as the same JSON envelope.

::

    {"error_key": "update_running", "message": "…", "update_id": "a1b2c3d4"}

Sources, in the order they are tried:

* :class:`~supervisor.exceptions.SupervisorError`: ``error_key`` from the class, the status
  from :func:`~supervisor.api.errors.http_status` (API refusals carry theirs; engine and
  registry failures become 502/503/504), ``update_id`` from its details when present. From 500
  on the body's message is a fixed sentence per family: the error's own message (tool stderr,
  paths, engine URLs) is logged, never sent. Only the API's own ``Unauthorized`` answers with
  ``WWW-Authenticate``: a registry refusing *our* credential is a 502, not the caller's 401;
* aiohttp HTTP errors (no route 404, wrong method 405, body over the limit 413 …): mapped to
  a stable key, the ``Allow`` header kept on 405;
* anything else: 500 ``internal_error``, logged with its traceback; the body says nothing
  about it (no exception text, which could hold a path, a URL or a secret).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from supervisor.exceptions import BadRequest, SupervisorError, Unauthorized

from .errors import envelope, error_envelope, http_status
from .keys import SETTINGS, route_policy
from .reply import reply

_LOGGER = logging.getLogger(__name__)

_HTTP_KEYS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return reply(body, status=status, headers=headers)


def _from_supervisor_error(err: SupervisorError) -> web.Response:
    headers = (
        {"WWW-Authenticate": 'Bearer realm="supervisor"'} if isinstance(err, Unauthorized) else None
    )
    return error_response(http_status(err), error_envelope(err), headers)


def _from_http_exception(request: web.Request, err: web.HTTPException) -> web.Response:
    status = err.status
    key = _HTTP_KEYS.get(status, "bad_request" if status < 500 else "internal_error")
    if status == 404:
        message = f"no such endpoint: {request.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    elif status == 413:
        limit = request.app[SETTINGS].max_body_bytes
        message = f"the request body is larger than the limit of {limit} bytes"
    else:
        message = err.reason
    headers = {"Allow": err.headers["Allow"]} if "Allow" in err.headers else None
    return error_response(status, envelope(key, message), headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: turn whatever a handler raised into the envelope."""
    try:
        return await handler(request)
    except SupervisorError as err:
        if http_status(err) >= 500:
            _LOGGER.error(
                "%s %s failed (%s): %s", request.method, request.path, err.error_key, err.message
            )
        return _from_supervisor_error(err)
    except web.HTTPException as err:
        if err.status < 400:  # redirects and the like are answers, not errors
            raise
        return _from_http_exception(request, err)
    except Exception:
        _LOGGER.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(
            500, envelope("internal_error", "internal error; see the supervisor log")
        )


@web.middleware
async def strict_query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown query parameters are refused like unknown body fields: a misspelt
    ``?updateid=`` must not silently mean "the current run"."""
    if request.match_info.http_exception is None:
        allowed = route_policy(request).query
        unknown = sorted(name for name in request.query if name not in allowed)
        if unknown:
            names = ", ".join(repr(name[:40]) for name in unknown[:5])
            expected = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(f"unknown query parameter {names} (accepted: {expected})")
    return await handler(request)
