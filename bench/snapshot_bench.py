"""Benchmark: the sidecar's snapshot path against pg_dump / pg_restore run directly.

    python bench/snapshot_bench.py [--gb 1.0] [--jobs 2]

Builds a PostgreSQL database of about ``--gb`` GB in a fresh container (the test
image), then times:

* direct dump:     ``pg_dump -Fc -f /tmp/direct.dump`` inside the container, to its own disk
* sidecar dump:    ``SnapshotService.create`` through the docker-proxy: held snapshot and
                   table checksums, stdout streamed out, hashed and fsynced in backups/
* direct restore:  ``pg_restore --jobs=N`` of that file into a new database
* sidecar restore: ``SnapshotService.restore_postgres_into``: every snapshot file re-hashed,
                   the dump streamed in as a tar, ``pg_restore --jobs=N``, checksums verified
* sidecar full restore: ``SnapshotService.restore`` (the above plus the swap by rename)

and prints throughput (database size / seconds) and the sidecar/direct ratio.
Needs the test environment (``scripts/testenv up && scripts/testenv images``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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

# ~225 bytes per row on disk (heap + primary key): text that compresses like real data.
ROW_BYTES = 225
BUILD_SQL = """
CREATE TABLE events (
    id bigint PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL,
    payload text NOT NULL, value double precision, blob bytea);
INSERT INTO events
SELECT i, timestamptz '2024-01-01' + i * interval '1 second', 'kind-' || (i % 17),
       md5(i::text) || ' ' || md5((i * 7)::text) || ' ' || repeat(chr(97 + i % 26), 40),
       i / 7.0, decode(md5((i * 13)::text), 'hex')
FROM generate_series(1, {rows}) i;
CREATE INDEX events_at ON events (at);
ANALYZE events;
"""


def report(label: str, seconds: float, size: int) -> float:
    print(f"  {label:<34} {seconds:7.1f} s  {size / seconds / 1e6:7.1f} MB/s", flush=True)
    return seconds


async def best_of(
    repeat: int,
    action: Callable[[], Awaitable[Any]],
    cleanup: Callable[[], Awaitable[Any]] | None = None,
) -> float:
    """The fastest of ``repeat`` runs: other work on the machine only ever adds time."""
    times: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
        if cleanup is not None:
            await cleanup()
    return min(times)


def direct(pg: PostgresHandle, *argv: str) -> None:
    exec_in(pg.container_id, *argv)


async def run(gb: float, jobs: int, repeat: int) -> None:
    env = load_testenv()
    if env is None:
        raise SystemExit("the test images are not built: scripts/testenv up && images")
    proxy_id, proxy_url = start_docker_proxy(env, SIDECAR_PROXY_GRANTS)
    try:
        with postgres_container(env.postgres_image) as pg, tempfile.TemporaryDirectory() as tmp:
            rows = int(gb * 1e9 / ROW_BYTES)
            print(f"building ~{gb:g} GB ({rows} rows) …", flush=True)
            started = time.perf_counter()
            exec_in(
                pg.container_id, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-U", pg.user, "-d", pg.database, stdin=BUILD_SQL.format(rows=rows),
            )  # fmt: skip
            size = int(pg.psql("SELECT pg_database_size('appdb')"))
            print(f"  built {size / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s")
            async with DockerEngine(proxy_url) as engine:
                await compare(engine, pg, Path(tmp), size, jobs, repeat)
    finally:
        docker("rm", "-f", proxy_id, check=False)


async def compare(
    engine: DockerEngine, pg: PostgresHandle, tmp: Path, size: int, jobs: int, repeat: int
) -> None:
    backups = tmp / "backups"
    backups.mkdir()
    options = SnapshotOptions(
        project="bench", backup_dir=backups, min_free_bytes_margin=0, timeout=3600,
        restore_jobs=jobs,
    )  # fmt: skip

    async def locate(role: Role) -> str | None:
        return pg.container_id if role is Role.POSTGRES else None

    service = SnapshotService(engine, SnapshotStore(backups, "bench"), options, locate)
    user = ["-U", pg.user]
    cid = pg.container_id
    pg.psql("SELECT count(*) FROM events")  # warm the cache for both sides alike
    print(f"database {size / 1e6:.0f} MB, pg_restore --jobs={jobs}, best of {repeat}")

    def in_thread(*argv: str) -> Callable[[], Awaitable[None]]:
        return lambda: asyncio.to_thread(direct, pg, *argv)

    async def drop(name: str) -> None:
        await asyncio.to_thread(direct, pg, "dropdb", *user, "--if-exists", name)

    # --- dump -------------------------------------------------------------------------
    direct_dump = report("direct pg_dump -Fc -f (own disk)", await best_of(
        repeat, in_thread("pg_dump", "-Fc", *user, "-d", pg.database, "-f", "/tmp/direct.dump"),
    ), size)  # fmt: skip
    stream_file = backups / "stream.dump"

    async def stream_dump() -> None:
        stream_file.unlink(missing_ok=True)
        async with HashingFileSink(stream_file) as sink:
            await engine.exec(cid, ["pg_dump", "-Fc", *user, "-d", pg.database], stdout=sink)

    stream_out = report("sidecar stream (exec → sink)", await best_of(repeat, stream_dump), size)
    created: list[Any] = []

    async def create() -> None:
        created.append(await service.create(SnapshotReason.MANUAL))

    product_dump = report("sidecar snapshot (create)", await best_of(repeat, create), size)
    manifest = created[-1]
    print(f"  dump file {manifest.file('postgres.dump').size / 1e6:.0f} MB")

    # --- restore ----------------------------------------------------------------------
    async def direct_restore() -> None:
        await in_thread("createdb", *user, "r_direct")()
        await in_thread(
            "pg_restore", *user, "-d", "r_direct", f"--jobs={jobs}", "/tmp/direct.dump"
        )()

    restore_direct = report("direct pg_restore (own disk)", await best_of(
        repeat, direct_restore, lambda: drop("r_direct")), size)  # fmt: skip

    async def stream_restore() -> None:
        await in_thread("createdb", *user, "r_stream")()
        await engine.put_file(cid, stream_file, "/tmp", name="stream.dump")
        await engine.exec(cid, ["pg_restore", *user, "-d", "r_stream", f"--jobs={jobs}",
                                "/tmp/stream.dump"])  # fmt: skip
        await in_thread("rm", "/tmp/stream.dump")()

    stream_in = report("sidecar stream (put_file+restore)", await best_of(
        repeat, stream_restore, lambda: drop("r_stream")), size)  # fmt: skip
    product_restore = report("sidecar restore_postgres_into", await best_of(
        repeat, lambda: service.restore_postgres_into(manifest.id, "r_product"),
        lambda: drop("r_product")), size)  # fmt: skip
    full = report("sidecar restore (swap)", await best_of(
        1, lambda: service.restore(manifest.id)), size)  # fmt: skip
    direct(pg, "rm", "-f", "/tmp/direct.dump")

    print("ratios, direct time / sidecar time (1.0 = as fast as direct; target >= 0.9):")
    for label, d, s in (
        ("stream only: dump", direct_dump, stream_out),
        ("stream only: restore", restore_direct, stream_in),
        ("stream only: dump+restore", direct_dump + restore_direct, stream_out + stream_in),
        ("with checksums: dump", direct_dump, product_dump),
        ("with checksums: restore", restore_direct, product_restore),
        ("with checksums: dump+restore", direct_dump + restore_direct,
         product_dump + product_restore),
    ):  # fmt: skip
        print(f"  {label:<30} {d / s:5.2f}x")
    print(f"  (full restore with the swap by rename: {full:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="database size to build (GB)")
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore --jobs on both sides")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is shown)")
    args = parser.parse_args()
    asyncio.run(run(args.gb, args.jobs, args.repeat))


if __name__ == "__main__":
    main()
