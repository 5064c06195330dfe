"""The policy file: one mounted, schema-checked TOML document for what an operator *decides*
(auto-apply, windows, maturity, signatures, probes, notifications, per-service settings),
kept apart from the environment, which says what the deployment *is* (project, engine,
directories) and holds the secrets.

Example (``compose/policy.toml``)::

    [updates]
    auto_apply = "patch"                                  # off | patch | minor | major
    maintenance_windows = ["Sat,Sun 02:00-05:00 Europe/Berlin"]
    maturity_hours = 24
    maturity_from = "first_seen"                          # or "image_created"

    [signatures]
    policy = "enforce"

    [probes]
    health = [{ service = "app", url = "http://app:8000/health" }]

    [notifications]
    urls_file = "/run/secrets/apprise_urls"

    [services.app]
    start_order = 1

The model is strict (unknown keys and wrong types are refused) and every problem is reported
at once, each named by its place in the file (``updates.maturity_hours: …``). Each key maps to
one setting of :class:`supervisor.config.Settings` (:data:`FIELDS`), so the file and the
environment are checked by the same model and mean the same thing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.const import Role
from supervisor.notify.config import NotificationSettings
from supervisor.signatures.models import Policy

_STRICT = ConfigDict(extra="forbid", frozen=True)


class _Section(BaseModel):
    model_config = _STRICT


class Updates(_Section):
    auto_apply: Literal["off", "patch", "minor", "major"] | None = None
    maintenance_windows: list[str] | None = None
    maturity_hours: float | None = Field(None, ge=0)
    maturity_from: Literal["first_seen", "image_created"] | None = None
    hard_pin: str | None = None
    channel: Literal["stable", "beta"] | None = None
    check_interval: float | None = Field(None, ge=60)


class Signatures(_Section):
    policy: Policy | None = None
    overrides: dict[str, Policy] | None = None
    strict_reference: bool | None = None


class Probes(_Section):
    health: list[dict[str, Any]] | None = None
    version: dict[str, Any] | None = None
    health_timeout: float | None = Field(None, gt=0)
    stability_window: float | None = Field(None, ge=0)


class ServicePolicy(_Section):
    """Settings that belong to one service (also given as labels on it)."""

    role: Role | None = None
    signature_policy: Policy | None = None
    start_order: int | None = Field(None, ge=0)
    update_order: Literal["stop-first", "start-first"] | None = None


class PolicyDocument(_Section):
    updates: Updates = Updates()
    signatures: Signatures = Signatures()
    probes: Probes = Probes()
    notifications: NotificationSettings | None = None
    services: dict[str, ServicePolicy] = Field(default_factory=dict)


# file key → Settings field (the per-service table is merged separately)
FIELDS: dict[tuple[str, str], str] = {
    ("updates", "auto_apply"): "auto_apply",
    ("updates", "maintenance_windows"): "maintenance_window",
    ("updates", "maturity_hours"): "maturity_hours",
    ("updates", "maturity_from"): "maturity_from",
    ("updates", "hard_pin"): "hard_pin",
    ("updates", "channel"): "channel",
    ("updates", "check_interval"): "check_interval",
    ("signatures", "policy"): "signature_policy",
    ("signatures", "overrides"): "signature_policy_overrides",
    ("signatures", "strict_reference"): "signature_strict_reference",
    ("probes", "health"): "health_probes",
    ("probes", "version"): "version_probe",
    ("probes", "health_timeout"): "health_timeout",
    ("probes", "stability_window"): "stability_window",
}


def read_document(path: Path) -> PolicyDocument:
    """The parsed file, or ValueError listing every problem (one per line, by file key)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    try:
        return PolicyDocument.model_validate(raw)
    except ValidationError as err:
        raise ValueError("\n".join(_lines(path, err))) from None


def _lines(path: Path, err: ValidationError) -> list[str]:
    lines = []
    for item in err.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (see docs/runbook.md, unattended updates, for the keys)"
        lines.append(f"{path}: {where}: {message}")
    return lines


def settings_values(document: PolicyDocument) -> dict[str, Any]:
    """The Settings fields the document sets (only those it sets)."""
    values: dict[str, Any] = {}
    for (section, key), field in FIELDS.items():
        value = getattr(getattr(document, section), key)
        if value is None:
            continue
        if field == "maintenance_window":
            value = "; ".join(value)
        values[field] = value
    return values
