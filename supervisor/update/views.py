"""Read-only answers: ``/admin/version`` and the dry-run ``plan``.

The last result and the active run come from :func:`supervisor.update.summary.run_summary`
(also the badge's source); freshness (latest release, ``update_available``, the check's
error) from :mod:`supervisor.update.freshness`.

Neither changes anything. ``plan`` runs the same resolution and policy
checks as ``start`` and reports every blocker instead of stopping at the first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.exceptions import SupervisorError
from supervisor.update.freshness import service_freshness
from supervisor.update.stack import MISSING, MOVING_ROLES, ServiceStatus, StackView, inspect_stack
from supervisor.update.summary import run_summary

if TYPE_CHECKING:
    from supervisor.update.manager import UpdateManager


def _digest_only(reference: str | None) -> str | None:
    return reference.split("@", 1)[1] if reference and "@" in reference else None


async def version_info(manager: UpdateManager) -> dict[str, Any]:
    """``GET /admin/version``: answers while a service is missing or restarting (200, with
    that service's ``state``), and reports a failed release check instead of failing."""
    stack = await inspect_stack(
        manager.deps.engine, manager.settings, manager.deps.state, strict=False
    )
    watch = manager.watch
    current: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for name in manager.settings.services_with_role(*MOVING_ROLES):
        target = stack.services.get(name)
        status = stack.status.get(name, ServiceStatus(MISSING))
        tag = target.current_version if target is not None else None
        digest = _digest_only(target.current_digest) if target is not None else None
        image = (target.current_digest or target.current_image) if target is not None else None
        current[name] = {
            "tag": tag,
            "digest": digest,
            "image": image,
            "state": status.state,
            "health": status.health,
        }
        services[name] = {**service_freshness(watch, name, tag, digest), "state": status.state}
    try:
        verdicts = [v.model_dump(mode="json") for v in manager.status().verdicts]
    except SupervisorError:
        verdicts = []
    return {
        "version": stack.version,
        "current": current,
        "latest": watch.latest(),
        "update_available": any(s["update_available"] for s in services.values()),
        "services": services,
        "check": watch.check_status(),
        **run_summary(manager).model_dump(mode="json"),
        "signatures": verdicts,  # the verdicts of the last run's target digests
    }


def check_answer(manager: UpdateManager, stack: StackView) -> dict[str, Any]:
    """``POST /admin/update/check``: the release just found, compared with what runs now."""
    watch = manager.watch
    available = any(
        service_freshness(watch, name, target.current_version, _digest_only(target.current_digest))[
            "update_available"
        ]
        for name, target in stack.services.items()
    )
    return {**(watch.latest() or {}), "current_version": stack.version,
            "update_available": available}  # fmt: skip


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
