"""/admin/snapshots and /admin/jobs: list, read, create as a job, restore only when enabled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.fake_update_service import (
    FakeSnapshotService,
    FakeUpdateService,
    auth,
    make_app,
    make_manifest,
)

pytestmark = pytest.mark.unit
SNAP = "20250120T123456Z_ab12cd"


@pytest.fixture
def snapshots() -> FakeSnapshotService:
    return FakeSnapshotService([make_manifest(SNAP)])


async def wait_job(client: TestClient[Any, Any], job_id: str) -> dict[str, Any]:
    for _ in range(100):
        job: dict[str, Any] = await (
            await client.get(f"/admin/jobs/{job_id}", headers=auth())
        ).json()
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.01)
    raise AssertionError("job never finished")


async def test_list_and_get(aiohttp_client: Any, snapshots: FakeSnapshotService) -> None:
    client = await aiohttp_client(make_app(snapshots=snapshots))
    body = await (await client.get("/admin/snapshots", headers=auth())).json()
    assert [s["id"] for s in body["snapshots"]] == [SNAP]
    response = await client.get(f"/admin/snapshots/{SNAP}", headers=auth())
    assert response.status == 200
    assert (await response.json())["reason"] == "pre-update"
    response = await client.get("/admin/snapshots/20990101T000000Z_ffffff", headers=auth())
    assert response.status == 404


@pytest.mark.parametrize("snapshot_id", ["..", "..%2F..%2Fetc", ".hidden", "a..b", "%00x"])
async def test_path_traversal_is_refused(
    aiohttp_client: Any, snapshots: FakeSnapshotService, snapshot_id: str
) -> None:
    client = await aiohttp_client(make_app(snapshots=snapshots, restore_over_http=True))
    for method, path in (
        ("GET", f"/admin/snapshots/{snapshot_id}"),
        ("POST", f"/admin/snapshots/{snapshot_id}/restore"),
    ):
        response = await client.request(method, path, headers=auth())
        assert response.status in (400, 404), (method, path, response.status)
        assert "error_key" in await response.json()
    assert snapshots.restored == []


async def test_create_runs_as_a_job(aiohttp_client: Any, snapshots: FakeSnapshotService) -> None:
    client = await aiohttp_client(make_app(snapshots=snapshots))
    snapshots.gate = asyncio.Event()
    response = await client.post("/admin/snapshots", headers=auth())
    assert response.status == 202
    job = await response.json()
    assert job["state"] == "running"
    assert job["kind"] == "snapshot"
    assert response.headers["Location"] == f"/admin/jobs/{job['job_id']}"
    again = await client.post("/admin/snapshots", headers=auth())
    assert again.status == 409
    assert (await again.json())["error_key"] == "job_running"
    snapshots.gate.set()
    done = await wait_job(client, job["job_id"])
    assert done["state"] == "completed"
    assert done["result"]["reason"] == "manual"
    assert done["result"]["images"]["app"].startswith("sha256:")  # from /admin/version current
    assert len(snapshots.snapshots) == 2


async def test_failed_job_reports_the_envelope(aiohttp_client: Any) -> None:
    snapshots = FakeSnapshotService()

    async def full(*_: Any) -> Any:
        from supervisor.exceptions import SupervisorError

        raise SupervisorError("disk full while dumping postgres")

    snapshots.create = full  # type: ignore[method-assign]
    client = await aiohttp_client(make_app(snapshots=snapshots))
    job = await (await client.post("/admin/snapshots", headers=auth())).json()
    done = await wait_job(client, job["job_id"])
    assert done["state"] == "failed"
    assert done["error"] == {"error_key": "internal_error",
                             "message": "disk full while dumping postgres", "update_id": None}  # fmt: skip


async def test_snapshot_refused_while_an_update_runs(
    aiohttp_client: Any, snapshots: FakeSnapshotService
) -> None:
    fake = FakeUpdateService(manual=True)
    client = await aiohttp_client(make_app(fake, snapshots, restore_over_http=True))
    await client.post("/admin/update/start", json={}, headers=auth())
    for path in ("/admin/snapshots", f"/admin/snapshots/{SNAP}/restore"):
        response = await client.post(path, headers=auth())
        assert response.status == 409
        assert (await response.json())["error_key"] == "update_running"
    fake.release()


async def test_restore_is_disabled_by_default(
    aiohttp_client: Any, snapshots: FakeSnapshotService
) -> None:
    client = await aiohttp_client(make_app(snapshots=snapshots))
    response = await client.post(f"/admin/snapshots/{SNAP}/restore", headers=auth())
    assert response.status == 403
    body = await response.json()
    assert body["error_key"] == "restore_disabled"
    assert "supervisor restore" in body["message"]
    assert snapshots.restored == []


async def test_restore_when_enabled(aiohttp_client: Any, snapshots: FakeSnapshotService) -> None:
    client = await aiohttp_client(make_app(snapshots=snapshots, restore_over_http=True))
    response = await client.post(f"/admin/snapshots/{SNAP}/restore", headers=auth())
    assert response.status == 202
    done = await wait_job(client, (await response.json())["job_id"])
    assert done["state"] == "completed"
    assert snapshots.restored == [SNAP]
    missing = await client.post("/admin/snapshots/20990101T000000Z_ff/restore", headers=auth())
    assert missing.status == 404
    body = await client.post(f"/admin/snapshots/{SNAP}/restore", json={"x": 1}, headers=auth())
    assert body.status == 400


async def test_unknown_job_is_404(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app())
    for job_id in ("abc123", "x" * 100, "a-b"):
        response = await client.get(f"/admin/jobs/{job_id}", headers=auth())
        assert response.status == 404


async def test_shutdown_cancels_running_jobs(
    aiohttp_client: Any, snapshots: FakeSnapshotService
) -> None:
    client = await aiohttp_client(make_app(snapshots=snapshots))
    snapshots.gate = asyncio.Event()  # never set: the job hangs until shutdown
    assert (await client.post("/admin/snapshots", headers=auth())).status == 202
    await client.close()  # runs the app's cleanup: the job task is cancelled, not leaked
