"""Commands that ask the sidecar and print: status, history, check, plan, snapshots.

Each prints one JSON object with ``--json`` (the API's own body, so a script sees the same
fields as over HTTP) and a short human rendering otherwise.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from supervisor.api.snapshot_service import manifest_id
from supervisor.update.models import RunRecord

from .context import CliContext
from .exit_codes import ExitCode


async def status(ctx: CliContext) -> int:
    async with ctx.client() as client:
        record = await client.status(ctx.args.update_id)
    if ctx.json:
        ctx.emit_json(record.public())
    else:
        print_record(ctx, record)
    return ExitCode.OK


def print_record(ctx: CliContext, record: RunRecord, log_lines: int = 10) -> None:
    out = ctx.out
    out.print(f"update {record.update_id}: {record.state} ({record.progress}%) {record.phase}")
    out.print(f"  {record.from_version or '?'} → {record.target_version or '?'}", markup=False)
    out.print(f"  started {record.started_at:%Y-%m-%d %H:%M:%S}Z", markup=False)
    if record.finished_at:
        out.print(f"  finished {record.finished_at:%Y-%m-%d %H:%M:%S}Z", markup=False)
    if record.error:
        out.print(f"  error in {record.error.stage}: {record.error.message}", markup=False)
    for line in record.log_tail[-log_lines:]:
        out.print(f"  | {line}", markup=False)


async def history(ctx: CliContext) -> int:
    async with ctx.client() as client:
        runs = await client.history(ctx.args.limit)
    if ctx.json:
        ctx.emit_json({"runs": [run.public() for run in runs]})
        return ExitCode.OK
    table = Table("update", "started (UTC)", "from", "to", "result", "seconds")
    for run in runs:
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
        table.add_row(
            run.update_id, f"{run.started_at:%Y-%m-%d %H:%M}", run.from_version or "",
            run.target_version or "", str(run.result or run.state),
            f"{seconds:.0f}" if seconds is not None else "",
        )  # fmt: skip
    ctx.out.print(table if runs else "no finished updates yet")
    return ExitCode.OK


async def check(ctx: CliContext) -> int:
    async with ctx.client() as client:
        latest = await client.check()
    if ctx.json:
        ctx.emit_json(latest)
    else:
        ctx.out.print(f"latest release: {latest.get('version', '?')}", markup=False)
        for service, image in (latest.get("services") or {}).items():
            ctx.out.print(f"  {service}: {image}", markup=False)
    return ExitCode.OK


async def plan(ctx: CliContext) -> int:
    async with ctx.client() as client:
        answer = await client.plan(ctx.args.version, ctx.args.force)
    if ctx.json:
        ctx.emit_json(answer)
        return ExitCode.OK
    ctx.out.print(
        f"plan: {answer.get('current_version') or '?'} → {answer.get('target_version', '?')}"
        f" (from {answer.get('source', '?')})",
        markup=False,
    )
    services = answer.get("services") or {}
    if isinstance(services, dict) and services:
        table = Table("service", "current", "target", "changes", "signature")
        for name, item in services.items():
            signature = item.get("signature") or {}
            table.add_row(
                name,
                _cell(item.get("current_digest") or item.get("current_image")),
                _cell(item.get("target_digest")),
                "yes" if item.get("changes") else "no",
                f"{signature.get('policy', '?')}: {signature.get('reason', '?')}",
            )
        ctx.out.print(table)
    ctx.out.print(
        f"migrations: {'yes' if answer.get('migrations') else 'no'}, rehearsal: "
        f"{'yes' if answer.get('rehearsal') else 'no'}, estimated backup: "
        f"{_cell(answer.get('estimated_backup_bytes'))} bytes",
        markup=False,
    )
    for blocker in answer.get("blockers") or []:
        ctx.out.print(f"[red]blocked[/red] ({blocker.get('error_key')}): {blocker.get('message')}")
    return ExitCode.OK


async def snapshots(ctx: CliContext) -> int:
    async with ctx.client() as client:
        if ctx.args.create:
            job = await client.create_snapshot()
            with ctx.err.status("taking a snapshot …"):
                job = await client.wait_for_job(job.job_id, ctx.args.poll_interval)
            if ctx.json:
                ctx.emit_json(job.model_dump(mode="json"))
            elif job.error is None:
                ctx.out.print(f"snapshot {manifest_id(job.result or {}) or '?'} taken")
            else:
                ctx.err.print(f"snapshot failed: {job.error.message}", markup=False)
            return ExitCode.OK if job.error is None else ExitCode.FAILED
        manifests = await client.snapshots()
    if ctx.json:
        ctx.emit_json({"snapshots": manifests})
        return ExitCode.OK
    table = Table("snapshot", "reason", "created", "run")
    for manifest in manifests:
        table.add_row(
            manifest_id(manifest),
            _cell(manifest.get("reason")), _cell(manifest.get("created_at")),
            _cell(manifest.get("run_id")),
        )  # fmt: skip
    ctx.out.print(table if manifests else "no snapshots")
    return ExitCode.OK


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
