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
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
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
    problems_from,
    split_list,
    split_map,
)
from supervisor.const import Role
from supervisor.exceptions import ConfigError
from supervisor.policy.levels import AutoApply
from supervisor.policy.windows import MaintenanceWindow, parse_windows
from supervisor.signatures.models import Policy

__all__ = [
    "SECRET_FIELDS", "AutoApply", "Channel", "HealthProbe", "InfluxVersion", "LogLevel",
    "MaintenanceWindow", "Policy", "Role", "Settings", "VersionProbe", "check_directories",
    "check_files", "env_name", "load_settings",
]  # fmt: skip

SECRET_FIELDS = frozenset(
    {"admin_token", "read_token", "postgres_password", "influx_token", "registry_password"}
)
MIN_TOKEN_LENGTH = 16


class InfluxVersion(StrEnum):
    AUTO = "auto"  # detected from the running container
    V1 = "1"
    V2 = "2"


class Channel(StrEnum):
    STABLE = "stable"  # no pre-releases
    BETA = "beta"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


# --- single values: each check raises ValueError, reported against the variable -------------


def _matches(pattern: str, what: str) -> AfterValidator:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"not {what}")
        return value

    return AfterValidator(check)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _mirror_url(value: str) -> str:
    parts = urlsplit(_http_url(value))
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a mirror URL must not have a path beyond '/'")
    return value


def _engine_url(value: str) -> str:
    parts = urlsplit(value)
    if (parts.scheme == "unix" and parts.path) or (
        parts.scheme in ("tcp", "http", "https") and parts.hostname
    ):
        return value
    raise ValueError("must be tcp://host:port, unix:///path/docker.sock or http(s)://host")


def _url_or_path(value: str) -> str:
    return value if value.startswith("/") else _http_url(value)


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
        raise PydanticCustomError(
            "config",
            f"token is too short: at least {MIN_TOKEN_LENGTH} characters are required",
            {"fix": "generate one with `openssl rand -hex 32`"},
        )
    return value


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"regular expression does not compile: {err}") from None
    return value


def _version(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError("is not a version such as 1.4.2") from None
    return value


ServiceName = Annotated[
    str, _matches(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", "a Compose service name (letters, digits, _.-)")
]
ProjectName = Annotated[
    str, _matches(r"[a-z0-9][a-z0-9_-]*", "a Compose project name (a-z, 0-9, _ and -)")
]
RegistryHost = Annotated[
    str, _matches(r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?", "a registry host[:port]")
]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Seconds = Annotated[float, Field(gt=0, description="a number of seconds greater than 0")]
Token = Annotated[SecretStr, AfterValidator(_long_enough)]
Name = Annotated[str | None, Field(description="a name")]
Secret = Annotated[SecretStr | None, Field(description="the secret, or use the _FILE form")]
FilePath = Annotated[Path | None, Field(description="an absolute path inside the container")]


class HealthProbe(BaseModel):
    """An HTTP check after recreate: Docker's healthcheck shows the process is alive, a probe
    shows it answers the way the stack needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    service: str
    url: HttpUrl
    expect_status: int = Field(200, ge=100, le=599)
    timeout: float = Field(5.0, gt=0)


class VersionProbe(BaseModel):
    """Proves the new version really serves: ``json_field`` of the JSON document at ``url``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    service: str
    url: HttpUrl
    json_field: str = Field("version", min_length=1)


_MAP = "a JSON object or name=value,name=value"
_TEXT_FORMS: dict[str, Callable[[str], Any]] = {
    "services": split_map,
    "update_order": split_map,
    "signature_policy_overrides": split_map,
    "registry_mirrors": split_map,
    "start_order": split_list,
    "insecure_registries": split_list,
    "config_paths": split_list,
    "health_probes": parse_json,
    "version_probe": parse_json,
    "maintenance_window": parse_windows,
    "log_level": str.upper,
}


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
    engine_url: Annotated[str, AfterValidator(_engine_url)] = Field(
        "tcp://docker-proxy:2375", description="tcp://host:port (the docker-socket-proxy)"
    )
    compose_project: ProjectName = Field(description="the Compose project name, e.g. canopy")
    services: dict[ServiceName, Role] = Field(description=f"{_MAP} of service=role")
    start_order: list[str] = Field(default_factory=list, description="app services, a,b")
    # start-first: the new version starts next to the old one, which serves until the new
    # one is healthy (only for releases that declare backward-compatible migrations).
    update_order: dict[ServiceName, Literal["stop-first", "start-first"]] = Field(
        default_factory=dict, description=f"{_MAP} of service=stop-first|start-first"
    )
    # start-first: how long the old and new containers both answer to the service name
    # before the old ones stop: at least the DNS cache time of the proxy in front.
    start_first_drain: float = Field(2.0, ge=0, description="a number of seconds >= 0")

    # --- storage -------------------------------------------------------------------------
    backup_dir: Path = Field(Path("/backups"), description="a directory path")
    # Where backup_dir is on the engine's host, so a restore can hand the dump to the
    # database container in place instead of uploading it (supervisor.snapshots.in_place):
    # auto = the sidecar's own container's mount of backup_dir; off = always upload.
    backup_host_dir: Annotated[
        str, _matches(r"auto|off|/.*", "auto, off, or an absolute path on the engine's host")
    ] = "auto"
    # Files or directories archived into every snapshot (e.g. the app's config volume,
    # mounted read-only into the sidecar).
    config_paths: list[Path] = Field(
        default_factory=list, description="absolute paths, comma-separated"
    )
    state_dir: Path = Field(Path("/state"), description="a directory path")
    freeze_file: Path = Field(Path("/state/FREEZE"), description="a file path")  # <state_dir>
    retention_keep: int = Field(5, ge=1, description="a number of snapshots >= 1")
    # Preflight wants the estimated snapshot size plus this much free: a full disk mid-backup
    # would leave the stack stopped with no snapshot.
    min_free_bytes_margin: int = Field(1 << 30, ge=0, description="a number of bytes >= 0")

    # --- timeouts (seconds) --------------------------------------------------------------
    pull_timeout: Seconds = 900.0
    stop_timeout: Seconds = 30.0
    migration_timeout: Seconds = 600.0
    health_timeout: Seconds = 120.0
    # Healthy once is not enough: the new version must stay healthy, without restarts, this long.
    stability_window: float = Field(10.0, ge=0, description="a number of seconds >= 0")
    backup_timeout: Seconds = 1800.0
    exec_timeout: Seconds = 300.0

    # --- API (all interfaces of the container: it is reached over the internal network) ----
    listen_host: str = Field("0.0.0.0", min_length=1, description="an address")  # noqa: S104
    listen_port: int = Field(8080, ge=1, le=65535, description="a port from 1 to 65535")
    max_body_bytes: int = Field(64 * 1024, ge=1, description="a number of bytes >= 1")
    admin_token: Token | None = Field(None, description="a token of 16+ characters")
    read_token: Token | None = Field(None, description="a token of 16+ characters")
    # Restoring overwrites live data; by default only an operator at the CLI may do it.
    restore_over_http: bool = Field(False, description="true or false")

    # --- signatures ----------------------------------------------------------------------
    signature_policy: Policy = Field(Policy.ENFORCE, description="enforce, warn or off")
    signature_policy_overrides: dict[str, Policy] = Field(
        default_factory=dict, description=f"{_MAP} of service=enforce|warn|off"
    )
    cosign_public_key: FilePath = None
    signature_identity: Name = None
    signature_identity_regexp: Annotated[str, AfterValidator(_compiles)] | None = Field(
        None, description="a Python regular expression matching the signer identity"
    )
    signature_issuer: Name = None
    trusted_root: FilePath = None
    # Also require the signed payload to name the repository pulled; off by default because a
    # mirror or a re-tagged local registry changes the name but not the digest that is signed.
    signature_strict_reference: bool = Field(False, description="true or false")

    # --- health --------------------------------------------------------------------------
    health_probes: list[HealthProbe] = Field(
        default_factory=list, description='a JSON list like [{"service":"app","url":"http://…"}]'
    )
    version_probe: VersionProbe | None = Field(
        None, description='JSON like {"service":"app","url":"http://…","json_field":"version"}'
    )

    # --- registry ------------------------------------------------------------------------
    registry_mirrors: dict[RegistryHost, Annotated[str, AfterValidator(_mirror_url)]] = Field(
        default_factory=dict, description=f"{_MAP} of registry-host=http(s)://mirror:port"
    )
    insecure_registries: list[RegistryHost] = Field(
        default_factory=list, description="registry hosts, host:port,host"
    )
    # Registry credentials in Docker's format; used only if the file exists.
    # Docker's config.json with registry credentials; unset means anonymous pulls.
    docker_config: Path | None = Field(None, description="a path to a Docker config.json")
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
    release_manifest_url: Annotated[str, AfterValidator(_url_or_path)] | None = Field(
        None, description="an http(s) URL or an absolute file path"
    )
    # Unattended updates (supervisor.policy): which steps the periodic loop may apply on its
    # own, when it may start one, and how old a release must be first.
    auto_apply: AutoApply = Field(AutoApply.OFF, description="off, patch, minor or major")
    maintenance_window: list[MaintenanceWindow] = Field(
        default_factory=list,
        description="windows like 'Sat,Sun 02:00-05:00 Europe/Berlin', separated by ';'",
    )
    maturity_hours: float = Field(0.0, ge=0, description="a number of hours >= 0")
    maturity_from: Literal["first_seen", "image_created"] = Field(
        "first_seen", description="first_seen or image_created"
    )
    # The policy file (TOML) for what an operator decides; it overrides these variables and
    # is reloaded on SIGHUP or POST /admin/policy/reload (supervisor.policy.document).
    policy_file: Path | None = Field(None, description="an absolute path to a TOML file")
    check_interval: float = Field(21600.0, ge=60, description="a number of seconds >= 60")
    first_check_delay: float = Field(10.0, ge=0, description="a number of seconds >= 0")
    hard_pin: Annotated[str, AfterValidator(_version)] | None = Field(
        None, description="a version such as 1.4.2"
    )
    # Run the migrations against a scratch copy first, so a broken one fails before anything stops.
    rehearse: bool = Field(True, description="true or false")
    # While the app is stopped, copy the database inside its server (about a second per GB)
    # so that a rollback swaps the copy back in instead of restoring the dump
    # (supervisor.snapshots.postgres_copy). Needs the database's size free on its volume.
    rollback_copy: bool = Field(True, description="true or false")
    # Deprecated, ignored: the rehearsal used to point this variable of the migrations container
    # at a scratch database; it now runs them on an isolated server that holds the copy under
    # the live name (supervisor.engine.sandbox), so nothing is overridden. Still accepted so an
    # existing .env keeps loading; the rehearsal logs that it is ignored.
    rehearsal_database_env: (
        Annotated[str, _matches(r"[A-Za-z_][A-Za-z0-9_]*", "a variable name")] | None
    ) = Field(None, description="deprecated and ignored (any variable name)")
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

    @model_validator(mode="before")
    @classmethod
    def _freeze_file_in_state_dir(cls, data: Any) -> Any:
        """The freeze file defaults to ``<state_dir>/FREEZE``, wherever the state lives."""
        if not isinstance(data, dict) or data.get("freeze_file") is not None:
            return data
        state_dir = data.get("state_dir") or "/state"
        if not isinstance(state_dir, str | Path):
            return data  # refused as state_dir's own error
        return {**data, "freeze_file": Path(state_dir) / "FREEZE"}

    @field_validator(*_TEXT_FORMS, mode="before")
    @classmethod
    def _text_forms(cls, value: Any, info: ValidationInfo) -> Any:
        """Env values are text: parse maps, lists, JSON and windows (ValueError is reported)."""
        return _TEXT_FORMS[info.field_name or ""](value) if isinstance(value, str) else value

    @field_validator("services")
    @classmethod
    def _roles(cls, value: dict[str, Role]) -> dict[str, Role]:
        if Role.APP not in value.values():
            raise ValueError("at least one service must have the role 'app'")
        for role in (Role.MIGRATIONS, Role.POSTGRES, Role.INFLUXDB):
            names = [name for name, given in value.items() if given is role]
            if len(names) > 1:
                raise ValueError(f"only one service may have the role {role}: {', '.join(names)}")
        return value

    @field_validator(
        "start_order", "signature_policy_overrides", "health_probes", "version_probe",
        "update_order",
    )  # fmt: skip
    @classmethod
    def _managed(cls, value: Any, info: ValidationInfo) -> Any:
        """Names must be managed services (unchecked when ``services`` itself was refused)."""
        services: dict[str, Role] | None = info.data.get("services")
        items: list[Any] = [*value] if isinstance(value, list | dict) else [value] if value else []
        names = [str(getattr(item, "service", item)) for item in items]
        if services is not None and (unknown := [n for n in names if n not in services]):
            raise ValueError(f"{', '.join(unknown)} not in SUPERVISOR_SERVICES")
        if info.field_name == "start_order":
            if len(set(names)) != len(names):
                raise ValueError("a service is listed twice")
            if others := [n for n in names if services and services.get(n) is not Role.APP]:
                raise ValueError(f"only app services can be ordered, not {', '.join(others)}")
        return value

    @model_validator(mode="after")
    def _rules(self) -> Self:
        """Rules across settings; every broken one is reported, not just the first.

        Signatures are checked for the images the supervisor updates (app and migrations), so
        those need a public key or a keyless identity + issuer unless their policy is ``off``.
        """
        identity, regexp = self.signature_identity, self.signature_identity_regexp
        issuer = self.signature_issuer
        user, password = self.registry_username, self.registry_password
        verified = [
            name
            for name in self.services_with_role(Role.APP, Role.MIGRATIONS)
            if self.policy_for(name) is not Policy.OFF
        ]
        rules = [  # (broken?, variable, what is wrong, how to fix)
            (identity and regexp, "signature_identity_regexp",
             "SUPERVISOR_SIGNATURE_IDENTITY is set as well", "set the identity or the regexp"),
            ((identity or regexp) and not issuer, "signature_issuer",
             "keyless verification needs the OIDC issuer",
             "set it, e.g. https://token.actions.githubusercontent.com"),
            (issuer and not (identity or regexp), "signature_identity",
             "an issuer is set but no signer identity",
             "set SUPERVISOR_SIGNATURE_IDENTITY or SUPERVISOR_SIGNATURE_IDENTITY_REGEXP too"),
            (verified and not (self.cosign_public_key or identity or regexp or issuer),
             "signature_policy",
             f"signatures are checked for {', '.join(verified)} but nothing verifies them",
             "set SUPERVISOR_COSIGN_PUBLIC_KEY to a PEM public key, or (keyless) "
             "SUPERVISOR_SIGNATURE_IDENTITY or _IDENTITY_REGEXP plus SUPERVISOR_SIGNATURE_ISSUER;"
             " or set SUPERVISOR_SIGNATURE_POLICY=off"),
            (user and not password, "registry_password", "a registry user name needs a password",
             "set it as well, or unset SUPERVISOR_REGISTRY_USERNAME"),
            (password and not user, "registry_username", "a registry password needs a user name",
             "set it as well, or unset SUPERVISOR_REGISTRY_PASSWORD"),
            (self.admin_token and self.admin_token == self.read_token, "read_token",
             "equals the admin token, so read-only clients could change the stack",
             "use two different tokens"),
        ]  # fmt: skip
        problems = [Problem(env_name(f), what, fix) for broken, f, what, fix in rules if broken]
        if problems:
            message = "; ".join(problem.message for problem in problems)
            raise PydanticCustomError("config_rules", message, {"problems": problems})
        return self

    # --- for the rest of the supervisor --------------------------------------------------

    def services_with_role(self, *roles: Role) -> list[str]:
        """Managed services with any of ``roles``; app services come in start order."""
        ordered = [*self.start_order, *(n for n in self.services if n not in self.start_order)]
        return [name for name in ordered if self.services[name] in roles]

    @property
    def app_services(self) -> list[str]:
        """App services in start order (stop them in reverse)."""
        return self.services_with_role(Role.APP)

    def migrations_source(self) -> str:
        """The service whose target image the migrations run from: the migrations service,
        else the last app service (its image carries the migrations)."""
        return self.service_for(Role.MIGRATIONS) or self.app_services[-1]

    def service_for(self, role: Role) -> str | None:
        """The migrations, postgres or influxdb service, if one is managed."""
        return next(iter(self.services_with_role(role)), None)

    def policy_for(self, service: str) -> Policy:
        return self.signature_policy_overrides.get(service, self.signature_policy)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (``os.environ`` when None), or one :class:`ConfigError` listing
    every problem, one line each. When ``env`` is given, nothing else is read."""
    values, problems = collect(
        os.environ if env is None else env, Settings.model_fields, SECRET_FIELDS
    )
    try:
        settings = Settings.model_validate(values)
    except ValidationError as err:
        problems.extend(problems_from(err, Settings.model_fields, SECRET_FIELDS))
    else:
        if not problems:
            return settings
    raise ConfigError(
        "\n".join(p.render() for p in problems), problems=[p.as_dict() for p in problems]
    )


def check_directories(settings: Settings) -> None:
    """Refuse to start unless the backup and state directories exist and are writable.

    Checked by writing a file rather than with ``os.access``, which trusts mode bits and misses
    some read-only mounts and user-namespace mappings.
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
    """Refuse to start when the configured public key or trust root cannot be read, rather than
    failing the first update that needs it."""
    problems: list[Problem] = []
    for field in ("cosign_public_key", "trusted_root"):
        path: Path | None = getattr(settings, field)
        try:
            if path is not None:
                path.read_bytes()
        except OSError as err:
            fix = f"mount the file at {path} or change {env_name(field)}"
            problems.append(Problem(env_name(field), f"cannot read {path}: {err.strerror}", fix))
    if problems:
        raise ConfigError("\n".join(p.render() for p in problems))
