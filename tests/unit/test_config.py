"""Settings: every refusal names its variable, defaults are documented, secrets never leak."""

from __future__ import annotations

import errno
import os
import tempfile
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from supervisor.config import (
    SECRET_FIELDS,
    AutoApply,
    Channel,
    HealthProbe,
    InfluxVersion,
    LogLevel,
    MaintenanceWindow,
    Policy,
    Role,
    Settings,
    check_directories,
    check_files,
    load_settings,
)
from supervisor.exceptions import ConfigError

pytestmark = pytest.mark.unit

SERVICES = "app=app,python_backend=app,migrations=migrations,postgres=postgres,influxdb=influxdb"
BASE = {
    "SUPERVISOR_COMPOSE_PROJECT": "canopy",
    "SUPERVISOR_SERVICES": SERVICES,
    "SUPERVISOR_COSIGN_PUBLIC_KEY": "/keys/cosign.pub",
}
ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"


def env(**overrides: str | None) -> dict[str, str]:
    """BASE with ``SUPERVISOR_<KEY>`` overridden (None removes it)."""
    result = dict(BASE)
    for key, value in overrides.items():
        name = f"SUPERVISOR_{key}"
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def refusal(values: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(values)
    return caught.value.message


def line_for(message: str, variable: str) -> str:
    """The problem lines about ``variable`` (fails when there is none)."""
    lines = [line for line in message.splitlines() if line.startswith(f"{variable}: ")]
    assert lines, f"no problem reported for {variable}:\n{message}"
    return "\n".join(lines)


# --- valid configurations ---------------------------------------------------------------------


def test_minimal_config_loads_with_documented_defaults() -> None:
    settings = load_settings(BASE)

    assert settings.engine_url == "tcp://docker-proxy:2375"
    assert settings.compose_project == "canopy"
    assert settings.services["python_backend"] is Role.APP
    assert settings.start_order == []
    assert settings.backup_dir == Path("/backups")
    assert settings.state_dir == Path("/state")
    assert settings.freeze_file == Path("/state/FREEZE")
    assert settings.retention_keep == 5
    assert settings.min_free_bytes_margin == 1024**3
    assert settings.migration_timeout == 600
    assert settings.health_timeout == 120
    assert settings.stability_window == 10
    assert min(settings.pull_timeout, settings.stop_timeout, settings.backup_timeout) > 0
    assert settings.exec_timeout > 0
    assert settings.listen_host == "0.0.0.0"
    assert settings.listen_port == 8080
    assert settings.max_body_bytes == 64 * 1024
    assert settings.admin_token is None
    assert settings.read_token is None
    assert settings.restore_over_http is False
    assert settings.signature_policy is Policy.ENFORCE
    assert settings.signature_strict_reference is False
    assert settings.health_probes == []
    assert settings.version_probe is None
    assert settings.registry_mirrors == {}
    assert settings.docker_config is None  # anonymous pulls unless a config.json is given
    assert settings.postgres_password is None
    assert settings.influxdb_version is InfluxVersion.AUTO
    assert settings.channel is Channel.STABLE
    assert settings.auto_apply is AutoApply.OFF
    assert settings.maintenance_window == []  # no window: any time
    assert settings.maturity_hours == 0
    assert settings.maturity_from == "first_seen"
    assert settings.policy_file is None
    assert settings.check_interval == 21600
    assert settings.first_check_delay == 10
    assert settings.hard_pin is None
    assert settings.rehearse is True
    assert settings.log_level is LogLevel.INFO


def test_services_json_and_friendly_form_are_equivalent() -> None:
    json_form = (
        '{"app":"app","python_backend":"app","migrations":"migrations",'
        '"postgres":"postgres","influxdb":"influxdb"}'
    )
    from_json = load_settings(env(SERVICES=json_form))
    friendly = load_settings(env(SERVICES=" app = app , python_backend=app,migrations=migrations,"
                                          "postgres=postgres,influxdb=influxdb,"))  # fmt: skip

    assert from_json.services == friendly.services
    assert list(friendly.services) == [
        "app",
        "python_backend",
        "migrations",
        "postgres",
        "influxdb",
    ]


@pytest.mark.parametrize(
    ("key", "json_form", "friendly", "expected"),
    [
        ("SIGNATURE_POLICY_OVERRIDES", '{"app":"off"}', "app=off", {"app": Policy.OFF}),
        (
            "REGISTRY_MIRRORS",
            '{"127.0.0.1:5000":"http://registry:5000"}',
            "127.0.0.1:5000=http://registry:5000",
            {"127.0.0.1:5000": "http://registry:5000"},
        ),
        ("START_ORDER", '["python_backend","app"]', "python_backend, app", None),
        ("INSECURE_REGISTRIES", '["registry:5000"]', "registry:5000", ["registry:5000"]),
    ],
)
def test_maps_and_lists_accept_json_and_friendly_forms(
    key: str, json_form: str, friendly: str, expected: object
) -> None:
    field = key.lower()
    from_json = getattr(load_settings(env(**{key: json_form})), field)
    from_text = getattr(load_settings(env(**{key: friendly})), field)

    assert from_json == from_text
    assert from_text == (expected if expected is not None else ["python_backend", "app"])


def test_roles_start_order_and_policies_are_exposed() -> None:
    settings = load_settings(
        env(START_ORDER="python_backend,app", SIGNATURE_POLICY_OVERRIDES="app=warn")
    )

    assert settings.app_services == ["python_backend", "app"]
    assert settings.service_for(Role.POSTGRES) == "postgres"
    assert settings.service_for(Role.MIGRATIONS) == "migrations"
    assert settings.policy_for("app") is Policy.WARN
    assert settings.policy_for("python_backend") is Policy.ENFORCE


def test_full_configuration_is_parsed() -> None:
    settings = load_settings(
        env(
            ENGINE_URL="unix:///var/run/docker.sock",
            STATE_DIR="/data/state",
            LISTEN_PORT="9000",
            RESTORE_OVER_HTTP="true",
            HEALTH_PROBES='[{"service":"app","url":"http://app:8000/health"}]',
            VERSION_PROBE='{"service":"python_backend","url":"https://backend/v","json_field":"v"}',
            MAINTENANCE_WINDOW="22:30-04:00; Sat,Sun 02:00-05:00 Europe/Berlin",
            MATURITY_HOURS="36",
            MATURITY_FROM="image_created",
            HARD_PIN="1.4.2",
            RELEASE_MANIFEST_URL="/releases/manifest.json",
            LOG_LEVEL="debug",
            INFLUXDB_VERSION="2",
            AUTO_APPLY="patch",
            CHANNEL="beta",
        )
    )

    assert settings.freeze_file == Path("/data/state/FREEZE")
    assert settings.listen_port == 9000
    assert settings.restore_over_http is True
    assert settings.health_probes == [
        HealthProbe(service="app", url="http://app:8000/health", expect_status=200, timeout=5)
    ]
    assert settings.version_probe is not None
    assert settings.version_probe.json_field == "v"
    assert settings.maintenance_window == [
        MaintenanceWindow(start=time(22, 30), end=time(4, 0)),
        MaintenanceWindow(days=(5, 6), start=time(2), end=time(5), tz="Europe/Berlin"),
    ]
    assert settings.auto_apply is AutoApply.PATCH
    assert settings.maturity_hours == 36
    assert settings.maturity_from == "image_created"
    assert settings.hard_pin == "1.4.2"
    assert settings.log_level is LogLevel.DEBUG
    assert settings.influxdb_version is InfluxVersion.V2


@pytest.mark.parametrize(
    "url", ["tcp://docker-proxy:2375", "unix:///var/run/docker.sock", "https://engine:2376"]
)
def test_engine_url_schemes_accepted(url: str) -> None:
    assert load_settings(env(ENGINE_URL=url)).engine_url == url


@pytest.mark.parametrize(
    ("overrides"),
    [
        {"SIGNATURE_POLICY": "off", "COSIGN_PUBLIC_KEY": None},
        {
            "COSIGN_PUBLIC_KEY": None,
            "SIGNATURE_IDENTITY": "https://github.com/org/repo/.github/workflows/release.yml@main",
            "SIGNATURE_ISSUER": "https://token.actions.githubusercontent.com",
        },
        {
            "COSIGN_PUBLIC_KEY": None,
            "SIGNATURE_IDENTITY_REGEXP": r"^https://github\.com/org/.*$",
            "SIGNATURE_ISSUER": "https://token.actions.githubusercontent.com",
        },
        {
            "COSIGN_PUBLIC_KEY": None,
            "SIGNATURE_POLICY_OVERRIDES": "app=off,python_backend=off,migrations=off",
        },
    ],
    ids=["policy-off", "keyless-identity", "keyless-regexp", "all-overridden-off"],
)
def test_signature_configurations_accepted(overrides: dict[str, str | None]) -> None:
    load_settings(env(**overrides))


def test_maintenance_window_wraps_midnight() -> None:
    window = MaintenanceWindow.parse("22:00-02:00")
    day = datetime(2024, 5, 1, tzinfo=UTC)

    assert window.contains(day.replace(hour=23))
    assert window.contains(day.replace(hour=1, minute=59))
    assert not window.contains(day.replace(hour=2))
    assert not window.contains(day.replace(hour=12))
    assert window.contains(datetime(2024, 5, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))))
    assert not window.contains(datetime(2024, 5, 1, 1, 0, tzinfo=timezone(timedelta(hours=-2))))
    assert str(window) == "daily 22:00-02:00 UTC"
    assert MaintenanceWindow.parse("01:00-03:00").contains(datetime(2024, 5, 1, 1, 0))  # naive


def test_empty_value_counts_as_unset() -> None:
    settings = load_settings(env(HARD_PIN="", ADMIN_TOKEN="", LISTEN_PORT=""))

    assert settings.hard_pin is None
    assert settings.admin_token is None
    assert settings.listen_port == 8080


def test_settings_can_be_built_directly_and_are_frozen() -> None:
    settings = Settings(
        compose_project="canopy", services={"app": Role.APP}, signature_policy=Policy.OFF
    )

    with pytest.raises(ValueError, match="frozen"):
        settings.listen_port = 1  # type: ignore[misc]


def test_secret_fields_cover_every_secret_setting() -> None:
    secret_fields = {
        name
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }

    assert secret_fields == SECRET_FIELDS


# --- refusals -----------------------------------------------------------------------------

REFUSALS: list[tuple[dict[str, str | None], str, str]] = [
    ({"ENGINE_URL": "ftp://engine"}, "SUPERVISOR_ENGINE_URL", "must be tcp://host:port"),
    ({"ENGINE_URL": "tcp://"}, "SUPERVISOR_ENGINE_URL", "must be tcp://host:port"),
    ({"COMPOSE_PROJECT": "Canopy"}, "SUPERVISOR_COMPOSE_PROJECT", "not a Compose project name"),
    ({"COMPOSE_PROJECT": "-x"}, "SUPERVISOR_COMPOSE_PROJECT", "not a Compose project name"),
    ({"COMPOSE_PROJECT": None}, "SUPERVISOR_COMPOSE_PROJECT", "is required"),
    ({"SERVICES": None}, "SUPERVISOR_SERVICES", "is required"),
    ({"SERVICES": "postgres=postgres"}, "SUPERVISOR_SERVICES", "at least one service"),
    ({"SERVICES": "a=app,m=migrations,n=migrations"}, "SUPERVISOR_SERVICES", "role migrations"),
    ({"SERVICES": "a=app,p=postgres,q=postgres"}, "SUPERVISOR_SERVICES", "role postgres"),
    ({"SERVICES": "a=app,i=influxdb,j=influxdb"}, "SUPERVISOR_SERVICES", "role influxdb"),
    ({"SERVICES": "app=app,bad name=app"}, "SUPERVISOR_SERVICES", "not a Compose service name"),
    ({"SERVICES": "app=web"}, "SUPERVISOR_SERVICES", "Input should be 'app'"),
    ({"SERVICES": "app"}, "SUPERVISOR_SERVICES", "is not NAME=VALUE"),
    ({"SERVICES": '{"app": "app",'}, "SUPERVISOR_SERVICES", "not valid JSON"),
    ({"SERVICES": '{"app":"app","app":"app"}'}, "SUPERVISOR_SERVICES", "appears twice"),
    ({"SERVICES": "app=app,app=app"}, "SUPERVISOR_SERVICES", "appears twice"),
    ({"SERVICES": '["app"]'}, "SUPERVISOR_SERVICES", "valid dictionary"),
    ({"START_ORDER": "app,ghost"}, "SUPERVISOR_START_ORDER", "ghost not in SUPERVISOR_SERVICES"),
    ({"START_ORDER": "app,postgres"}, "SUPERVISOR_START_ORDER", "only app services"),
    ({"START_ORDER": "app,app"}, "SUPERVISOR_START_ORDER", "listed twice"),
    ({"RETENTION_KEEP": "0"}, "SUPERVISOR_RETENTION_KEEP", "greater than or equal to 1"),
    ({"MIN_FREE_BYTES_MARGIN": "-1"}, "SUPERVISOR_MIN_FREE_BYTES_MARGIN", "greater than or equal"),
    ({"PULL_TIMEOUT": "0"}, "SUPERVISOR_PULL_TIMEOUT", "greater than 0"),
    ({"STOP_TIMEOUT": "-5"}, "SUPERVISOR_STOP_TIMEOUT", "greater than 0"),
    ({"MIGRATION_TIMEOUT": "ten"}, "SUPERVISOR_MIGRATION_TIMEOUT", "valid number"),
    ({"HEALTH_TIMEOUT": "0"}, "SUPERVISOR_HEALTH_TIMEOUT", "greater than 0"),
    ({"BACKUP_TIMEOUT": "0"}, "SUPERVISOR_BACKUP_TIMEOUT", "greater than 0"),
    ({"EXEC_TIMEOUT": "-1"}, "SUPERVISOR_EXEC_TIMEOUT", "greater than 0"),
    ({"STABILITY_WINDOW": "-1"}, "SUPERVISOR_STABILITY_WINDOW", "greater than or equal to 0"),
    ({"LISTEN_PORT": "0"}, "SUPERVISOR_LISTEN_PORT", "greater than or equal to 1"),
    ({"LISTEN_PORT": "65536"}, "SUPERVISOR_LISTEN_PORT", "less than or equal to 65535"),
    ({"LISTEN_PORT": "http"}, "SUPERVISOR_LISTEN_PORT", "valid integer"),
    ({"MAX_BODY_BYTES": "0"}, "SUPERVISOR_MAX_BODY_BYTES", "greater than or equal to 1"),
    ({"RESTORE_OVER_HTTP": "maybe"}, "SUPERVISOR_RESTORE_OVER_HTTP", "valid boolean"),
    ({"ADMIN_TOKEN": "short"}, "SUPERVISOR_ADMIN_TOKEN", "at least 16 characters"),
    ({"READ_TOKEN": "short"}, "SUPERVISOR_READ_TOKEN", "at least 16 characters"),
    ({"ADMIN_TOKEN": ADMIN, "READ_TOKEN": ADMIN}, "SUPERVISOR_READ_TOKEN", "equals the admin"),
    ({"SIGNATURE_POLICY": "strict"}, "SUPERVISOR_SIGNATURE_POLICY", "'enforce', 'warn' or 'off'"),
    (
        {"SIGNATURE_POLICY_OVERRIDES": "app=strict"},
        "SUPERVISOR_SIGNATURE_POLICY_OVERRIDES",
        "'enforce', 'warn' or 'off'",
    ),
    (
        {"SIGNATURE_POLICY_OVERRIDES": "ghost=off"},
        "SUPERVISOR_SIGNATURE_POLICY_OVERRIDES",
        "ghost not in SUPERVISOR_SERVICES",
    ),
    (
        {"SIGNATURE_IDENTITY_REGEXP": "(", "SIGNATURE_ISSUER": "https://issuer"},
        "SUPERVISOR_SIGNATURE_IDENTITY_REGEXP",
        "does not compile",
    ),
    (
        {
            "SIGNATURE_IDENTITY": "me@example.com",
            "SIGNATURE_IDENTITY_REGEXP": ".*",
            "SIGNATURE_ISSUER": "https://issuer",
        },
        "SUPERVISOR_SIGNATURE_IDENTITY_REGEXP",
        "SUPERVISOR_SIGNATURE_IDENTITY is set as well",
    ),
    (
        {"SIGNATURE_IDENTITY": "me@example.com"},
        "SUPERVISOR_SIGNATURE_ISSUER",
        "needs the OIDC issuer",
    ),
    ({"SIGNATURE_ISSUER": "https://issuer"}, "SUPERVISOR_SIGNATURE_IDENTITY", "no signer identity"),
    ({"COSIGN_PUBLIC_KEY": None}, "SUPERVISOR_SIGNATURE_POLICY", "nothing verifies them"),
    (
        {
            "COSIGN_PUBLIC_KEY": None,
            "SIGNATURE_POLICY": "off",
            "SIGNATURE_POLICY_OVERRIDES": "app=warn",
        },
        "SUPERVISOR_SIGNATURE_POLICY",
        "checked for app but nothing verifies them",
    ),
    (
        {"HEALTH_PROBES": '[{"service":"app","url":"ftp://app/health"}]'},
        "SUPERVISOR_HEALTH_PROBES",
        "[0].url: must be an http:// or https:// URL",
    ),
    (
        {"HEALTH_PROBES": '[{"service":"ghost","url":"http://ghost/"}]'},
        "SUPERVISOR_HEALTH_PROBES",
        "ghost not in SUPERVISOR_SERVICES",
    ),
    (
        {"HEALTH_PROBES": '[{"service":"app","url":"http://app/","expect_status":999}]'},
        "SUPERVISOR_HEALTH_PROBES",
        "expect_status: Input should be less than or equal to 599",
    ),
    (
        {"HEALTH_PROBES": '[{"service":"app","url":"http://app/","timeout":0}]'},
        "SUPERVISOR_HEALTH_PROBES",
        "timeout: Input should be greater than 0",
    ),
    (
        {"HEALTH_PROBES": '[{"service":"app","url":"http://app/","retries":3}]'},
        "SUPERVISOR_HEALTH_PROBES",
        "Extra inputs are not permitted",
    ),
    ({"HEALTH_PROBES": "app=http://app/"}, "SUPERVISOR_HEALTH_PROBES", "not valid JSON"),
    (
        {"VERSION_PROBE": '{"service":"ghost","url":"http://ghost/version"}'},
        "SUPERVISOR_VERSION_PROBE",
        "ghost not in SUPERVISOR_SERVICES",
    ),
    (
        {"VERSION_PROBE": '{"service":"app","url":"app/version"}'},
        "SUPERVISOR_VERSION_PROBE",
        "url: must be an http:// or https:// URL",
    ),
    (
        {"REGISTRY_MIRRORS": "127.0.0.1:5000=http://registry:5000/v2"},
        "SUPERVISOR_REGISTRY_MIRRORS",
        "must not have a path",
    ),
    (
        {"REGISTRY_MIRRORS": "127.0.0.1:5000=ftp://registry"},
        "SUPERVISOR_REGISTRY_MIRRORS",
        "must be an http:// or https:// URL",
    ),
    (
        {"REGISTRY_MIRRORS": "bad/host=http://registry"},
        "SUPERVISOR_REGISTRY_MIRRORS",
        "not a registry host",
    ),
    (
        {"INSECURE_REGISTRIES": "registry:5000,bad host"},
        "SUPERVISOR_INSECURE_REGISTRIES",
        "[1]: not a registry host",
    ),
    ({"REGISTRY_USERNAME": "ci"}, "SUPERVISOR_REGISTRY_PASSWORD", "needs a password"),
    (
        {"REGISTRY_PASSWORD": "registry-password"},
        "SUPERVISOR_REGISTRY_USERNAME",
        "needs a user name",
    ),
    ({"INFLUXDB_VERSION": "3"}, "SUPERVISOR_INFLUXDB_VERSION", "'auto', '1' or '2'"),
    ({"CHANNEL": "nightly"}, "SUPERVISOR_CHANNEL", "'stable' or 'beta'"),
    ({"RELEASE_MANIFEST_URL": "ftp://x/m.json"}, "SUPERVISOR_RELEASE_MANIFEST_URL", "http://"),
    ({"RELEASE_MANIFEST_URL": "m.json"}, "SUPERVISOR_RELEASE_MANIFEST_URL", "http://"),
    ({"AUTO_APPLY": "all"}, "SUPERVISOR_AUTO_APPLY", "'off', 'patch', 'minor' or 'major'"),
    ({"MAINTENANCE_WINDOW": "2-4"}, "SUPERVISOR_MAINTENANCE_WINDOW", "must be like"),
    (
        {"MAINTENANCE_WINDOW": "Sat 02:00-03:00 Mars/Olympus"},
        "SUPERVISOR_MAINTENANCE_WINDOW",
        "is not a time zone",
    ),
    (
        {"MAINTENANCE_WINDOW": "Caturday 02:00-03:00"},
        "SUPERVISOR_MAINTENANCE_WINDOW",
        "is not a weekday",
    ),
    ({"MATURITY_HOURS": "-1"}, "SUPERVISOR_MATURITY_HOURS", "greater than or equal to 0"),
    ({"MATURITY_FROM": "build"}, "SUPERVISOR_MATURITY_FROM", "'first_seen' or 'image_created'"),
    ({"MAINTENANCE_WINDOW": "24:00-01:00"}, "SUPERVISOR_MAINTENANCE_WINDOW", "hours must be"),
    ({"MAINTENANCE_WINDOW": "02:60-03:00"}, "SUPERVISOR_MAINTENANCE_WINDOW", "minutes 00-59"),
    ({"MAINTENANCE_WINDOW": "02:00-02:00"}, "SUPERVISOR_MAINTENANCE_WINDOW", "window is empty"),
    ({"CHECK_INTERVAL": "59"}, "SUPERVISOR_CHECK_INTERVAL", "greater than or equal to 60"),
    ({"FIRST_CHECK_DELAY": "-1"}, "SUPERVISOR_FIRST_CHECK_DELAY", "greater than or equal to 0"),
    ({"HARD_PIN": "latest-ish"}, "SUPERVISOR_HARD_PIN", "is not a version"),
    ({"LOG_LEVEL": "TRACE"}, "SUPERVISOR_LOG_LEVEL", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
]


@pytest.mark.parametrize(
    ("overrides", "variable", "phrase"),
    REFUSALS,
    ids=[f"{variable}-{index}" for index, (_, variable, _) in enumerate(REFUSALS)],
)
def test_invalid_value_is_refused_naming_the_variable(
    overrides: dict[str, str | None], variable: str, phrase: str
) -> None:
    message = refusal(env(**overrides))

    line = line_for(message, variable)
    assert phrase in line
    assert " — " in line  # every problem says how to fix it


def test_every_problem_is_reported_one_line_each() -> None:
    message = refusal(env(PULL_TIMEOUT="-1", LISTEN_PORT="0", CHANNEL="nightly", COLOUR="blue"))

    lines = message.splitlines()
    assert len(lines) == 4
    assert all(line.startswith("SUPERVISOR_") and " — " in line for line in lines)
    assert "(got '-1')" in line_for(message, "SUPERVISOR_PULL_TIMEOUT")
    assert "set SUPERVISOR_PULL_TIMEOUT to a number of seconds" in message


def test_signature_rule_explains_both_options() -> None:
    line = line_for(refusal(env(COSIGN_PUBLIC_KEY=None)), "SUPERVISOR_SIGNATURE_POLICY")

    assert "SUPERVISOR_COSIGN_PUBLIC_KEY" in line
    assert "SUPERVISOR_SIGNATURE_ISSUER" in line
    assert "app, python_backend, migrations" in line


def test_unknown_setting_suggests_the_closest_name() -> None:
    message = refusal(env(LISTEN_PROT="8081"))

    line = line_for(message, "SUPERVISOR_LISTEN_PROT")
    assert "unknown setting SUPERVISOR_LISTEN_PROT; did you mean SUPERVISOR_LISTEN_PORT?" in line
    assert "8081" not in message


def test_unknown_setting_without_close_match() -> None:
    line = line_for(refusal(env(XYZZY="blue")), "SUPERVISOR_XYZZY")

    assert "unknown setting SUPERVISOR_XYZZY" in line
    assert "did you mean" not in line


def test_file_form_only_exists_for_secrets() -> None:
    line = line_for(refusal(env(LOG_LEVEL_FILE="/tmp/x")), "SUPERVISOR_LOG_LEVEL_FILE")

    assert "did you mean SUPERVISOR_LOG_LEVEL?" in line


# --- secrets from files ---------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(SECRET_FIELDS))
def test_secret_is_read_from_file_without_trailing_newline(tmp_path: Path, field: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text(f"{field}-value-0123456789\n")
    extra = {"REGISTRY_USERNAME": "ci"} if field == "registry_password" else {}

    settings = load_settings(env(**{f"{field.upper()}_FILE": str(secret)}, **extra))

    value = getattr(settings, field)
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == f"{field}-value-0123456789"


def test_missing_secret_file_names_the_variable_and_path(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    line = line_for(refusal(env(ADMIN_TOKEN_FILE=str(path))), "SUPERVISOR_ADMIN_TOKEN_FILE")

    assert "cannot read the secret file" in line
    assert str(path) in line


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_text("\n")

    line = line_for(refusal(env(READ_TOKEN_FILE=str(path))), "SUPERVISOR_READ_TOKEN_FILE")

    assert "the secret file is empty" in line
    assert str(path) in line


def test_directory_as_secret_file_is_refused(tmp_path: Path) -> None:
    line = line_for(refusal(env(INFLUX_TOKEN_FILE=str(tmp_path))), "SUPERVISOR_INFLUX_TOKEN_FILE")

    assert "cannot read the secret file" in line


def test_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(ADMIN)

    message = refusal(env(ADMIN_TOKEN=ADMIN, ADMIN_TOKEN_FILE=str(path)))

    line = line_for(message, "SUPERVISOR_ADMIN_TOKEN_FILE")
    assert "both SUPERVISOR_ADMIN_TOKEN and SUPERVISOR_ADMIN_TOKEN_FILE are set" in line
    assert ADMIN not in message


def test_too_short_token_from_file_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("tiny-secret\n")

    message = refusal(env(ADMIN_TOKEN_FILE=str(path)))

    assert "at least 16 characters" in line_for(message, "SUPERVISOR_ADMIN_TOKEN")
    assert "tiny-secret" not in message


# --- secrets never leak -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "secret"),
    [
        ({"ADMIN_TOKEN": "short-secret"}, "short-secret"),
        ({"READ_TOKEN": "short-secret-2"}, "short-secret-2"),
        ({"ADMIN_TOKEN": ADMIN, "READ_TOKEN": ADMIN}, ADMIN),
        ({"REGISTRY_PASSWORD": "hunter2-registry"}, "hunter2-registry"),
        ({"ADMIN_TOKNE": "typo-secret-value"}, "typo-secret-value"),
    ],
    ids=["admin", "read", "equal-tokens", "registry", "unknown-name"],
)
def test_secret_never_appears_in_errors(overrides: dict[str, str], secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env(**overrides))

    error = caught.value
    assert secret not in str(error)
    assert secret not in repr(error.to_dict())
    assert error.__cause__ is None
    assert error.__context__ is None


def test_secret_never_appears_in_repr_or_dump() -> None:
    values = env(
        ADMIN_TOKEN=ADMIN,
        READ_TOKEN=READ,
        POSTGRES_PASSWORD="pg-password-value",
        INFLUX_TOKEN="influx-token-value",
        REGISTRY_USERNAME="ci",
        REGISTRY_PASSWORD="registry-password-value",
    )

    settings = load_settings(values)

    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in (ADMIN, READ, "pg-password-value", "influx-token-value", "registry-password"):
        assert secret not in shown
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == ADMIN


def test_credentials_in_urls_are_masked() -> None:
    message = refusal(env(REGISTRY_MIRRORS="registry=http://user:pa55word@mirror:5000/v2"))

    assert "pa55word" not in message
    assert "***@mirror" in line_for(message, "SUPERVISOR_REGISTRY_MIRRORS")


# --- only the given mapping is read ------------------------------------------------------------


def test_given_env_ignores_the_real_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERVISOR_BOGUS", "1")
    monkeypatch.setenv("SUPERVISOR_LISTEN_PORT", "1234")

    settings = load_settings(BASE)

    assert settings.listen_port == 8080


def test_default_env_is_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.upper().startswith("SUPERVISOR_")]:
        monkeypatch.delenv(name)
    for name, value in env(LISTEN_PORT="1234").items():
        monkeypatch.setenv(name, value)

    assert load_settings().listen_port == 1234


# --- start-up checks of the file system -------------------------------------------------------


def test_check_directories_accepts_writable_directories(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "s").mkdir()
    settings = load_settings(env(BACKUP_DIR=str(tmp_path / "b"), STATE_DIR=str(tmp_path / "s")))

    check_directories(settings)

    assert list((tmp_path / "b").iterdir()) == []  # the write test cleans up


def test_check_directories_names_variable_and_fix(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    settings = load_settings(env(BACKUP_DIR=str(tmp_path / "missing"), STATE_DIR=str(not_a_dir)))

    with pytest.raises(ConfigError) as caught:
        check_directories(settings)

    message = caught.value.message
    backup = line_for(message, "SUPERVISOR_BACKUP_DIR")
    assert "does not exist" in backup
    assert f"bind-mount a writable directory at {tmp_path / 'missing'}" in backup
    assert "is not a directory" in line_for(message, "SUPERVISOR_STATE_DIR")


def test_check_directories_refuses_read_only_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only bind mount, simulated: root would write through permission bits in a test.
    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    settings = load_settings(env(BACKUP_DIR=str(tmp_path), STATE_DIR=str(tmp_path)))

    with pytest.raises(ConfigError) as caught:
        check_directories(settings)

    line = line_for(caught.value.message, "SUPERVISOR_BACKUP_DIR")
    assert "is not writable: Read-only file system" in line
    assert "bind-mount a writable directory" in line


def test_check_files_refuses_unreadable_key(tmp_path: Path) -> None:
    settings = load_settings(env(COSIGN_PUBLIC_KEY=str(tmp_path / "cosign.pub")))

    with pytest.raises(ConfigError) as caught:
        check_files(settings)

    assert "cannot read" in line_for(caught.value.message, "SUPERVISOR_COSIGN_PUBLIC_KEY")
    (tmp_path / "cosign.pub").write_text("-----BEGIN PUBLIC KEY-----\n")
    check_files(settings)
