"""What the shipped files promise, kept true without an engine (so it runs with the unit tests).

* docs/api.md documents every operation of ``/openapi.json``;
* compose/.env.example documents every ``SUPERVISOR_*`` setting, and the compose file
  passes each one to the sidecar (or fixes it there);
* the docker-proxy grants in compose/ are the ones the real-engine tests give the
  sidecar, and docs/security.md explains every flag;
* every ``supervisor COMMAND`` and ``make TARGET`` the operator docs name exists.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from supervisor.api.openapi import document
from supervisor.cli.parser import build_parser
from supervisor.config import SECRET_FIELDS, Settings, env_name
from supervisor.policy.document import FIELDS, read_document
from tests.conftest import SIDECAR_PROXY_GRANTS
from tests.support.testenv import ROOT

pytestmark = pytest.mark.unit
DOCS = ROOT / "docs"
COMPOSE = ROOT / "compose"
OPERATOR_DOCS = ("runbook.md", "security.md", "integration.md")
PROXY_FLAGS = (
    "EVENTS", "PING", "VERSION", "AUTH", "BUILD", "COMMIT", "CONFIGS", "CONTAINERS",
    "DISTRIBUTION", "EXEC", "GRPC", "IMAGES", "INFO", "NETWORKS", "NODES", "PLUGINS",
    "SECRETS", "SERVICES", "SESSION", "SWARM", "SYSTEM", "TASKS", "VOLUMES", "POST",
)  # fmt: skip


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return loaded


def test_api_reference_documents_every_openapi_operation() -> None:
    text = (DOCS / "api.md").read_text()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in document()["paths"].items()
        for method in operations
        if not re.search(re.escape(f"`{method.upper()} {path}") + r"[`?]", text)
    ]
    assert not missing, f"docs/api.md does not document: {missing}"


def test_env_example_documents_every_setting() -> None:
    """Deployment settings in .env.example; what the operator decides in policy.toml.example
    (and not in .env, where the shipped compose file would not pass it)."""
    text = (COMPOSE / ".env.example").read_text()
    policy = set(FIELDS.values())
    missing = [
        env_name(field)
        for field in Settings.model_fields
        if field not in policy
        and not re.search(rf"^#? ?{env_name(field)}(_FILE)?=", text, re.MULTILINE)
    ]
    assert not missing, f"compose/.env.example does not mention: {missing}"
    misplaced = [env_name(f) for f in policy if re.search(rf"^{env_name(f)}=", text, re.M)]
    assert not misplaced, f"policy settings belong in config/policy.toml: {misplaced}"
    example = (COMPOSE / "policy.toml.example").read_text()
    absent = [f"{s}.{k}" for s, k in FIELDS if not re.search(rf"^#? ?{k} =", example, re.M)]
    assert not absent, f"compose/policy.toml.example does not mention: {absent}"
    read_document(COMPOSE / "policy.toml.example")  # and it is a valid policy file


def test_compose_passes_every_setting_to_the_sidecar() -> None:
    """Each deployment setting is passed (or fixed); policy comes from the mounted file."""
    service = compose_file()["services"]["supervisor"]
    environment = service["environment"]
    policy = set(FIELDS.values())
    missing = []
    for field in Settings.model_fields:
        names = {env_name(field), env_name(field) + "_FILE"}
        if field not in policy and not names & set(environment):
            missing.append(env_name(field))
    assert not missing, f"docker-compose.yml does not pass: {missing}"
    passed = [env_name(f) for f in policy if env_name(f) in environment]
    assert not passed, f"policy settings come from config/policy.toml, not env: {passed}"
    assert environment["SUPERVISOR_POLICY_FILE"] == "/config/policy.toml"
    assert "./config:/config:ro" in service["volumes"]
    known = {env_name(f) for f in Settings.model_fields}
    known |= {env_name(f) + "_FILE" for f in SECRET_FIELDS}
    unknown = [name for name in environment if name not in known]
    assert not unknown, f"the sidecar would refuse these: {unknown}"


def test_proxy_grants_are_the_tested_ones_and_documented() -> None:
    service = compose_file()["services"]["docker-proxy"]
    granted = {k: str(v) for k, v in service["environment"].items() if str(v) == "1"}
    assert granted == SIDECAR_PROXY_GRANTS
    assert service["networks"] == ["docker_api"]
    assert compose_file()["networks"]["docker_api"]["internal"] is True
    security = (DOCS / "security.md").read_text()
    undocumented = [flag for flag in PROXY_FLAGS if f"`{flag}`" not in security]
    assert not undocumented, f"docs/security.md does not explain: {undocumented}"


@pytest.mark.parametrize("name", OPERATOR_DOCS)
def test_operator_docs_name_only_real_commands(name: str) -> None:
    text = (DOCS / name).read_text()
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    named = set(re.findall(r"\bsupervisor (?:--[a-z-]+ \S+ )*([a-z]+)\b", text))
    # Prose ("the supervisor container") and the service name (`exec supervisor supervisor …`).
    named -= {"sidecar", "container", "image", "service", "supervisor"}
    assert named <= commands, f"{name} names unknown CLI commands: {named - commands}"
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    made = set(re.findall(r"(?:`|^\s*)make ([a-z-]+)", text, re.MULTILINE))
    assert made <= targets, f"{name} names unknown make targets: {made - targets}"
