"""``/admin/version`` and the event log against a real Compose stack, through the docker-proxy.

While a run recreates ``python_backend`` its container is briefly gone; the version view must
answer all along (the bug: a 404 ``service_not_found`` a backend showed as "update status
unavailable"). A service removed outright is reported ``missing``, a stopped one ``exited``.
After the run, a restarted sidecar replays the run's events with the same ids.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from supervisor.update.models import StartRequest
from supervisor.update.stages import Stage
from tests.support.compose import StackFactory
from tests.support.dockercli import docker
from tests.support.sidecar import sidecar, stack_settings


async def test_version_answers_through_a_run_and_with_a_service_gone(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        settings = stack_settings(
            project, docker_proxy_url, tmp_path, rehearse="false",
            services="app=app,python_backend=app,migrations=migrations,postgres=postgres",
        )  # fmt: skip
        async with sidecar(settings) as runtime:
            manager = runtime.manager
            started = await manager.start(StartRequest(target_version="1.1.0"))
            seen: list[dict[str, Any]] = []
            while not manager.status(started.update_id).state.finished:
                seen.append(await manager.version_info())  # never raises mid-run
                await asyncio.sleep(0.05)
            record = await manager.wait(started.update_id)
            assert record.result is Stage.COMPLETED, record.error
            assert len(seen) > 10
            running = [info["running"] for info in seen if info["running"]]
            assert {r["update_id"] for r in running} == {started.update_id}
            states = {info["current"]["python_backend"]["state"] for info in seen}
            print(f"python_backend states seen during the run: {sorted(states)}")

            after = await manager.version_info()
            assert after["running"] is None
            assert after["last_result"]["update_id"] == started.update_id
            assert after["last_result"]["state"] == "completed"
            assert after["current"]["app"]["tag"] == "1.1.0"
            events = [e async for e in manager.events(started.update_id)]

            docker("stop", "-t", "1", project.container("app"))
            docker("rm", "-f", project.container("python_backend"))
            gone = await manager.version_info()
            assert gone["current"]["python_backend"]["state"] == "missing"
            assert gone["services"]["python_backend"]["state"] == "missing"
            assert gone["current"]["app"]["state"] == "exited"
            assert gone["last_result"] == after["last_result"]

        async with sidecar(settings) as restarted:  # a new process over the same state/
            replayed = [e async for e in restarted.manager.events(started.update_id)]
            assert replayed == events
            assert replayed[-1].event == "result"
            resumed = [e async for e in restarted.manager.events(started.update_id, after=3)]
            assert resumed == events[3:]
