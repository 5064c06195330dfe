"""Shared by the real-engine failure scenarios: a real ``supervisor serve`` against a
Compose stack, the run journal as seen from outside, and data measured independently of
the product (tests/docker/test_second_order*.py, test_crash_matrix.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.compose import ComposeProject
from tests.support.dockercli import docker
from tests.support.pg_state import databases
from tests.support.sidecar import stack_postgres
from tests.support.sidecar_process import Sidecar, sidecar_env, sidecar_process
from tests.support.testenv import ROOT

ARTIFACT = ROOT / "test-artifacts" / "second-order.md"
ROWS = 20000
ENDED = ("completed", "failed", "rolled_back", "cancelled", "needs_intervention")


def journal(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((state_dir / "current-run.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_end(sidecar: Sidecar, update_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record: dict[str, Any] = sidecar.call("GET", f"/admin/update/status?update_id={update_id}")
        if record["state"] in ENDED:
            return record
        time.sleep(0.3)
    raise AssertionError(f"run {update_id} did not end")


def seed_rows(project: ComposeProject) -> None:
    stack_postgres(project).psql(
        f"INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, {ROWS}) g"  # noqa: S608
    )


def items_state(project: ComposeProject) -> tuple[str, str, str]:
    """(row count, content checksum, applied migrations), measured outside the product."""
    pg = stack_postgres(project)
    count = pg.psql("SELECT count(*) FROM items")
    checksum = pg.psql("SELECT md5(string_agg(id || ':' || name, ',' ORDER BY id)) FROM items")
    migrations = pg.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations")
    return count, checksum, migrations


def snapshots_of(sidecar: Sidecar, update_id: str) -> list[dict[str, Any]]:
    listed = sidecar.call("GET", "/admin/snapshots")
    items = listed["snapshots"] if isinstance(listed, dict) else listed
    return [s for s in items if s.get("run_id") == update_id]


def replaced_databases(project: ComposeProject) -> list[str]:
    """Databases a rollback left beside the live one: a replaced one, or a rollback copy."""
    names = databases(stack_postgres(project))
    return [d for d in names if "replaced" in d or "__old_" in d or "__copy_" in d]


def assert_listed_artifacts_exist(
    record: dict[str, Any], sidecar: Sidecar, project: ComposeProject
) -> None:
    """Every artifact the record lists is really there."""
    names = set(docker("ps", "-a", "--format", "{{.Names}}").split())
    listed = {s["id"] for s in sidecar.call("GET", "/admin/snapshots")["snapshots"]}
    for artifact in record.get("kept", []):
        if artifact.startswith(("pre-update snapshot", "pre-rollback dump")):
            assert artifact.split()[2] in listed, artifact
        elif artifact.startswith("dump "):
            assert artifact.split()[1] in listed, artifact
        elif artifact.startswith("old container") and "gone" not in artifact:
            assert artifact.split()[2] in names, artifact
        elif artifact.startswith("database"):
            assert artifact.split()[1] in databases(stack_postgres(project)), artifact


@contextmanager
def running_sidecar(
    project: ComposeProject, proxy_url: str, workdir: Path, **overrides: str
) -> Iterator[Sidecar]:
    env = sidecar_env(project, proxy_url, workdir)
    env.update({"SUPERVISOR_HEALTH_TIMEOUT": "30", **overrides})
    with sidecar_process(env, workdir / "sidecar.log") as sidecar:
        yield sidecar


@contextmanager
def held_update(
    project: ComposeProject,
    proxy_url: str,
    workdir: Path,
    target: str,
    hold: str,
    **overrides: str,
) -> Iterator[tuple[Sidecar, str]]:
    """A sidecar (no rehearsal) updating to ``target``, held at ``hold`` for 6 s: the test
    does its damage inside the hold, then waits for the end."""
    with running_sidecar(
        project, proxy_url, workdir, STACKSUP_FAULT_HOLD=f"{hold}:6", SUPERVISOR_REHEARSE="false",
        **overrides,
    ) as sc:  # fmt: skip
        sc.start()
        update_id = start(sc, target)
        wait_for(lambda: sc.log_has(f"holding {hold}"), f"the {hold} hold")
        yield sc, update_id


def start(sidecar: Sidecar, target: str, force: bool = False) -> str:
    started = sidecar.call(
        "POST", "/admin/update/start", {"target_version": target, "force": force}
    )
    return str(started["update_id"])


def write_artifact(title: str, header: str, rows: list[str]) -> None:
    """Append a measured table to test-artifacts/second-order.md (the note's figures)."""
    ARTIFACT.parent.mkdir(exist_ok=True)
    separator = "|" + "---|" * (header.count("|") - 1)
    with ARTIFACT.open("a") as out:
        out.write(f"\n### {title}\n\n{header}\n{separator}\n" + "\n".join(rows) + "\n")
