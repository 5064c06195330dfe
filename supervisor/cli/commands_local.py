"""Commands that act in the sidecar container itself: restore, freeze, unfreeze, verify.

Restoring overwrites live databases, so it is a local operator action by default (HTTP
restore is off unless configured); ``--remote`` uses the API when it is enabled there. A local
restore takes the cross-process stack lock (:mod:`supervisor.oplock`) first, so it is refused
while the server updates, recovers or restores, and the server's writers wait for it; it also
refuses while the sidecar reports a running update and holds the freeze file while it works,
so the periodic check does not even try to start an update underneath it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from supervisor.client import SidecarUnreachable
from supervisor.exceptions import NoUpdate, UpdateRunning
from supervisor.signatures.models import Policy
from supervisor.statedir import atomic_write
from supervisor.update.models import RunRecord

from .context import CliContext
from .exit_codes import ExitCode


async def restore(ctx: CliContext) -> int:
    snapshot_id = ctx.args.snapshot
    if not await ctx.confirm(f"Overwrite the databases with snapshot {snapshot_id}?"):
        ctx.err.print("not restored")
        return ExitCode.REFUSED
    if ctx.args.remote:
        async with ctx.client() as client:
            job = await client.restore_snapshot(snapshot_id)
            with ctx.err.status(f"restoring {snapshot_id} …"):
                job = await client.wait_for_job(job.job_id, ctx.args.poll_interval)
        if ctx.json:
            ctx.emit_json(job.model_dump(mode="json"))
        if job.error is not None:
            ctx.err.print(f"restore failed: {job.error.message}", markup=False)
            return ExitCode.FAILED
        ctx.err.print(f"restored {snapshot_id}")
        return ExitCode.OK
    settings = ctx.settings()
    # The stack lock first: refused at once, before anything is frozen or touched, while the
    # server updates, recovers or restores (StackBusy names who holds it).
    async with (
        ctx.runtime(settings) as runtime,
        runtime.stack_lock.hold("restore", owner="cli"),
    ):
        _refuse_if_unrecovered(runtime.state.read_current())
        await _refuse_if_updating(ctx)
        with (
            _frozen(settings.freeze_file, f"restoring snapshot {snapshot_id}"),
            ctx.err.status(f"restoring {snapshot_id} …"),
        ):
            await runtime.snapshots.restore(snapshot_id)
    if ctx.json:
        ctx.emit_json({"snapshot_id": snapshot_id, "restored": True, "exit_code": 0})
    else:
        ctx.out.print(f"restored {snapshot_id}")
    return ExitCode.OK


def _refuse_if_unrecovered(journal: RunRecord | None) -> None:
    """The journal on disk, under the lock: a run a killed server left unfinished must be
    recovered (rolled back, its new data kept) before anyone restores over it. Asking
    the server is not enough: it does not answer while it is down or still starting."""
    if journal is not None and not journal.state.finished:
        raise UpdateRunning(
            f"update {journal.update_id} was interrupted in {journal.state} and is not "
            "recovered yet: start the sidecar (it recovers before it serves), then restore",
            update_id=journal.update_id,
        )


async def _refuse_if_updating(ctx: CliContext) -> None:
    try:
        async with ctx.client() as client:
            record = await client.status()
    except SidecarUnreachable:
        ctx.err.print("the sidecar does not answer; restoring under the stack lock")
        return
    except NoUpdate:
        return
    if not record.state.finished:
        raise UpdateRunning(f"update {record.update_id} is running ({record.state})")


@contextlib.contextmanager
def _frozen(path: Path, reason: str) -> Iterator[None]:
    """Hold the freeze file for the duration, unless an operator froze already."""
    if path.exists():
        yield
        return
    write_freeze(path, reason)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def write_freeze(path: Path, reason: str) -> None:
    text = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {reason}\n"
    atomic_write(path, text.encode())


async def freeze(ctx: CliContext) -> int:
    path = ctx.settings().freeze_file
    write_freeze(path, ctx.args.reason or "frozen with `supervisor freeze`")
    if ctx.json:
        ctx.emit_json({"frozen": True, "freeze_file": str(path), "exit_code": 0})
    else:
        ctx.out.print(f"updates frozen ({path}); `supervisor unfreeze` lifts it", markup=False)
    return ExitCode.OK


async def unfreeze(ctx: CliContext) -> int:
    path = ctx.settings().freeze_file
    was_frozen = path.exists()
    path.unlink(missing_ok=True)
    if ctx.json:
        ctx.emit_json({"frozen": False, "was_frozen": was_frozen, "exit_code": 0})
    else:
        ctx.out.print("updates unfrozen" if was_frozen else "updates were not frozen")
    return ExitCode.OK


async def verify(ctx: CliContext) -> int:
    """Whether IMAGE (``name@sha256:…``) carries a signature the configured keys or identity
    trust, checked as under ``enforce`` whatever the service policy: 0 verified, 4 not."""
    async with ctx.runtime(ctx.settings()) as runtime:
        verdict = await runtime.signatures.verify_image(ctx.args.image, Policy.ENFORCE)
    code = ExitCode.OK if verdict.verified else ExitCode.FAILED
    if ctx.json:
        ctx.emit_json({**verdict.model_dump(mode="json"), "exit_code": int(code)})
    else:
        mark = "[green]verified[/green]" if verdict.verified else "[red]NOT verified[/red]"
        ctx.out.print(f"{verdict.image}: {mark} — {verdict.reason}")
        if verdict.signer:
            ctx.out.print(f"  signer: {verdict.signer}", markup=False)
    return code
