"""Turning ``SUPERVISOR_*`` environment variables into raw setting values.

Kept apart from :mod:`supervisor.config` so the model there only deals with values, while this
module deals with where they come from: the prefix, unknown names, empty values, ``*_FILE``
secrets, the two text forms of maps and lists, and the one-line problem reports built from all of
it. Nothing here ever puts a secret's value into a message.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

PREFIX = "SUPERVISOR_"
FILE_SUFFIX = "_FILE"
# A secret file is a token or a password; anything bigger is a wrong path (a key, a dump ...).
MAX_SECRET_BYTES = 64 * 1024
_GOT_LIMIT = 80
_URL_USERINFO = re.compile(r"(?<=//)[^/@\s'\"]+@")


def env_name(field: str) -> str:
    """The variable an operator sets for ``field``: ``listen_port`` → ``SUPERVISOR_LISTEN_PORT``."""
    return PREFIX + field.upper()


@dataclass(frozen=True)
class Problem:
    """One refused setting, rendered as one line an operator can act on."""

    variable: str
    message: str
    fix: str
    got: str | None = None  # already rendered by show(); None when absent or secret

    def render(self) -> str:
        got = f" (got {self.got})" if self.got is not None else ""
        return f"{self.variable}: {self.message}{got} — {self.fix}"

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def show(value: Any) -> str:
    """A short, log-safe rendering of a non-secret value (URL credentials are masked)."""
    text = _URL_USERINFO.sub("***@", repr(value))
    return text if len(text) <= _GOT_LIMIT else text[: _GOT_LIMIT - 1] + "…"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def parse_json(text: str) -> Any:
    """JSON, refusing duplicate keys (which ``json`` would silently resolve to the last one)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON: {err.msg} at character {err.pos}") from None


def split_map(text: str) -> Any:
    """``{"a": "b"}`` (JSON) or the friendlier ``a=b,c=d`` into a dict."""
    text = text.strip()
    if text.startswith(("{", "[")):
        return parse_json(text)
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"entry {item!r} is not NAME=VALUE")
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def split_list(text: str) -> Any:
    """``["a", "b"]`` (JSON) or the friendlier ``a,b`` into a list."""
    text = text.strip()
    if text.startswith(("[", "{")):
        return parse_json(text)
    return [part.strip() for part in text.split(",") if part.strip()]


def read_secret_file(variable: str, path_text: str) -> str | Problem:
    """The secret in ``path_text`` without its trailing newline, or why it cannot be used."""
    fix = (
        f"point {variable} at a readable, non-empty file (e.g. a Compose secret in "
        "/run/secrets/) or unset it"
    )
    try:
        with Path(path_text).open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as err:
        return Problem(
            variable, f"cannot read the secret file: {err.strerror or err}", fix, show(path_text)
        )
    if len(data) > MAX_SECRET_BYTES:
        return Problem(variable, "the secret file is larger than 64 KiB", fix, show(path_text))
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return Problem(variable, "the secret file is not UTF-8 text", fix, show(path_text))
    if not text.strip():
        return Problem(variable, "the secret file is empty", fix, show(path_text))
    return text


def collect(
    env: Mapping[str, str], fields: Iterable[str], secrets: Collection[str]
) -> tuple[dict[str, str], list[Problem]]:
    """Raw values by field name from ``env``, plus every problem found on the way.

    Only ``SUPERVISOR_*`` names are looked at. An empty value counts as unset, so a compose file
    can pass ``SUPERVISOR_X: ${X:-}`` through and still get the default.
    """
    known = {env_name(field): field for field in fields}
    files = {env_name(field) + FILE_SUFFIX: field for field in secrets}
    values: dict[str, str] = {}
    file_paths: dict[str, tuple[str, str]] = {}
    problems: list[Problem] = []
    for name in sorted(env):
        if not name.upper().startswith(PREFIX) or env[name] == "":
            continue
        if name in known:
            values[known[name]] = env[name]
        elif name in files:
            file_paths[files[name]] = (name, env[name])
        else:
            problems.append(_unknown(name, [*known, *files]))
    for field, (variable, path_text) in file_paths.items():
        if field in values:
            problems.append(
                Problem(
                    variable,
                    f"both {env_name(field)} and {variable} are set",
                    "set only one (the _FILE form keeps the secret out of `docker inspect`)",
                )
            )
            continue
        secret = read_secret_file(variable, path_text)
        if isinstance(secret, Problem):
            problems.append(secret)
        else:
            values[field] = secret
    return values, problems


def _unknown(name: str, valid: list[str]) -> Problem:
    # Compared without the prefix: it is shared by every name and would make them all "close".
    suffixes = {known.removeprefix(PREFIX): known for known in valid}
    close = difflib.get_close_matches(name.upper().removeprefix(PREFIX), suffixes, n=1)
    if not close:
        return Problem(name, f"unknown setting {name}", "remove it or check the spelling")
    suggestion = suffixes[close[0]]
    return Problem(
        name,
        f"unknown setting {name}; did you mean {suggestion}?",
        f"rename it to {suggestion} or remove it",
    )


def problems_from(
    error: ValidationError, fields: Mapping[str, FieldInfo], secrets: Collection[str]
) -> list[Problem]:
    """One :class:`Problem` per pydantic error, named after the variable, never with a secret.

    A field's ``description`` says what it expects and so becomes the fix, unless the error
    brings its own ``fix``; rules across fields arrive as ready-made problems (``config_rules``).
    """
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        ctx = item.get("ctx") or {}
        if item["type"] == "config_rules":
            problems.extend(ctx["problems"])
            continue
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = env_name(field) if field in fields else f"{PREFIX}*"
        path = item["loc"][1:-2] if item["loc"][-1] == "[key]" else item["loc"][1:]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        message = "is required" if item["type"] == "missing" else item["msg"]
        message = (f"{where}: " if where else "") + message.removeprefix("Value error, ")
        described = fields[field].description if field in fields else None
        fix = ctx.get("fix") or f"set {variable} to {described or 'a valid value'}"
        hidden = field in secrets or field not in fields or item["type"] == "missing"
        problems.append(Problem(variable, message, fix, None if hidden else show(item["input"])))
    return problems
