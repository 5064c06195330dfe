"""Benchmark: the sidecar's snapshot path against pg_dump / pg_restore run directly.

    python bench/snapshot_bench.py [--gb 1.0] [--jobs 2] [--repeat 3] [--upload]

Builds a PostgreSQL database of about ``--gb`` GB in a fresh container (the test
image), then times, in ``--repeat`` rounds that each run every path once:

* direct dump:     ``pg_dump -Fc -f /tmp/direct.dump`` inside the container, to its own disk
* stream only:     ``pg_dump -Fc`` through exec and the docker-proxy into a hashing file sink
* sidecar dump:    ``SnapshotService.create``: held snapshot, checksums on a second
                   connection in that snapshot while pg_dump runs, stdout streamed out,
                   hashed and fsynced in backups/
* direct restore:  ``pg_restore --jobs=N`` of that file into a new database
* stream only:     ``put_file`` of the dump, then ``pg_restore --jobs=N``
* sidecar restore: ``SnapshotService.restore_postgres_into``: every snapshot file re-hashed,
                   the dump read in place through a sibling container (the engine runs
                   here, so the backups folder's path is its host path; ``--upload``: the
                   dump streamed in as a tar instead), ``pg_restore --jobs=N``, checksums
                   verified on parallel connections
* sidecar full restore (one run): ``SnapshotService.restore`` (plus the swap by rename)

and prints a table of medians (min-max) and direct/sidecar ratios, with the load average,
then the CPU time the whole machine spent on each path (busy CPU-seconds from
``/proc/stat``: user + system + interrupts, not idle or I/O wait), which says how much of a
ratio is work added and how much is waiting. Every timed run starts after a ``CHECKPOINT``,
so that no path pays for the WAL the one before it wrote.
Needs the test environment (``scripts/testenv up && scripts/testenv images``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _events import EVENTS_SQL, events_rows  # noqa: E402  (bench/, the script's directory)

from supervisor.const import Role  # noqa: E402
from supervisor.engine.docker_engine import DockerEngine  # noqa: E402
from supervisor.snapshots import (  # noqa: E402
    SnapshotOptions,
    SnapshotReason,
    SnapshotService,
    SnapshotStore,
)
from supervisor.snapshots.sink import HashingFileSink  # noqa: E402
from tests.conftest import SIDECAR_PROXY_GRANTS, start_docker_proxy  # noqa: E402
from tests.support.databases import PostgresHandle, postgres_container  # noqa: E402
from tests.support.dockercli import docker, exec_in  # noqa: E402
from tests.support.testenv import load_testenv  # noqa: E402

BUILD_SQL = EVENTS_SQL + "ANALYZE events;\n"


@dataclass
class Timings:
    """Seconds of each run of one path, in the order of the rounds, and the machine's busy
    CPU-seconds during each run."""

    label: str
    runs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def spread(self) -> str:
        return f"{min(self.runs):.1f}-{max(self.runs):.1f}"


def busy_cpu_seconds() -> float:
    """CPU time the machine has spent busy since boot (all CPUs; idle and iowait excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Wall seconds and busy CPU-seconds of ``action``."""
    cpu, started = busy_cpu_seconds(), time.perf_counter()
    await action()
    return time.perf_counter() - started, busy_cpu_seconds() - cpu


async def rounds(
    repeat: int,
    paths: list[tuple[Timings, Callable[[], Awaitable[Any]]]],
    before: Callable[[], Awaitable[Any]],
    cleanup: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Each round runs every path once, in turn: a change of the machine's load (other
    work on it) then hits direct and sidecar runs alike, and each round gives a ratio.
    ``before`` runs ahead of every timed run, untimed."""
    for number in range(repeat):
        for timings, action in paths:
            await before()
            wall, cpu = await timed(action)
            timings.runs.append(wall)
            timings.cpu.append(cpu)
            if cleanup is not None:
                await cleanup()
        say(
            f"  round {number + 1}: "
            + ", ".join(f"{t.label} {t.runs[-1]:.1f} s" for t, _ in paths),
            f"(load {load()})",
        )


REPORT: list[str] = []  # everything said, written to bench/results/ at the end


def say(*parts: object) -> None:
    """Print, and keep the line for the report file."""
    line = " ".join(str(part) for part in parts)
    REPORT.append(line)
    print(line)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def direct(pg: PostgresHandle, *argv: str) -> None:
    exec_in(pg.container_id, *argv)


async def run(gb: float, jobs: int, repeat: int, upload: bool) -> None:
    env = load_testenv()
    if env is None:
        raise SystemExit("the test images are not built: scripts/testenv up && images")
    proxy_id, _ = start_docker_proxy(env, SIDECAR_PROXY_GRANTS)
    # As in production, where the sidecar reaches the proxy over a Docker network: the
    # proxy's own address, not the published port, whose userland relay (docker-proxy)
    # would add about a quarter to the transport's CPU time.
    address = docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", proxy_id
    ).split()[0]
    proxy_url = f"tcp://{address}:2375"
    try:
        with postgres_container(env.postgres_image) as pg, tempfile.TemporaryDirectory() as tmp:
            rows = events_rows(gb)
            say(f"building ~{gb:g} GB ({rows} rows) …")
            started = time.perf_counter()
            exec_in(
                pg.container_id, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-U", pg.user, "-d", pg.database, stdin=BUILD_SQL.format(rows=rows),
            )  # fmt: skip
            size = int(pg.psql("SELECT pg_database_size('appdb')"))
            say(f"  built {size / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s")
            async with DockerEngine(proxy_url) as engine:
                await compare(engine, pg, Path(tmp), size, jobs, repeat, upload)
    finally:
        docker("rm", "-f", proxy_id, check=False)


async def compare(
    engine: DockerEngine,
    pg: PostgresHandle,
    tmp: Path,
    size: int,
    jobs: int,
    repeat: int,
    upload: bool,
) -> None:
    backups = tmp / "backups"
    backups.mkdir()
    options = SnapshotOptions(
        project="bench", backup_dir=backups, min_free_bytes_margin=0, timeout=3600,
        restore_jobs=jobs, backup_host_dir="off" if upload else str(backups),
    )  # fmt: skip

    async def locate(role: Role) -> str | None:
        return pg.container_id if role is Role.POSTGRES else None

    service = SnapshotService(engine, SnapshotStore(backups, "bench"), options, locate)
    user = ["-U", pg.user]
    cid = pg.container_id
    pg.psql("SELECT count(*) FROM events")  # warm the cache for both sides alike
    how = "uploaded" if upload else "read in place"
    say(f"database {size / 1e6:.0f} MB, pg_restore --jobs={jobs}, median of {repeat}, "
          f"load {load()}, the product's dump {how}")  # fmt: skip

    def in_thread(*argv: str) -> Callable[[], Awaitable[None]]:
        return lambda: asyncio.to_thread(direct, pg, *argv)

    async def checkpoint() -> None:
        await in_thread("psql", "-X", "-q", *user, "-d", "postgres", "-c", "CHECKPOINT")()

    async def drop(*names: str) -> None:
        for name in names:
            await asyncio.to_thread(direct, pg, "dropdb", *user, "--if-exists", name)

    # --- dump -------------------------------------------------------------------------
    stream_file = backups / "stream.dump"

    async def stream_dump() -> None:
        stream_file.unlink(missing_ok=True)
        async with HashingFileSink(stream_file) as sink:
            await engine.exec(cid, ["pg_dump", "-Fc", *user, "-d", pg.database], stdout=sink)

    created: list[Any] = []

    async def create() -> None:
        created.append(await service.create(SnapshotReason.MANUAL))

    direct_dump = Timings("direct pg_dump -Fc -f")
    stream_out = Timings("stream only")
    product_dump = Timings("create")
    say("dump:")
    await rounds(repeat, [
        (direct_dump, in_thread("pg_dump", "-Fc", *user, "-d", pg.database,
                                "-f", "/tmp/direct.dump")),
        (stream_out, stream_dump),
        (product_dump, create),
    ], checkpoint)  # fmt: skip
    manifest = created[-1]
    say(f"  dump file {manifest.file('postgres.dump').size / 1e6:.0f} MB")

    # --- restore ----------------------------------------------------------------------
    async def direct_restore() -> None:
        await in_thread("createdb", *user, "r_direct")()
        await in_thread(
            "pg_restore", *user, "-d", "r_direct", f"--jobs={jobs}", "/tmp/direct.dump"
        )()

    async def stream_restore() -> None:
        await in_thread("createdb", *user, "r_stream")()
        await engine.put_file(cid, stream_file, "/tmp", name="stream.dump")
        await engine.exec(cid, ["pg_restore", *user, "-d", "r_stream", f"--jobs={jobs}",
                                "/tmp/stream.dump"])  # fmt: skip
        await in_thread("rm", "/tmp/stream.dump")()

    restore_direct = Timings("direct pg_restore")
    stream_in = Timings("stream only")
    product_restore = Timings("restore_postgres_into")
    say("restore:")
    await rounds(repeat, [
        (restore_direct, direct_restore),
        (stream_in, stream_restore),
        (product_restore, lambda: service.restore_postgres_into(manifest.id, "r_product")),
    ], checkpoint, lambda: drop("r_direct", "r_stream", "r_product"))  # fmt: skip
    full, _ = await timed(lambda: service.restore(manifest.id))
    direct(pg, "rm", "-f", "/tmp/direct.dump")

    say(f"\n{size / 1e6:.0f} MB database, median of {repeat} (min-max), load now {load()}")
    say("| path | direct s | sidecar s | ratio (median) | ratio per round |")
    say("|---|---:|---:|---:|---:|")
    for label, d, s in (
        ("dump, stream only", [direct_dump], [stream_out]),
        ("dump, with checksums (product)", [direct_dump], [product_dump]),
        ("restore, stream only", [restore_direct], [stream_in]),
        ("restore, with verification (product)", [restore_direct], [product_restore]),
        ("dump + restore, product", [direct_dump, restore_direct],
         [product_dump, product_restore]),
        # The cost of the checksums alone: the product against the same transport.
        ("checksums alone: dump (stream / product)", [stream_out], [product_dump]),
        ("checksums alone: restore (stream / product)", [stream_in], [product_restore]),
    ):  # fmt: skip
        d_med = sum(t.median for t in d)
        s_med = sum(t.median for t in s)
        per_round = [sum(t.runs[i] for t in d) / sum(t.runs[i] for t in s) for i in range(repeat)]
        d_spread = d[0].spread() if len(d) == 1 else "-"
        s_spread = s[0].spread() if len(s) == 1 else "-"
        say(
            f"| {label} | {d_med:.1f} ({d_spread}) | {s_med:.1f} ({s_spread}) "
            f"| {d_med / s_med:.2f}x | {min(per_round):.2f}-{max(per_round):.2f}x |"
        )
    say(f"(full restore with the swap by rename, one run: {full:.1f} s)")
    say("\nbusy CPU-seconds of the machine (median; what a path costs beyond waiting):")
    cpus = os.cpu_count() or 1
    say(f"| path | wall s | busy CPU-s | of {cpus} CPUs x wall |")
    say("|---|---:|---:|---:|")
    for t in (direct_dump, stream_out, product_dump, restore_direct, stream_in, product_restore):
        say(f"| {t.label} | {t.median:.1f} | {t.cpu_median:.1f} "
              f"| {t.cpu_median / (cpus * t.median):.0%} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="database size to build (GB)")
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore --jobs on both sides")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the median is shown)")
    parser.add_argument(
        "--upload", action="store_true",
        help="the product uploads the dump instead of reading it in place",
    )  # fmt: skip
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    asyncio.run(run(args.gb, args.jobs, args.repeat, args.upload))
    out = ROOT / "bench" / "results" / f"snapshot-{started}-{args.gb:g}gb.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(REPORT) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
