"""S4: the sidecar process is killed with SIGKILL at every stage, restarted, and
every case ends healthy on 1.1.0 or on 1.0.0 with its data intact.

The sidecar runs for real here: ``supervisor serve`` as a subprocess, the
update started over its HTTP API, the journal watched from outside, and
``kill -9`` at the moment the journal shows the stage (its boundary: held
open with the ``STACKSUP_FAULT_HOLD`` fault injection, since some stages take
milliseconds) or a little later (in the middle of it). A restart recovers
before it serves.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.support.compose import ComposeProject, StackFactory
from tests.support.scenarios import ROWS, journal, seed_rows
from tests.support.sidecar import app_version, stack_postgres
from tests.support.sidecar_process import sidecar_env, sidecar_process
from tests.support.testenv import ROOT

ARTIFACT = ROOT / "test-artifacts" / "crash-matrix.md"

# Kills at random moments with no hold at all (seeded; the seed is printed and can be
# replayed with STACKSUP_CRASH_SEED): inside stages and inside engine calls.
SEED = int(os.environ.get("STACKSUP_CRASH_SEED", random.randrange(1 << 30)))
RANDOM_KILLS = 4

# (stage the journal shows, seconds to wait after that before kill -9)
CASES = [
    ("preflight", 0.0),
    ("pull", 0.0),
    ("verify", 0.0),
    ("rehearse", 0.0),
    ("rehearse", 0.6),
    ("stop", 0.0),
    ("backup", 0.0),
    ("backup", 0.3),
    ("migrate", 0.0),
    ("migrate", 0.6),
    ("recreate", 0.0),
    ("recreate", 0.8),
    ("healthcheck", 0.0),
    ("healthcheck", 4.0),
]


def journal_state(state_dir: Path) -> str | None:
    state = journal(state_dir).get("state")
    return str(state) if state is not None else None


def data_matches_version(project: ComposeProject, version: str) -> str:
    """What the database says, checked against what the running version needs."""
    pg = stack_postgres(project)
    migrations = pg.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations")
    count = pg.psql("SELECT count(*) FROM items")
    assert count == str(ROWS), f"rows lost: {count}"
    if version == "1.1.0":
        assert migrations == "001,002"
        assert pg.psql("SELECT count(*) FROM items WHERE category = 'general'") == str(ROWS)
    else:
        assert migrations == "001"
        assert (
            pg.psql(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'items' AND column_name = 'category'"
            )
            == "0"
        )
    return f"{count} rows, schema {migrations}"


_RNG = random.Random(SEED)
ALL_CASES = [
    *CASES,
    *(("random", round(_RNG.uniform(0.5, 10.0), 2)) for _ in range(RANDOM_KILLS)),
]
CHUNKS = 3  # each chunk on its own stack, so the parallel suite is not waiting on one test


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_s4_kill_at_every_stage_ends_on_a_good_version(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path, chunk: int
) -> None:
    rows: list[str] = []
    with compose_stack("1.0.0") as project:
        seed_rows(project)
        env = sidecar_env(project, docker_proxy_url, tmp_path)
        state_dir = Path(env["SUPERVISOR_STATE_DIR"])
        with sidecar_process(env, tmp_path / "sidecar.log") as sidecar:
            print(f"crash seed {SEED}")
            for stage, delay in ALL_CASES[chunk::CHUNKS]:
                # Boundaries of stages that take milliseconds are held open for the kill.
                hold = stage != "random" and delay == 0
                sidecar.env["STACKSUP_FAULT_HOLD"] = f"{stage}:30" if hold else ""
                sidecar.start()
                current = app_version(project)
                target, force = ("1.1.0", False) if current == "1.0.0" else ("1.0.0", True)
                started = sidecar.call(
                    "POST", "/admin/update/start", {"target_version": target, "force": force}
                )
                update_id = started["update_id"]
                if stage != "random":
                    deadline = time.monotonic() + 120
                    seen = journal_state(state_dir)
                    while seen != stage and time.monotonic() < deadline:
                        finished = seen in ("completed", "failed", "rolled_back", "cancelled")
                        assert not finished, f"run ended in {seen} before reaching {stage}"
                        time.sleep(0.02)
                        seen = journal_state(state_dir)
                    assert seen == stage, f"never saw {stage} (last {seen})"
                time.sleep(delay)
                at_kill = journal_state(state_dir)
                sidecar.kill()
                assert at_kill not in ("completed", "failed", "rolled_back", "cancelled"), (
                    f"seed {SEED}: the kill at +{delay} s came after the run ended ({at_kill})"
                )
                sidecar.env["STACKSUP_FAULT_HOLD"] = ""
                sidecar.start()  # recovers before it answers
                record = sidecar.call("GET", f"/admin/update/status?update_id={update_id}")
                assert record["state"] in ("completed", "failed", "rolled_back"), (SEED, record)
                running = app_version(project)
                expected = target if record["state"] == "completed" else current
                assert running == expected, (stage, delay, record["state"], running)
                data = data_matches_version(project, running)
                rows.append(
                    f"| {stage} | {'boundary' if hold else f'+{delay:g} s'} | {at_kill} "
                    f"| {current} → {target} | {record['state']} | {running} | {data} |"
                )
                sidecar.kill()
    ARTIFACT.parent.mkdir(exist_ok=True)
    artifact = ARTIFACT.with_name(f"crash-matrix-{chunk}.md")
    artifact.write_text(
        "| killed in | when | journal at kill | update | end state | running | database |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(artifact.read_text())
