"""``supervisor policy``: unattended updates from the operator's side.

Without an action it prints the policy in force (each value with where it came from), the
freeze, the marks on versions and the recent decisions with their reasons; ``skip``,
``snooze``, ``clear``, ``unfreeze`` and ``reload`` change them. ``supervisor plan`` prints the
same summary under the plan, so "why did it (not) update?" has one answer in one place.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from .context import CliContext
from .exit_codes import ExitCode


async def policy(ctx: CliContext) -> int:
    action = getattr(ctx.args, "policy_action", None)
    async with ctx.client() as client:
        if action in ("skip", "snooze", "clear"):
            answer = await client.mark_version(
                ctx.args.version, action, getattr(ctx.args, "hours", None), ctx.args.note,
                ctx.args.operator or "cli",
            )  # fmt: skip
        elif action == "unfreeze":
            answer = await client.unfreeze_auto_apply(ctx.args.note, ctx.args.operator or "cli")
        elif action == "reload":
            answer = await client.reload_policy()
        else:
            answer = await client.policy(ctx.args.decisions)
    if ctx.json:
        ctx.emit_json(answer)
    elif action in ("skip", "snooze", "clear"):
        mark: dict[str, Any] | None = answer.get("mark")
        done = "mark cleared"
        if mark is not None:
            done = mark["kind"] + (f" until {mark['until']}" if mark.get("until") else "")
        ctx.out.print(f"{answer['version']}: {done}", markup=False)
    elif action == "unfreeze":
        ctx.out.print("auto-apply unfrozen", markup=False)
    elif action == "reload":
        ctx.out.print("policy reloaded", markup=False)
        print_sources(ctx, answer)
    else:
        print_policy(ctx, answer, sources=True)
    return ExitCode.OK


def print_policy(ctx: CliContext, view: dict[str, Any], sources: bool = False) -> None:
    windows = ", ".join(view.get("windows") or []) or "any time"
    ctx.out.print(
        f"auto-apply: {view.get('auto_apply')} · windows: {windows}"
        f" ({'open' if view.get('window_open') else 'closed'}) · maturity: "
        f"{view.get('maturity_hours', 0):g} h from {view.get('maturity_from')}"
        + (f" · hard pin: {view['hard_pin']}" if view.get("hard_pin") else ""),
        markup=False,
    )
    frozen = view.get("frozen")
    if frozen:
        ctx.out.print(
            f"[red]auto-apply frozen[/red] since {frozen['at']}: {frozen['reason']} "
            "(lift it with `supervisor policy unfreeze`)"
        )
    for mark in view.get("marks") or []:
        until = f" until {mark['until']}" if mark.get("until") else ""
        ctx.out.print(f"  {mark['version']}: {mark['kind']}{until} by {mark['by']}", markup=False)
    decisions = view.get("decisions") or []
    if decisions:
        table = Table("last seen", "action", "reason", box=box.SIMPLE_HEAD, pad_edge=False)
        for item in decisions:
            repeat = f" x{item['count']}" if item.get("count", 1) > 1 else ""
            table.add_row(str(item["last_at"])[:16], item["action"] + repeat, item["reason"])
        ctx.out.print(table)
    if sources:
        print_sources(ctx, view.get("config") or {})


def print_sources(ctx: CliContext, config: dict[str, Any]) -> None:
    settings = config.get("settings") or {}
    table = Table("setting", "value", "from", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, item in settings.items():
        value = item.get("value")
        table.add_row(name, str(value) if value not in (None, [], {}) else "-", item["source"])
    ctx.out.print(table)
