"""Read-only answers: ``/admin/version`` and the dry-run ``plan``.

Neither changes anything. ``plan`` runs the same resolution and policy
checks as ``start`` and reports every blocker instead of stopping at the first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.exceptions import SupervisorError
from supervisor.update.stack import StackView

if TYPE_CHECKING:
    from supervisor.update.manager import UpdateManager


def _digest_only(reference: str | None) -> str | None:
    return reference.split("@", 1)[1] if reference and "@" in reference else None


def last_result(manager: UpdateManager) -> dict[str, Any] | None:
    try:
        record = manager.status()
    except SupervisorError:
        return None
    return {
        "update_id": record.update_id,
        "state": record.state.value,
        "from_version": record.from_version,
        "target_version": record.target_version,
        "version": record.target_version if record.state == "completed" else record.from_version,
        "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "error": record.error.message if record.error else None,
    }


async def version_info(manager: UpdateManager, stack: StackView) -> dict[str, Any]:
    current = {
        name: {
            "tag": target.current_version,
            "digest": _digest_only(target.current_digest),
            "image": target.current_digest or target.current_image,
        }
        for name, target in stack.services.items()
    }
    latest = manager.latest
    try:
        last = manager.status()
        verdicts = [v.model_dump(mode="json") for v in last.verdicts]
    except SupervisorError:
        verdicts = []
    return {
        "version": stack.version,
        "current": current,
        "latest": latest,
        "update_available": bool(latest and latest.get("update_available")),
        "update_running": manager.current_update_id,
        "last_result": last_result(manager),
        "signatures": verdicts,  # the verdicts of the last run's target digests
    }


async def plan(
    manager: UpdateManager, stack: StackView, target_version: str | None, force: bool
) -> dict[str, Any]:
    deps = manager.deps
    channel = manager.settings.channel.value
    release = await manager.resolver(stack).resolve(target_version, channel)
    blockers = [
        {"error_key": getattr(p, "error_key", "blocked"), "message": str(p)}
        for p in manager.blockers(stack, release, force)
    ]
    services: dict[str, Any] = {}
    for name, target in stack.services.items():
        pinned = release.images[name].by_digest()
        verdict = await deps.signatures.verify(name, pinned)
        if verdict.refused:
            blockers.append(
                {"error_key": "signature_refused", "message": f"{name}: {verdict.reason}"}
            )
        services[name] = {
            "current_image": target.current_image,
            "current_digest": target.current_digest,
            "current_version": target.current_version,
            "target_image": str(release.images[name].with_tag(release.version)),
            "target_digest": pinned,
            "changes": pinned != target.current_digest,
            "signature": verdict.model_dump(mode="json"),
        }
    try:
        estimate: int | None = await deps.snapshots.estimate_size()
    except SupervisorError as err:
        estimate = None
        blockers.append({"error_key": err.error_key, "message": err.message})
    return {
        "current_version": stack.version,
        "target_version": release.version,
        "source": release.source,
        "services": services,
        "migrations": stack.layout.migrations_container is not None,
        "rehearsal": manager.rehearsal_possible(stack),
        "estimated_backup_bytes": estimate,
        "blockers": blockers,
        "would_run": not blockers,
    }
