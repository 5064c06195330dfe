"""Stop-first or start-first: how a run replaces the app services.

**stop-first** (the default) stops the app, snapshots, migrates, then starts the new
version: a short outage, and a rollback puts the old images *and* the data back.

**start-first** (Swarm's ``--update-order start-first``, Kamal, docker-rollout) starts the
new containers next to the old ones, which keep serving until the new ones are healthy; no
outage behind a reverse proxy that resolves the service per request. It is only safe when
the old version still works on the new schema, so it needs all of:

- every app service opts in (label ``supervisor.update_order: start-first`` or
  ``[services.NAME] update_order`` in the policy file);
- the release declares backward-compatible (expand-only) migrations: ``"compatible_migrations":
  true`` in the release manifest, or the label ``supervisor.compatible_migrations=true`` on the
  migrations image;
- no opted-in service publishes host ports (two containers cannot bind one port).

Otherwise the run is stop-first and says why (a warning on the record). A start-first
rollback puts the old images back and keeps the database: the migration was declared
compatible, and a restore would throw away what users wrote meanwhile; the pre-update
snapshot stays for a manual restore.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from supervisor.config import Settings
from supervisor.update.release import Release
from supervisor.update.stack import StackView

COMPATIBLE_LABEL = "supervisor.compatible_migrations"
START_FIRST, STOP_FIRST = "start-first", "stop-first"


@dataclass(frozen=True)
class UpdateOrder:
    order: str
    why_not: str | None = None  # asked for start-first but running stop-first: why


async def choose(
    settings: Settings,
    stack: StackView,
    release: Release,
    migrations_labels: Callable[[], Awaitable[dict[str, str]]],
) -> UpdateOrder:
    apps = settings.app_services
    opted = [s for s in apps if settings.update_order.get(s) == START_FIRST]
    if not opted:
        return UpdateOrder(STOP_FIRST)
    if missing := [s for s in apps if s not in opted]:
        return UpdateOrder(
            STOP_FIRST,
            f"start-first needs every app service to opt in; {', '.join(missing)} did not: "
            "running stop-first",
        )
    if published := {s: stack.published[s] for s in opted if stack.published.get(s)}:
        where = "; ".join(f"{s} publishes {', '.join(p)}" for s, p in published.items())
        return UpdateOrder(
            STOP_FIRST,
            f"start-first refused: {where}, and two containers cannot bind one host port; "
            "put a reverse proxy in front and publish that instead: running stop-first",
        )
    compatible = release.compatible_migrations or (
        (await migrations_labels()).get(COMPATIBLE_LABEL, "").lower() == "true"
    )
    if not compatible:
        return UpdateOrder(
            STOP_FIRST,
            f"start-first needs release {release.version} to declare backward-compatible "
            f'migrations ("compatible_migrations": true in the manifest, or the label '
            f"{COMPATIBLE_LABEL}=true on the migrations image): running stop-first",
        )
    return UpdateOrder(START_FIRST)
