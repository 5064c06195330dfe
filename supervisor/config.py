"""Settings of the supervisor, read once at start-up from ``SUPERVISOR_*`` variables.

Why so strict: a mistyped setting on a tool that recreates production containers must stop the
sidecar at start-up with a message an operator can act on, not surface as a failed update later.
So :func:`load_settings` refuses unknown ``SUPERVISOR_*`` variables (suggesting the closest one),
reports every problem at once as ``SUPERVISOR_X: what is wrong (got …) — how to fix``, and never
shows a secret's value, neither in messages nor in ``repr(settings)``.

Text forms: maps accept JSON or ``a=b,c=d``; lists accept JSON or ``a,b``; any secret ``X`` may
come from a file with ``SUPERVISOR_X_FILE`` (Compose secrets); an empty variable counts as unset.
Directories and key files are checked separately (:func:`check_directories`, :func:`check_files`)
so that tests can build a :class:`Settings` without touching the file system.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from supervisor._config_env import (
    PREFIX,
    Problem,
    collect,
    env_name,
    parse_json,
    show,
    split_list,
    split_map,
)
from supervisor.exceptions import ConfigError

__all__ = [
    "AutoApply",
    "Channel",
    "HealthProbe",
    "InfluxVersion",
    "LogLevel",
    "MaintenanceWindow",
    "Policy",
    "Role",
    "SECRET_FIELDS",
    "Settings",
    "VersionProbe",
    "check_directories",
    "check_files",
    "env_name",
    "load_settings",
]

SECRET_FIELDS = frozenset(
    {"admin_token", "read_token", "postgres_password", "influx_token", "registry_password"}
)
MIN_TOKEN_LENGTH = 16
_SERVICE_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # Compose service names
_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")  # Compose project names
_REGISTRY_RE = re.compile(r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?")
_WINDOW_RE = re.compile(r"\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*")


class Role(StrEnum):
    """What the supervisor does with a service: update ``app`` images, run ``migrations`` once
    per update, snapshot and restore the two databases."""

    APP = "app"
    MIGRATIONS = "migrations"
    POSTGRES = "postgres"
    INFLUXDB = "influxdb"


class Policy(StrEnum):
    """Signature policy: ``enforce`` refuses unsigned images, ``warn`` logs and goes on."""

    ENFORCE = "enforce"
    WARN = "warn"
    OFF = "off"


class InfluxVersion(StrEnum):
    AUTO = "auto"  # detected from the running container
    V1 = "1"
    V2 = "2"


class Channel(StrEnum):
    STABLE = "stable"  # no pre-releases
    BETA = "beta"


class AutoApply(StrEnum):
    """Which updates the periodic check may apply on its own (inside the maintenance window)."""

    OFF = "off"
    PATCH = "patch"
    MINOR = "minor"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def _http_url(value: str, *, path_allowed: bool = True) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if not path_allowed and (parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError("must not have a path, query or fragment beyond '/'")
    return value


def _managed(info: ValidationInfo) -> dict[str, Role] | None:
    """The validated services (None when they failed: membership cannot be checked then)."""
    services: dict[str, Role] | None = info.data.get("services")
    return services


def _require_managed(names: list[str], info: ValidationInfo) -> None:
    services = _managed(info)
    unknown = [name for name in names if services is not None and name not in services]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not in SUPERVISOR_SERVICES")


class HealthProbe(BaseModel):
    """An HTTP check after recreate: Docker's healthcheck shows the process is alive, a probe
    shows it answers the way the stack needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    service: str
    url: str
    expect_status: int = Field(200, ge=100, le=599)
    timeout: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class VersionProbe(BaseModel):
    """Proves the new version really serves: ``json_field`` of the JSON at ``url``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    service: str
    url: str
    json_field: str = Field("version", min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class MaintenanceWindow(BaseModel):
    """When auto-apply may act, in UTC; ``end`` before ``start`` wraps midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        match = _WINDOW_RE.fullmatch(text)
        if not match:
            raise ValueError("must be HH:MM-HH:MM with 24-hour UTC times")
        h1, m1, h2, m2 = map(int, match.groups())
        if max(h1, h2) > 23 or max(m1, m2) > 59:
            raise ValueError("hours must be 00-23 and minutes 00-59")
        if (h1, m1) == (h2, m2):
            raise ValueError("start and end are equal, so the window is empty")
        return cls(start=time(h1, m1), end=time(h2, m2))

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (naive means UTC) falls inside the window."""
        now = (moment.astimezone(UTC) if moment.tzinfo else moment).time()
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


Seconds = Annotated[float, Field(gt=0, description="a number of seconds greater than 0")]
Token = Annotated[SecretStr | None, Field(description=f"at least {MIN_TOKEN_LENGTH} characters")]
Secret = Annotated[SecretStr | None, Field(description="the secret, or use the _FILE form")]
Name = Annotated[str | None, Field(description="a name")]
FilePath = Annotated[Path | None, Field(description="an absolute path inside the container")]
_MAP = "a JSON object or name=value,name=value"


class Settings(BaseSettings):
    """Everything the supervisor needs; build it with :func:`load_settings`.

    Only init values are used (no environment source): :func:`load_settings` is the one place
    that reads ``SUPERVISOR_*`` variables, so unknown names and ``_FILE`` secrets are handled in
    one way, and tests never see the real environment. Frozen: settings do not change at run time.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="forbid", frozen=True, hide_input_in_errors=True
    )

    # --- the stack -----------------------------------------------------------------------
    engine_url: str = Field("tcp://docker-proxy:2375", description="tcp://, unix://, http(s)://")
    compose_project: str = Field(description="the Compose project name, e.g. canopy")
    services: dict[str, Role] = Field(description=f"{_MAP} of service=role")
    start_order: list[str] = Field(
        default_factory=list, description="app services in start order, a,b"
    )

    # --- storage -------------------------------------------------------------------------
    backup_dir: Path = Field(Path("/backups"), description="a directory path")
    state_dir: Path = Field(Path("/state"), description="a directory path")
    freeze_file: Path = Field(Path("/state/FREEZE"), description="a file path")  # <state_dir>
    retention_keep: int = Field(5, ge=1, description="a whole number of snapshots >= 1")
    min_free_bytes_margin: int = Field(1 << 30, ge=0, description="a number of bytes >= 0")

    # --- timeouts (seconds) --------------------------------------------------------------
    pull_timeout: Seconds = 900.0
    stop_timeout: Seconds = 30.0
    migration_timeout: Seconds = 600.0
    health_timeout: Seconds = 120.0
    stability_window: float = Field(10.0, ge=0, description="a number of seconds >= 0")
    backup_timeout: Seconds = 1800.0
    exec_timeout: Seconds = 300.0

    # --- API -----------------------------------------------------------------------------
    # All interfaces of the container: the API is reached over the stack's internal network.
    listen_host: str = Field("0.0.0.0", min_length=1, description="an address")  # noqa: S104
    listen_port: int = Field(8080, ge=1, le=65535, description="a port from 1 to 65535")
    max_body_bytes: int = Field(64 * 1024, ge=1, description="a number of bytes >= 1")
    admin_token: Token = None
    read_token: Token = None
    restore_over_http: bool = Field(False, description="true or false")  # CLI-only by default

    # --- signatures ----------------------------------------------------------------------
    signature_policy: Policy = Field(Policy.ENFORCE, description="enforce, warn or off")
    signature_policy_overrides: dict[str, Policy] = Field(
        default_factory=dict, description=f"{_MAP} of service=enforce|warn|off"
    )
    cosign_public_key: FilePath = None
    signature_identity: Name = None
    signature_identity_regexp: str | None = Field(None, description="a Python regular expression")
    signature_issuer: Name = None
    trusted_root: FilePath = None
    signature_strict_reference: bool = Field(False, description="true or false")

    # --- health --------------------------------------------------------------------------
    health_probes: list[HealthProbe] = Field(
        default_factory=list,
        description='a JSON list like [{"service":"app","url":"http://app:8000/health"}]',
    )
    version_probe: VersionProbe | None = Field(
        None, description='JSON like {"service":"app","url":"…","json_field":"version"}'
    )

    # --- registry ------------------------------------------------------------------------
    registry_mirrors: dict[str, str] = Field(
        default_factory=dict, description=f"{_MAP} of registry-host=http(s)://mirror"
    )
    insecure_registries: list[str] = Field(
        default_factory=list, description="registry hosts, host:port,host"
    )
    docker_config: Path = Field(  # optional file: used only when it exists
        Path("/root/.docker/config.json"), description="a path to a Docker config.json"
    )
    registry_username: Name = None
    registry_password: Secret = None

    # --- databases (unset: read from the database container's env at run time) -----------
    postgres_db: Name = None
    postgres_user: Name = None
    postgres_password: Secret = None
    influxdb_version: InfluxVersion = Field(InfluxVersion.AUTO, description="auto, 1 or 2")
    influx_token: Secret = None
    influx_org: Name = None

    # --- releases and policy -------------------------------------------------------------
    channel: Channel = Field(Channel.STABLE, description="stable or beta")
    release_manifest_url: str | None = Field(None, description="an http(s) URL or absolute path")
    auto_apply: AutoApply = Field(AutoApply.OFF, description="off, patch or minor")
    maintenance_window: MaintenanceWindow | None = Field(None, description="HH:MM-HH:MM in UTC")
    check_interval: float = Field(21600.0, ge=60, description="a number of seconds >= 60")
    first_check_delay: float = Field(300.0, ge=0, description="a number of seconds >= 0")
    hard_pin: str | None = Field(None, description="a version such as 1.4.2")
    rehearse: bool = Field(True, description="true or false")
    log_level: LogLevel = Field(LogLevel.INFO, description="DEBUG, INFO, WARNING or ERROR")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    # --- text forms ------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _freeze_file_in_state_dir(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("freeze_file") is not None:
            return data
        state_dir = data.get("state_dir") or "/state"
        if not isinstance(state_dir, str | Path):
            return data  # the state_dir error is reported on its own
        return {**data, "freeze_file": Path(state_dir) / "FREEZE"}

    @field_validator("services", "signature_policy_overrides", "registry_mirrors", mode="before")
    @classmethod
    def _map_text(cls, value: Any) -> Any:
        return split_map(value) if isinstance(value, str) else value

    @field_validator("start_order", "insecure_registries", mode="before")
    @classmethod
    def _list_text(cls, value: Any) -> Any:
        return split_list(value) if isinstance(value, str) else value

    @field_validator("health_probes", "version_probe", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        return parse_json(value) if isinstance(value, str) else value

    @field_validator("maintenance_window", mode="before")
    @classmethod
    def _window_text(cls, value: Any) -> Any:
        return MaintenanceWindow.parse(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    # --- single values -------------------------------------------------------------------

    @field_validator("engine_url")
    @classmethod
    def _engine_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "unix" and parts.path:
            return value
        if parts.scheme in ("tcp", "http", "https") and parts.hostname:
            return value
        raise ValueError("must be tcp://host:port, unix:///path/docker.sock or http(s)://host")

    @field_validator("compose_project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not _PROJECT_RE.fullmatch(value):
            raise ValueError(
                "must be lower-case letters, digits, '_' or '-', not starting with _/-"
            )
        return value

    @field_validator("services")
    @classmethod
    def _services(cls, value: dict[str, Role]) -> dict[str, Role]:
        bad = [name for name in value if not _SERVICE_RE.fullmatch(name)]
        if bad:
            raise ValueError(f"invalid Compose service name(s): {', '.join(map(repr, bad))}")
        if Role.APP not in value.values():
            raise ValueError("at least one service must have the role 'app'")
        for role in (Role.MIGRATIONS, Role.POSTGRES, Role.INFLUXDB):
            names = [name for name, given in value.items() if given is role]
            if len(names) > 1:
                raise ValueError(f"only one service may have the role {role}: {', '.join(names)}")
        return value

    @field_validator("start_order")
    @classmethod
    def _start_order(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a service is listed twice")
        _require_managed(value, info)
        services = _managed(info) or {}
        not_app = [name for name in value if services.get(name, Role.APP) is not Role.APP]
        if not_app:
            raise ValueError(f"{', '.join(not_app)} do(es) not have the role 'app'")
        return value

    @field_validator("signature_policy_overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Policy], info: ValidationInfo) -> dict[str, Policy]:
        _require_managed(list(value), info)
        return value

    @field_validator("health_probes")
    @classmethod
    def _probes(cls, value: list[HealthProbe], info: ValidationInfo) -> list[HealthProbe]:
        _require_managed([probe.service for probe in value], info)
        return value

    @field_validator("version_probe")
    @classmethod
    def _version_probe(
        cls, value: VersionProbe | None, info: ValidationInfo
    ) -> VersionProbe | None:
        _require_managed([value.service] if value else [], info)
        return value

    @field_validator("admin_token", "read_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise PydanticCustomError(
                "config",
                f"token is too short: at least {MIN_TOKEN_LENGTH} characters are required",
                {"fix": "generate one with `openssl rand -hex 32`"},
            )
        return value

    @field_validator("signature_identity_regexp")
    @classmethod
    def _regexp(cls, value: str | None) -> str | None:
        try:
            re.compile(value or "")
        except re.error as err:
            raise ValueError(f"does not compile: {err}") from None
        return value

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, value: dict[str, str]) -> dict[str, str]:
        for host, url in value.items():
            if not _REGISTRY_RE.fullmatch(host):
                raise ValueError(f"{host!r} is not a registry host[:port]")
            try:
                _http_url(url, path_allowed=False)
            except ValueError as err:
                raise ValueError(f"mirror for {host}: {err}") from None
        return value

    @field_validator("insecure_registries")
    @classmethod
    def _insecure(cls, value: list[str]) -> list[str]:
        bad = [host for host in value if not _REGISTRY_RE.fullmatch(host)]
        if bad:
            raise ValueError(f"not a registry host[:port]: {', '.join(map(repr, bad))}")
        return value

    @field_validator("release_manifest_url")
    @classmethod
    def _manifest(cls, value: str | None) -> str | None:
        return value if value is None or value.startswith("/") else _http_url(value)

    @field_validator("hard_pin")
    @classmethod
    def _hard_pin(cls, value: str | None) -> str | None:
        try:
            return value if value is None else str(Version(value))
        except InvalidVersion:
            raise ValueError("is not a version (PEP 440 / semantic)") from None

    # --- rules across settings -----------------------------------------------------------

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems: list[Problem] = []

        def add(field: str, message: str, fix: str) -> None:
            problems.append(Problem(env_name(field), message, fix))

        identity, regexp = self.signature_identity, self.signature_identity_regexp
        if identity and regexp:
            add(
                "signature_identity_regexp",
                "SUPERVISOR_SIGNATURE_IDENTITY is set as well",
                "set either the exact identity or the regexp, not both",
            )
        if (identity or regexp) and not self.signature_issuer:
            add(
                "signature_issuer",
                "keyless verification needs an OIDC issuer",
                "set it, e.g. https://token.actions.githubusercontent.com",
            )
        if self.signature_issuer and not (identity or regexp):
            add(
                "signature_identity",
                "an issuer is set but no signer identity",
                "set SUPERVISOR_SIGNATURE_IDENTITY or SUPERVISOR_SIGNATURE_IDENTITY_REGEXP",
            )
        checked = [
            name
            for name in self.services_with_role(Role.APP, Role.MIGRATIONS)
            if self.policy_for(name) is not Policy.OFF
        ]
        keyless = identity or regexp or self.signature_issuer
        if checked and not (self.cosign_public_key or keyless):
            add(
                "signature_policy",
                f"signatures are checked for {', '.join(checked)} but nothing to verify them with",
                "set SUPERVISOR_COSIGN_PUBLIC_KEY to a PEM public key, or for keyless signing "
                "SUPERVISOR_SIGNATURE_IDENTITY (or _REGEXP) plus SUPERVISOR_SIGNATURE_ISSUER; "
                "or set SUPERVISOR_SIGNATURE_POLICY=off",
            )
        if bool(self.registry_username) != bool(self.registry_password):
            missing = "registry_password" if self.registry_username else "registry_username"
            add(
                missing,
                "registry credentials need both a user name and a password",
                f"set {env_name(missing)} too, or neither",
            )
        if self.admin_token and self.admin_token == self.read_token:
            add(
                "read_token",
                "equals the admin token, so read-only clients could change the stack",
                "use two different tokens",
            )
        if problems:
            raise PydanticCustomError(
                "config_rules", "; ".join(p.message for p in problems), {"problems": problems}
            )
        return self

    # --- helpers for the rest of the supervisor ------------------------------------------

    def services_with_role(self, *roles: Role) -> list[str]:
        """Managed services with any of ``roles``; app services in start order."""
        ordered = [*self.start_order, *(n for n in self.services if n not in self.start_order)]
        return [name for name in ordered if self.services[name] in roles]

    @property
    def app_services(self) -> list[str]:
        return self.services_with_role(Role.APP)

    def service_for(self, role: Role) -> str | None:
        """The single migrations/postgres/influxdb service, if one is managed."""
        return next(iter(self.services_with_role(role)), None)

    def policy_for(self, service: str) -> Policy:
        return self.signature_policy_overrides.get(service, self.signature_policy)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default: ``os.environ``), or one :class:`ConfigError` listing all
    problems, one line each. Only ``env`` is read, never the real environment when it is given."""
    values, problems = collect(
        os.environ if env is None else env, Settings.model_fields, SECRET_FIELDS
    )
    try:
        settings = Settings(**values)
    except ValidationError as err:
        problems.extend(_problems(err))
    else:
        if not problems:
            return settings
    raise ConfigError(
        "\n".join(p.render() for p in problems), problems=[p.as_dict() for p in problems]
    )


def _problems(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        ctx = item.get("ctx") or {}
        if item["type"] == "config_rules":
            problems.extend(ctx["problems"])
            continue
        field = str(item["loc"][0])
        variable = env_name(field)
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"][1:]
        )
        message = "is required" if item["type"] == "missing" else item["msg"]
        message = (f"{where.lstrip('.')}: " if where else "") + message.removeprefix(
            "Value error, "
        )
        described = Settings.model_fields[field].description
        fix = ctx.get("fix") or f"set {variable} to {described}"
        hidden = field in SECRET_FIELDS or item["type"] == "missing"
        problems.append(Problem(variable, message, fix, None if hidden else show(item["input"])))
    return problems


def check_directories(settings: Settings) -> None:
    """Refuse to start unless the backup and state directories exist and are writable.

    Checked by writing a file, not with ``os.access``, which trusts mode bits and misses
    read-only mounts and user-namespace mapping.
    """
    problems: list[Problem] = []
    for field in ("backup_dir", "state_dir"):
        path: Path = getattr(settings, field)
        fix = f"bind-mount a writable directory at {path} (writable by uid {os.getuid()})"
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a directory"
            problems.append(Problem(env_name(field), f"{path} {what}", fix))
            continue
        try:
            handle, name = tempfile.mkstemp(prefix=".write-test-", dir=path)
            os.close(handle)
            os.unlink(name)
        except OSError as err:
            problems.append(
                Problem(env_name(field), f"{path} is not writable: {err.strerror}", fix)
            )
    if problems:
        raise ConfigError("\n".join(p.render() for p in problems))


def check_files(settings: Settings) -> None:
    """Refuse to start when a configured key or trust root cannot be read (not at update time)."""
    problems: list[Problem] = []
    for field in ("cosign_public_key", "trusted_root"):
        path: Path | None = getattr(settings, field)
        if path is None:
            continue
        try:
            path.read_bytes()
        except OSError as err:
            problems.append(
                Problem(
                    env_name(field),
                    f"cannot read {path}: {err.strerror}",
                    f"mount the file at {path} or change {env_name(field)}",
                )
            )
    if problems:
        raise ConfigError("\n".join(p.render() for p in problems))
