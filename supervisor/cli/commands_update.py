"""``update`` and ``rollback``: start a run over HTTP, follow it live, exit with its result.

Both ask for confirmation unless ``--yes`` (showing the plan first), then start the run (never
retried by the client), follow the SSE stream with a progress display (``--json``: silent,
then one JSON object, the final run record plus ``exit_code``), and exit with the code of the
end state. Ctrl-C stops following, not the run; ``supervisor status`` picks it up again.
"""

from __future__ import annotations

import asyncio

from supervisor.client import SupervisorClient
from supervisor.exceptions import BadRequest
from supervisor.update.stages import Stage

from .commands_read import print_record
from .context import CliContext
from .exit_codes import ExitCode, for_state
from .progress import RunProgress


async def update(ctx: CliContext) -> int:
    version, force = ctx.args.version, ctx.args.force
    async with ctx.client() as client:
        if not ctx.args.yes:
            plan = await client.plan(version, force)  # refusals (already current …) show here
            target = plan.get("target_version") or version or "the latest release"
            question = f"Update from {plan.get('current_version') or '?'} to {target}?"
            if not await ctx.confirm(question):
                ctx.err.print("not updated")
                return ExitCode.REFUSED
        accepted = await client.start(version, ctx.args.channel, force)
        return await follow_run(ctx, client, accepted.update_id)


async def rollback(ctx: CliContext) -> int:
    """Go back to the version the last completed update came from (a forced downgrade).

    Images only: the database keeps its current data; restoring the pre-update snapshot is
    ``supervisor restore`` (the snapshot id is in the run record).
    """
    async with ctx.client() as client:
        runs = await client.history(50)
        last = next((r for r in runs if r.result is Stage.COMPLETED and r.from_version), None)
        if last is None or last.from_version is None:
            raise BadRequest("no completed update in the history to roll back from")
        question = (
            f"Roll back from {last.target_version} to {last.from_version} (images only; "
            f"the pre-update snapshot is {last.snapshot_id or 'unknown'})?"
        )
        if not await ctx.confirm(question):
            ctx.err.print("not rolled back")
            return ExitCode.REFUSED
        accepted = await client.start(last.from_version, None, True)
        return await follow_run(ctx, client, accepted.update_id)


async def acknowledge(ctx: CliContext) -> int:
    """Record that an operator took over a ``needs_intervention`` run; unblocks updates."""
    update_id = ctx.args.update_id
    async with ctx.client() as client:
        record = await client.status(update_id)
        if not ctx.args.yes:
            ctx.err.print(record.error.message if record.error else f"{update_id}: {record.state}")
            if not await ctx.confirm(f"Acknowledge {update_id} and allow updates again?"):
                ctx.err.print("not acknowledged")
                return ExitCode.REFUSED
        done = await client.acknowledge(update_id, ctx.args.note, ctx.args.operator or "cli")
    print_record(ctx, done)
    return ExitCode.OK


async def follow_run(ctx: CliContext, client: SupervisorClient, update_id: str) -> int:
    if ctx.args.detach:
        if ctx.json:
            ctx.emit_json({"update_id": update_id, "exit_code": 0})
        else:
            ctx.out.print(f"update {update_id} started; follow it with `supervisor status`")
        return ExitCode.OK
    try:
        if ctx.json:
            async for _event in client.follow(update_id):
                pass
        else:
            with RunProgress(ctx.out) as display:
                async for event in client.follow(update_id):
                    display.handle(event)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C cancels the main task
        ctx.err.print(f"stopped following; update {update_id} goes on in the sidecar")
        raise
    record = await client.status(update_id)
    code = for_state(record.result)
    if ctx.json:
        ctx.emit_json({**record.public(), "exit_code": int(code)})
    else:
        print_record(ctx, record, log_lines=5)
    return code
