"""The policy file and service labels over the environment: precedence, sources, reload."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from supervisor.cli import run
from supervisor.exceptions import ConfigError
from supervisor.policy.document import FIELDS, PolicyDocument
from supervisor.signatures.models import Policy
from tests.support.api_world import Adapters, api_world, auth, sidecar_env

pytestmark = pytest.mark.unit
KEY = "/keys/cosign.pub"  # never read: the signature adapter is a fake

POLICY = """
[updates]
auto_apply = "minor"
maintenance_windows = ["Sat,Sun 02:00-05:00 Europe/Berlin", "Wed 12:00-13:00"]
maturity_hours = 12
maturity_from = "image_created"
check_interval = 3600

[signatures]
policy = "warn"
overrides = { migrations = "off" }

[probes]
health = [{ service = "app", url = "http://app:8000/health" }]
stability_window = 3

[services.app]
signature_policy = "enforce"
start_order = 2

[services.python_backend]
start_order = 1
"""


async def test_the_file_overrides_the_environment_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    async with api_world(tmp_path, auto_apply="patch", maturity_hours="1",
                         cosign_public_key=KEY, policy_file=str(tmp_path / "policy.toml")) as world:  # fmt: skip
        effective = world.runtime.policy.settings
        assert effective.auto_apply.value == "minor"
        assert [str(w) for w in effective.maintenance_window] == [
            "Sat,Sun 02:00-05:00 Europe/Berlin", "Wed 12:00-13:00 UTC",
        ]  # fmt: skip
        assert effective.maturity_hours == 12
        assert effective.check_interval == 3600
        assert effective.policy_for("app") is Policy.ENFORCE  # [services.app] over [signatures]
        assert effective.policy_for("python_backend") is Policy.WARN
        assert effective.policy_for("migrations") is Policy.OFF
        assert effective.stability_window == 3
        assert effective.app_services == ["python_backend", "app"]
        assert world.manager.settings is effective  # runs use the merged settings
        sources = world.runtime.policy.describe()["settings"]
        file = f"file {tmp_path / 'policy.toml'}"
        assert sources["auto_apply"] == {"value": "minor", "source": file}
        assert sources["signature_policy_overrides"]["source"] == file
        assert sources["hard_pin"] == {"value": None, "source": "default"}
        assert sources["services"]["source"] == "env"


async def test_labels_win_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    async with api_world(tmp_path, cosign_public_key=KEY,
                         policy_file=str(tmp_path / "policy.toml")) as world:  # fmt: skip
        for container in world.engine.containers.values():
            if container.service == "app":
                container.labels["supervisor.signature_policy"] = "off"
                container.labels["supervisor.start_order"] = "0"
        await world.runtime.autopilot.read_labels()
        effective = world.runtime.policy.settings
        assert effective.policy_for("app") is Policy.OFF
        assert effective.app_services == ["app", "python_backend"]
        sources = world.runtime.policy.describe()["settings"]
        assert sources["signature_policy_overrides"]["source"] == "label app"
        assert sources["start_order"]["source"] == "label app"
        # a bad label is refused and the policy in force stays
        for container in world.engine.containers.values():
            if container.service == "app":
                container.labels["supervisor.signature_policy"] = "sometimes"
        await world.runtime.autopilot.read_labels()
        assert world.runtime.policy.settings.policy_for("app") is Policy.OFF


async def test_reload_takes_a_good_file_and_keeps_the_policy_for_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[updates]\nauto_apply = "patch"\n')
    async with (
        api_world(tmp_path, policy_file=str(path)) as world,
        TestClient(TestServer(world.app())) as client,
    ):
        path.write_text('[updates]\nauto_apply = "major"\nmaturity_hours = 6\n')
        good = await client.post("/admin/policy/reload", headers=auth(), json={})
        assert good.status == 200
        assert (await good.json())["settings"]["auto_apply"]["value"] == "major"
        assert world.manager.settings.maturity_hours == 6
        path.write_text(
            '[updates]\nauto_apply = "always"\nmaturity_hours = -1\nwindows = []\n[updates.extra]\n'
        )
        bad = await client.post("/admin/policy/reload", headers=auth(), json={})
        assert bad.status == 422
        body = await bad.json()
        assert body["error_key"] == "policy_invalid"
        problems = body["problems"]
        assert any("updates.auto_apply" in p for p in problems), problems
        assert any("updates.maturity_hours" in p for p in problems), problems
        assert any("updates.windows: unknown key" in p for p in problems), problems
        assert world.manager.settings.auto_apply.value == "major"  # kept
        path.write_text("not = [toml")
        broken = await client.post("/admin/policy/reload", headers=auth(), json={})
        assert broken.status == 422
        assert "not valid TOML" in (await broken.json())["message"]
        path.write_text('[probes]\nhealth = [{ service = "nosuch", url = "http://x/" }]\n')
        unknown = await client.post("/admin/policy/reload", headers=auth(), json={})
        assert unknown.status == 422
        assert "nosuch not in SUPERVISOR_SERVICES" in (await unknown.json())["message"]
        read_only = await client.post(
            "/admin/policy/reload", headers=auth("read-token-0123456789abcdef"), json={}
        )
        assert read_only.status == 403


async def test_an_invalid_file_refuses_the_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[updates]\nauto_apply = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"updates\.auto_apply"):
        async with api_world(tmp_path, policy_file=str(path)):
            pass


def test_every_file_key_is_a_setting_and_documented() -> None:
    from supervisor.config import Settings

    assert set(FIELDS.values()) <= set(Settings.model_fields)
    runbook = (Path(__file__).parents[2] / "docs" / "runbook.md").read_text()
    for section, key in FIELDS:
        assert f"`{key}`" in runbook, f"docs/runbook.md does not explain {section}.{key}"
    for key in PolicyDocument.model_fields["services"].annotation.__args__[1].model_fields:  # type: ignore[union-attr]
        assert f"`{key}`" in runbook


async def test_sighup_reloads_the_policy_file(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "policy.toml"
    path.write_text('[updates]\nauto_apply = "patch"\n')
    env = sidecar_env(tmp_path, listen_host="127.0.0.1", listen_port=str(port),
                      policy_file=str(path))  # fmt: skip
    adapters = Adapters.fresh()
    serving = asyncio.create_task(run(["serve"], env=env, open_runtime=adapters.open_runtime))
    url = f"http://127.0.0.1:{port}/admin/policy"
    try:
        async with aiohttp.ClientSession() as session:

            async def mode() -> str:
                async with session.get(url, headers=auth()) as response:
                    return str((await response.json())["auto_apply"])

            for _ in range(500):
                assert not serving.done(), serving.result()
                try:
                    if await mode():
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.01)
            assert await mode() == "patch"
            path.write_text('[updates]\nauto_apply = "minor"\n')
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(200):
                if await mode() == "minor":
                    break
                await asyncio.sleep(0.01)
            assert await mode() == "minor"
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
