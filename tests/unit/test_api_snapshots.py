"""/admin/snapshots and /admin/jobs: list, read, create as a job, restore only when enabled.

The API drives the snapshot adapter Protocol; a fake of it holds manifests in memory with
ids in the real format and refuses ids the real store refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from supervisor.exceptions import BackupFailed
from supervisor.snapshots.models import SnapshotManifest
from tests.support.api_world import ApiWorld, auth

pytestmark = pytest.mark.unit
RESTORE_ENABLED = pytest.mark.parametrize("world_settings", [{"restore_over_http": "true"}])


@pytest.fixture
def taken(world: ApiWorld) -> SnapshotManifest:
    return world.snapshots.add()


async def wait_job(client: TestClient[Any, Any], job_id: str) -> dict[str, Any]:
    for _ in range(100):
        job: dict[str, Any] = await (
            await client.get(f"/admin/jobs/{job_id}", headers=auth())
        ).json()
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.01)
    raise AssertionError("job never finished")


async def test_list_and_get(client: TestClient[Any, Any], taken: SnapshotManifest) -> None:
    body = await (await client.get("/admin/snapshots", headers=auth())).json()
    assert [s["id"] for s in body["snapshots"]] == [taken.id]
    response = await client.get(f"/admin/snapshots/{taken.id}", headers=auth())
    assert response.status == 200
    assert await response.json() == taken.model_dump(mode="json")
    response = await client.get("/admin/snapshots/20990101T000000Z_ffffffff", headers=auth())
    assert response.status == 404
    assert (await response.json())["error_key"] == "snapshot_not_found"
    response = await client.get("/admin/snapshots/20250120T123456Z_ab12cd", headers=auth())
    assert response.status == 400  # six hex digits: not a snapshot id
    assert (await response.json())["error_key"] == "invalid_snapshot_id"


@RESTORE_ENABLED
@pytest.mark.parametrize("snapshot_id", ["..", "..%2F..%2Fetc", ".hidden", "a..b", "%00x"])
async def test_path_traversal_is_refused(
    client: TestClient[Any, Any], world: ApiWorld, taken: SnapshotManifest, snapshot_id: str
) -> None:
    for method, path in (
        ("GET", f"/admin/snapshots/{snapshot_id}"),
        ("POST", f"/admin/snapshots/{snapshot_id}/restore"),
    ):
        response = await client.request(method, path, headers=auth())
        assert response.status in (400, 404), (method, path, response.status)
        assert "error_key" in await response.json()
    assert world.snapshots.restored == []


async def test_create_runs_as_a_job(
    client: TestClient[Any, Any], world: ApiWorld, taken: SnapshotManifest
) -> None:
    world.snapshots.gates["create"] = gate = asyncio.Event()
    response = await client.post("/admin/snapshots", headers=auth())
    assert response.status == 202
    job = await response.json()
    assert job["state"] == "running"
    assert job["kind"] == "snapshot"
    assert response.headers["Location"] == f"/admin/jobs/{job['job_id']}"
    again = await client.post("/admin/snapshots", headers=auth())
    assert again.status == 409
    assert (await again.json())["error_key"] == "job_running"
    gate.set()
    done = await wait_job(client, job["job_id"])
    assert done["state"] == "completed"
    assert done["result"]["reason"] == "manual"
    # what ran with it, from /admin/version's current images: name@digest of the running app
    running = world.engine.by_service("app")[0].image
    assert done["result"]["images"]["app"] == running
    assert world.snapshots.created == [("manual", None)]
    assert len(await world.snapshots.list()) == 2


async def test_failed_job_reports_the_envelope(
    client: TestClient[Any, Any], world: ApiWorld
) -> None:
    world.snapshots.fail["create:manual"] = BackupFailed("disk full while dumping postgres")
    job = await (await client.post("/admin/snapshots", headers=auth())).json()
    done = await wait_job(client, job["job_id"])
    assert done["state"] == "failed"
    assert done["error"]["error_key"] == "backup_failed"
    # a 5xx-class failure: its own text (tool stderr, paths) goes to the log, not to readers
    assert done["error"]["message"].startswith("the snapshot could not be taken or restored")
    assert "dumping postgres" not in done["error"]["message"]


@RESTORE_ENABLED
async def test_snapshot_refused_while_an_update_runs(
    client: TestClient[Any, Any], world: ApiWorld, taken: SnapshotManifest
) -> None:
    world.hold("pull")
    await client.post("/admin/update/start", json={}, headers=auth())
    for path in ("/admin/snapshots", f"/admin/snapshots/{taken.id}/restore"):
        response = await client.post(path, headers=auth())
        assert response.status == 409
        assert (await response.json())["error_key"] == "update_running"
    assert world.snapshots.created == []
    assert world.snapshots.restored == []


async def test_restore_is_disabled_by_default(
    client: TestClient[Any, Any], world: ApiWorld, taken: SnapshotManifest
) -> None:
    response = await client.post(f"/admin/snapshots/{taken.id}/restore", headers=auth())
    assert response.status == 403
    body = await response.json()
    assert body["error_key"] == "restore_disabled"
    assert "supervisor restore" in body["message"]
    assert world.snapshots.restored == []


@RESTORE_ENABLED
async def test_restore_when_enabled(
    client: TestClient[Any, Any], world: ApiWorld, taken: SnapshotManifest
) -> None:
    response = await client.post(f"/admin/snapshots/{taken.id}/restore", headers=auth())
    assert response.status == 202
    done = await wait_job(client, (await response.json())["job_id"])
    assert done["state"] == "completed"
    assert world.snapshots.restored == [taken.id]
    missing = await client.post(
        "/admin/snapshots/20990101T000000Z_ffffffff/restore", headers=auth()
    )
    assert missing.status == 404
    body = await client.post(f"/admin/snapshots/{taken.id}/restore", json={"x": 1}, headers=auth())
    assert body.status == 400


async def test_unknown_job_is_404(client: TestClient[Any, Any]) -> None:
    for job_id in ("abc123", "x" * 100, "a-b"):
        response = await client.get(f"/admin/jobs/{job_id}", headers=auth())
        assert response.status == 404


async def test_shutdown_cancels_running_jobs(client: TestClient[Any, Any], world: ApiWorld) -> None:
    world.snapshots.hang.add("create")  # the job hangs until shutdown
    assert (await client.post("/admin/snapshots", headers=auth())).status == 202
    await client.close()  # runs the app's cleanup: the job task is cancelled, not leaked
    assert world.snapshots.created == []
