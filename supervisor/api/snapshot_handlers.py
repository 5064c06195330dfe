"""``/admin/snapshots``: list, read, create (a job) and, when allowed, restore (a job).

Restore overwrites live data, so over HTTP it is off unless ``SUPERVISOR_RESTORE_OVER_HTTP``
is set (an operator decision); the CLI (``supervisor restore``) can always do it. Neither a
manual snapshot nor a restore may run while an update does: the update takes its own snapshot
and a restore under a running migration would leave an undefined database. Both take the
cross-process stack lock (:mod:`supervisor.oplock`) *before* answering 202, so a CLI restore
in the container, a recovery or an update holding it gets a 409 ``stack_busy`` naming the
holder at once, and the job holds the lock until it ends (however it ends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from supervisor.exceptions import BadRequest, NotFound, NoUpdate, UpdateRunning
from supervisor.snapshots.const import SnapshotReason

from .body import read_json
from .errors import RestoreDisabled
from .jobs import JobKind
from .keys import JOBS, SETTINGS, SNAPSHOTS, STACK_LOCK, UPDATES
from .reply import reply
from .schemas import SnapshotList
from .snapshot_fields import valid_snapshot_id


def _snapshot_id(request: web.Request) -> str:
    snapshot_id = request.match_info["snapshot_id"]
    if not valid_snapshot_id(snapshot_id):
        raise BadRequest("snapshot_id: letters, digits, '_', '.' and '-' only, no '..'")
    return snapshot_id


def _refuse_while_updating(request: web.Request) -> None:
    try:
        record = request.app[UPDATES].status()
    except NoUpdate:
        return
    if not record.state.finished:
        raise UpdateRunning(
            f"update {record.update_id} is running ({record.state})",
            update_id=record.update_id,
        )


async def _start_locked(
    request: web.Request, kind: JobKind, work: Callable[[], Awaitable[dict[str, Any]]]
) -> web.Response:
    """Take the stack lock now (409 ``stack_busy`` if held), run ``work`` as a job under it."""
    lock = request.app.get(STACK_LOCK)
    if lock is None:  # an app without a lock (tests of the HTTP layer alone)
        job = request.app[JOBS].start(kind, work)
    else:
        lease = await lock.acquire(kind, owner="server")

        async def locked() -> dict[str, Any]:
            try:
                return await work()
            finally:
                lease.release()

        try:
            job = request.app[JOBS].start(kind, locked)
        except BaseException:
            lease.release()
            raise
    return reply(job, status=202, headers={"Location": f"/admin/jobs/{job.job_id}"})


async def list_snapshots(request: web.Request) -> web.Response:
    manifests = await request.app[SNAPSHOTS].list()
    return reply(SnapshotList(snapshots=[m.model_dump(mode="json") for m in manifests]))


async def get_snapshot(request: web.Request) -> web.Response:
    manifest = await request.app[SNAPSHOTS].get(_snapshot_id(request))
    return reply(manifest.model_dump(mode="json"))


async def create_snapshot(request: web.Request) -> web.Response:
    """202 with a job; ``GET /admin/jobs/{job_id}`` reports the manifest when done."""
    data = await read_json(request)
    if data != {}:
        raise BadRequest("this endpoint takes no body (or {})")
    _refuse_while_updating(request)
    updates, snapshots = request.app[UPDATES], request.app[SNAPSHOTS]

    async def work() -> dict[str, Any]:
        info = await updates.version_info()
        images = _current_images(info.get("current") or {})
        manifest = await snapshots.create(SnapshotReason.MANUAL, None, images)
        return manifest.model_dump(mode="json")

    return await _start_locked(request, "snapshot", work)


async def restore_snapshot(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].restore_over_http:
        raise RestoreDisabled(
            "restoring over HTTP is disabled; run `supervisor restore SNAPSHOT` in the "
            "sidecar container, or set SUPERVISOR_RESTORE_OVER_HTTP=true"
        )
    snapshot_id = _snapshot_id(request)
    if await read_json(request) != {}:
        raise BadRequest("this endpoint takes no body (or {})")
    _refuse_while_updating(request)
    snapshots = request.app[SNAPSHOTS]
    await snapshots.get(snapshot_id)  # 404 now rather than a failed job later

    async def work() -> dict[str, Any]:
        manifest = await snapshots.restore(snapshot_id)
        return {"snapshot_id": snapshot_id, "restored": True,
                "manifest": manifest.model_dump(mode="json")}  # fmt: skip

    return await _start_locked(request, "restore", work)


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    if not job_id.isalnum() or len(job_id) > 64:
        raise NotFound(f"no job with id {job_id[:64]!r}")
    return reply(request.app[JOBS].get(job_id))


def _current_images(current: Any) -> dict[str, str]:
    """service → image from ``version_info()["current"]`` (``image`` if given, else the
    digest, else the tag): recorded in the manifest so a restore knows what ran with it."""
    images: dict[str, str] = {}
    if isinstance(current, dict):
        for service, info in current.items():
            if isinstance(info, dict):
                ref = info.get("image") or info.get("digest") or info.get("tag")
                if ref:
                    images[str(service)] = str(ref)
    return images
