"""Signature policy in a real update run: enforce refuses an unsigned release in
``verify`` with the stack untouched; warn lets it through and records why."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from supervisor.update.models import StartRequest
from supervisor.update.stages import Stage
from tests.support.compose import StackFactory
from tests.support.pg_state import state
from tests.support.sidecar import app_version, sidecar, stack_postgres, stack_settings


def public_key_file(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = directory / "cosign.pub"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


async def test_enforce_refuses_unsigned_release_and_warn_records_it(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    key = public_key_file(tmp_path)
    with compose_stack("1.0.0") as project:
        pg = stack_postgres(project)
        before, app_before = state(pg), project.container("app")
        enforce = stack_settings(
            project, docker_proxy_url, tmp_path / "enforce", signature_policy="enforce",
            cosign_public_key=str(key), rehearse="false",
        )  # fmt: skip
        async with sidecar(enforce) as runtime:
            started = await runtime.manager.start(StartRequest(target_version="1.1.0"))
            record = await runtime.manager.wait(started.update_id)
            assert record.result is Stage.FAILED
            assert record.error is not None
            assert (record.error.stage, record.error.error_key) == (
                Stage.VERIFY,
                "signature_refused",
            )
            assert {v.service for v in record.verdicts if v.refused} == {
                "app",
                "python_backend",
                "migrations",
            }
            assert all(not v.verified for v in record.verdicts)
            assert project.container("app") == app_before  # never stopped, never recreated
            assert state(pg) == before
            assert runtime.manager.deps.state.read_pins() == {}
            info = await runtime.manager.version_info()
            assert info["signatures"][0]["policy"] == "enforce"

        warn = stack_settings(
            project, docker_proxy_url, tmp_path / "warn", signature_policy="warn",
            cosign_public_key=str(key), rehearse="false",
        )  # fmt: skip
        async with sidecar(warn) as runtime:
            started = await runtime.manager.start(StartRequest(target_version="1.1.0"))
            record = await runtime.manager.wait(started.update_id)
            assert record.result is Stage.COMPLETED, record.error
            assert app_version(project) == "1.1.0"
            assert any("unverified signature allowed by policy warn" in w for w in record.warnings)
            assert any(
                "unverified signature" in line for line in runtime.manager.history()[0].warnings
            )
