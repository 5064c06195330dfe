"""Reading request input strictly: JSON bodies into pydantic models, query parameters.

A wrong type is refused, never coerced (``"force": "false"`` is not ``False``), unknown fields
are refused, and every refusal names the field, so a backend developer can fix the call from
the error message alone. Size is enforced by aiohttp (``client_max_size``, 413) before a byte
is parsed; nesting is capped at :data:`MAX_JSON_DEPTH` (no body we accept nests deeper than 2,
and a few KB of ``[[[[`` would otherwise hit Python's recursion limit: a 500). Query integers
are length-checked before ``int()`` (which refuses strings over 4300 digits with a ValueError).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from supervisor.exceptions import BadRequest, UpdateNotFound

from .const import UPDATE_ID
from .errors import UnsupportedMediaType

ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_JSON_DEPTH = 32
_TOO_DEEP = f"the body is nested deeper than {MAX_JSON_DEPTH} levels"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def describe(err: ValidationError) -> str:
    """``force: Input should be a valid boolean; colour: unknown field`` from pydantic."""
    parts = []
    for item in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "body"
        if item["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        elif item["type"] == "missing":
            parts.append(f"{where}: field required")
        else:
            parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def read_json(request: web.Request) -> Any:
    """The parsed body, ``{}`` when there is none; only ``application/json`` is accepted."""
    if not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"the body must be application/json, not {request.content_type or 'untyped'}"
        )
    raw = await request.read()  # raises 413 past client_max_size
    if not raw:
        return {}  # only a truly empty body is "no body": whitespace is not JSON
    if _nesting(raw) > MAX_JSON_DEPTH:
        raise BadRequest(_TOO_DEEP)
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:  # not reachable past the depth check; kept as the last guard
        raise BadRequest(_TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"the body is not valid JSON: {str(err)[:200]}") from None


def _nesting(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting in ``raw``, brackets inside strings not counted.

    Runs before ``json.loads`` so depth is refused without recursing; a plain byte loop is
    enough, since bodies are at most ``client_max_size`` and the loop only runs for a body with
    more openers than the limit.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than the number of openers: the usual case, no scan
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when there is none)."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
    return data


def validated(data: dict[str, Any], model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as err:
        raise BadRequest(describe(err)) from None


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    return validated(await read_object(request), model)


def query_update_id(request: web.Request, required: bool = False) -> str | None:
    """``?update_id=``; empty counts as absent (a backend may forward a blank field)."""
    value = request.query.get("update_id", "")
    if not value:
        if required:
            raise BadRequest("update_id: field required")
        return None
    return checked_update_id(value)


def checked_update_id(value: str) -> str:
    if not UPDATE_ID.fullmatch(value):
        raise UpdateNotFound(f"no update with id {value[:64]!r}")
    return value


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default  # absent; an empty value is not a number and is refused below
    if value == "true":
        return True
    if value == "false":
        return False
    raise BadRequest(f"{name}: must be true or false")


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default  # absent; an empty value is not a number and is refused below
    digits = len(str(high))
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value.lstrip("0")) > digits  # before int(): no huge numbers are built
        or not low <= int(value) <= high
    ):
        raise BadRequest(f"{name}: must be a whole number from {low} to {high}")
    return int(value)
