"""Reading request input strictly: JSON bodies into pydantic models, query parameters.

A wrong type is refused, never coerced (``"force": "false"`` is not ``False``), unknown fields
are refused, and every refusal names the field, so a backend developer can fix the call from
the error message alone. Size is enforced by aiohttp (``client_max_size``, 413) before a byte
is parsed.
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
    if not raw.strip():
        return {}
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"the body is not valid JSON: {err}") from None


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as err:
        raise BadRequest(describe(err)) from None


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
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{name}: must be a whole number from {low} to {high}")
    return int(value)
