"""Commands that ask the sidecar and print: status, history, check, plan, snapshots.

Each prints one JSON object with ``--json`` (the API's own body, so a script sees the same
fields as over HTTP) and a short human rendering otherwise.
"""

from __future__ import annotations

from typing import Any

from rich import box, filesize
from rich.table import Table

from supervisor.api.snapshot_fields import manifest_id
from supervisor.update.models import RunRecord
from supervisor.update.stages import Stage

from .commands_policy import print_policy
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
    out.print(
        f"update {record.update_id}: {record.state} ({record.progress}%) {phase_text(record)}",
        markup=False,
    )
    out.print(f"  {record.from_version or '?'} → {record.target_version or '?'}", markup=False)
    out.print(f"  started {record.started_at:%Y-%m-%d %H:%M:%S}Z", markup=False)
    if record.finished_at:
        out.print(f"  finished {record.finished_at:%Y-%m-%d %H:%M:%S}Z", markup=False)
    if record.error:
        out.print(f"  error in {record.error.stage}: {record.error.message}", markup=False)
    for line in record.log_tail[-log_lines:]:
        out.print(f"  | {line}", markup=False)


def phase_text(record: RunRecord) -> str:
    """The phase as the record's stages tell it: ``needs_intervention`` says which undo failed.

    A run whose restart failed in ``stop`` never rolled back, so it must not read "Rollback
    failed" (older journals carry that text for every ``needs_intervention``).
    """
    if record.state is not Stage.NEEDS_INTERVENTION:
        return record.phase
    reached = {timing.stage for timing in record.stages}
    if Stage.ROLLBACK in reached:
        return "Rollback failed: operator intervention needed"
    if reached & {Stage.MIGRATE, Stage.RECREATE, Stage.HEALTHCHECK}:
        return "Stopped half-way: operator intervention needed"
    return "Restarting the stopped services failed: operator intervention needed"


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
        policy = await client.policy(decisions=5)
    if ctx.json:
        ctx.emit_json({**answer, "policy": policy})
        return ExitCode.OK
    ctx.out.print(
        f"plan: {answer.get('current_version') or '?'} → {answer.get('target_version', '?')}"
        f" (from {answer.get('source', '?')})",
        markup=False,
    )
    services = answer.get("services") or {}
    if isinstance(services, dict) and services:
        # Tags and short digests: full references (127.0.0.1:5000/acme/app@sha256:…) do not
        # fit 80 columns, and the repository is the same on both sides anyway.
        table = Table("service", "current", "target", "changes", "signature",
                      box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))  # fmt: skip
        for column in table.columns[:4]:
            column.no_wrap = True
        for name, item in services.items():
            table.add_row(
                name,
                tag_and_digest(item.get("current_version"), item.get("current_digest"),
                               item.get("current_image")),
                tag_and_digest(answer.get("target_version"), item.get("target_digest"),
                               item.get("target_image")),
                "yes" if item.get("changes") else "no",
                signature_cell(item.get("signature") or {}),
            )  # fmt: skip
        ctx.out.print(table)
    estimate = answer.get("estimated_backup_bytes")
    size = filesize.decimal(estimate) if isinstance(estimate, int) else "unknown"
    ctx.out.print(
        f"migrations: {'yes' if answer.get('migrations') else 'no'}, rehearsal: "
        f"{'yes' if answer.get('rehearsal') else 'no'}, estimated backup: {size}",
        markup=False,
    )
    for blocker in answer.get("blockers") or []:
        ctx.out.print(f"[red]blocked[/red] ({blocker.get('error_key')}): {blocker.get('message')}")
    target = answer.get("target_version")
    bad = [m for m in policy.get("marks") or [] if m["version"] == target and m["kind"] == "bad"]
    if bad:
        ctx.out.print(
            f"[yellow]marked bad[/yellow]: {target} ended {bad[0].get('result')} in run "
            f"{bad[0].get('update_id')}; a manual update is still allowed"
        )
    print_policy(ctx, policy, sources=True)
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
    table.columns[0].no_wrap = True  # the id is what `supervisor restore` needs: never cut it
    for manifest in manifests:
        table.add_row(
            manifest_id(manifest),
            _cell(manifest.get("reason")), _cell(manifest.get("created_at")),
            _cell(manifest.get("run_id")),
        )  # fmt: skip
    ctx.out.print(table if manifests else "no snapshots")
    return ExitCode.OK


def signature_cell(verdict: dict[str, Any]) -> str:
    """The verdict in a word or two (the reason in full is in ``--json`` and the run log)."""
    policy = verdict.get("policy", "?")
    if policy == "off":
        return "off"
    if verdict.get("verified"):
        return "ok"
    return "REFUSED" if policy == "enforce" else "unverified"


def short_digest(reference: object) -> str:
    """``name@sha256:3f2a…`` → ``3f2a9c1b7d4e`` (12 hex digits, as ``docker images`` shows)."""
    if not isinstance(reference, str) or not reference:
        return ""
    digest = reference.rsplit("@", 1)[-1]
    return digest.split(":", 1)[-1][:12] if ":" in digest else ""


def tag_and_digest(tag: object, digest: object, image: object = None) -> str:
    """``1.4.2 @3f2a9c1b7d4e``; the tag from the image reference when no version is known."""
    if not tag and isinstance(image, str) and "@" not in image:
        last = image.rsplit("/", 1)[-1]
        tag = last.rsplit(":", 1)[1] if ":" in last else None
    short = short_digest(digest)
    text = str(tag) if tag else "?"
    return f"{text} @{short}" if short else text


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
