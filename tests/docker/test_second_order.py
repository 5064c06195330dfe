"""Second-order failures on the real engine: crashes inside the rollback, a full backups
disk, a corrupted snapshot, retained containers removed by hand, cancel, a second writer.

Each scenario runs ``supervisor serve`` as a real process against a real Compose stack
through the docker-proxy, and asserts the end state, the data (rows, schema, per-table
checksums measured independently of the product) and that every artifact the run record
lists exists. Kills are ``SIGKILL`` at named points inside the rollback (held open with
``STACKSUP_FAULT_HOLD``) and at random moments (seeded, printed) with no hold at all.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.compose import ComposeProject, StackFactory
from tests.support.dockercli import docker
from tests.support.pg_state import databases
from tests.support.scenarios import (
    ROWS,
    assert_listed_artifacts_exist,
    held_update,
    items_state,
    journal,
    replaced_databases,
    running_sidecar,
    seed_rows,
    snapshots_of,
    start,
    wait_end,
    wait_for,
    write_artifact,
)
from tests.support.sidecar import app_version, stack_postgres
from tests.support.sidecar_process import Sidecar

pytestmark = pytest.mark.docker

# --- 1. kill -9 inside the rollback ---------------------------------------------------------

# (name, how the kill is placed, rollback copy on): a held point, or the log line to wait
# for plus a delay. With the copy (the default) PostgreSQL comes back by a rename and the
# replaced database is dumped afterwards; without it, the dump is restored.
ROLLBACK_KILLS: list[tuple[str, str, float, bool]] = [
    ("after the InfluxDB pre-rollback backup", "hold:rollback.pre-rollback-taken", 0, True),
    ("mid-swap of the copy", "log:swapping the rollback copy", 0.05, True),
    ("right after the swap", "hold:rollback.swapped", 0, True),
    ("while containers are put back", "hold:rollback.put-back", 0, True),
    ("after the replaced database's dump", "hold:rollback.replaced-dumped", 0, True),
    ("restore path: after the pre-rollback dump", "hold:rollback.pre-rollback-taken", 0, False),
    ("restore path: mid-restore", "log:restoring the database from snapshot", 0.4, False),
]


@pytest.mark.timeout(1500)
def test_kill_inside_rollback_resumes_it(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("STACKSUP_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    cases = [*ROLLBACK_KILLS, *((f"random +{d:.2f} s", "random", d, copy) for d, copy in
                               ((rng.uniform(0, 3), copy) for copy in (True, False)))]  # fmt: skip
    print(f"crash seed {seed}")
    rows: list[str] = []
    with compose_stack("1.0.0") as project:
        seed_rows(project)
        before = items_state(project)
        with running_sidecar(
            project, docker_proxy_url, tmp_path, SUPERVISOR_REHEARSE="false"
        ) as sc:
            state_dir = Path(sc.env["SUPERVISOR_STATE_DIR"])
            for name, how, delay, copy in cases:
                kind, _, point = how.partition(":")
                sc.env["STACKSUP_FAULT_HOLD"] = f"{point}:60" if kind == "hold" else ""
                sc.env["SUPERVISOR_ROLLBACK_COPY"] = "true" if copy else "false"
                mark = sc.log_mark()
                sc.start()
                update_id = start(sc, "1.3.0")  # never healthy: the run rolls back
                wait_for(lambda: journal(state_dir).get("state") == "rollback", "rollback")
                if kind == "hold":
                    wait_for(lambda p=point, m=mark: sc.log_has(f"holding {p}", m), point)
                elif kind == "log":
                    wait_for(lambda p=point, m=mark: sc.log_has(p, m), point)
                time.sleep(delay)
                at_kill_state = journal(state_dir).get("state")
                at_kill = journal(state_dir).get("rollback") or {}
                sc.kill()
                assert at_kill_state == "rollback", f"{name}: killed in {at_kill_state}"
                if name.endswith("mid-restore"):
                    assert at_kill["restore_started"], at_kill
                    assert not at_kill["restored"], at_kill
                sc.env["STACKSUP_FAULT_HOLD"] = ""
                sc.start()  # recovery resumes the rollback before it serves
                record = wait_end(sc, update_id)
                assert record["state"] == "rolled_back", (name, record.get("error"))
                assert app_version(project) == "1.0.0"
                assert items_state(project) == before, name
                pre = [s for s in snapshots_of(sc, update_id) if s["reason"] == "pre-rollback"]
                journal_end = record["rollback"] or {}
                assert journal_end.get("via_copy") is copy, (name, journal_end)
                # One of each: with the copy, InfluxDB's backup before its restore and the
                # replaced database's dump after; without, one dump of both before.
                assert len(pre) <= (2 if copy else 1), f"{name}: a pre-rollback dump twice"
                ids = {s["id"] for s in pre}
                assert (
                    record["pre_rollback_snapshot_id"] in ids
                    or journal_end.get("pre_rollback") == "failed"
                )
                if copy:
                    assert journal_end["replaced_snapshot_id"] in ids, journal_end
                for snapshot_id in ids:
                    sc.call("GET", f"/admin/snapshots/{snapshot_id}")
                assert not replaced_databases(project), replaced_databases(project)
                assert_listed_artifacts_exist(record, sc, project)
                rows.append(
                    f"| {name} | {_journal_summary(at_kill)} | {record['state']} "
                    f"| 1.0.0 | {before[0]} rows, checksum equal | {len(pre)} |"
                )
                sc.kill()
    write_artifact(
        f"kill -9 inside rollback (seed {seed})",
        "| killed | rollback journal at kill | end | running | data | pre-rollback dumps |",
        rows,
    )


# --- 2. the backups disk fills up mid-dump --------------------------------------------------


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def add_incompressible_rows(project: ComposeProject) -> None:
    """Poorly compressible rows, so that the dump takes a moment to write."""
    stack_postgres(project).psql(
        "INSERT INTO items (name) SELECT md5(g::text) || md5((g * 7)::text) || "
        "md5((g * 13)::text) FROM generate_series(1, 600000) g"
    )


def update_while_filling(sc: Sidecar, backups: Path, folders: str) -> tuple[str, dict[str, Any]]:
    """An update to 1.1.0 while another process fills the backups disk once a file grows
    in ``folders``; the run's id and its final record."""
    sc.start()
    stop = threading.Event()
    filler = threading.Thread(target=fill_when_dumping, args=(backups, stop, folders))
    filler.start()
    update_id = start(sc, "1.1.0")
    try:
        record = wait_end(sc, update_id)
    finally:
        stop.set()
        filler.join(30)
    assert (backups / "filler").exists(), "the disk was never filled"
    return update_id, record


def fill_when_dumping(backups: Path, stop: threading.Event, folders: str) -> None:
    """Another process fills the disk once the dump is being written (a ``.tmp-`` folder
    holds a file that grows), after preflight said there was room."""
    while not stop.is_set():
        growing = [f for d in backups.glob(folders) for f in d.glob("*") if f.stat().st_size]
        if growing:
            subprocess.run(["dd", "if=/dev/zero", f"of={backups / 'filler'}", "bs=1M"],
                           capture_output=True, check=False)  # fmt: skip
            return
        time.sleep(0.01)


@pytest.mark.timeout(600)
def test_backups_disk_full_mid_dump_fails_at_backup(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project, small_tmpfs(tmp_path / "backups", "400m") as backups:
        add_incompressible_rows(project)
        before = items_state(project)
        old_app = project.container("app")
        with running_sidecar(
            project, docker_proxy_url, tmp_path, SUPERVISOR_REHEARSE="false",
            SUPERVISOR_ROLLBACK_COPY="false",  # the dump inside the outage; copy: below
        ) as sc:  # fmt: skip
            update_id, record = update_while_filling(sc, backups, ".tmp-*")
            assert record["state"] == "failed", record.get("error")
            assert record["error"]["stage"] == "backup"
            assert record["error"]["error_key"] == "disk_full", record["error"]
            assert app_version(project) == "1.0.0"
            assert project.container("app") == old_app
            assert items_state(project) == before
            assert snapshots_of(sc, update_id) == []
            leftovers = [p.name for p in backups.iterdir() if p.name != "filler"]
            assert leftovers == [], leftovers
    write_artifact("backups disk full mid-dump", "| end | stage | error | running | data | partial snapshots |",
              ["| failed | backup | disk_full | 1.0.0 (same container) | equal | none |"])  # fmt: skip


@pytest.mark.timeout(600)
def test_backups_disk_full_while_the_copy_is_dumped_rolls_back_by_the_copy(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    """With a rollback copy the database is dumped after the outage; the disk fills while
    that dump is added to the snapshot: no run completes without its pre-update dump, so
    it rolls back (by the copy), the old container and the data as they were."""
    with compose_stack("1.0.0") as project, small_tmpfs(tmp_path / "backups", "400m") as backups:
        add_incompressible_rows(project)
        before = items_state(project)
        old_app = project.container("app")
        with running_sidecar(
            project, docker_proxy_url, tmp_path, SUPERVISOR_REHEARSE="false"
        ) as sc:
            _, record = update_while_filling(sc, backups, ".tmp-*-amend")
            assert record["state"] == "rolled_back", record.get("error")
            assert record["error"]["error_key"] == "disk_full", record["error"]
            assert "pre-update dump of the database" in record["error"]["message"]
            assert record["snapshot_postgres"] == "failed"
            assert record["rollback"]["via_copy"]
            assert app_version(project) == "1.0.0"
            assert project.container("app") == old_app
            assert items_state(project) == before
            assert not [p.name for p in backups.glob(".tmp-*")]  # no half-written folder
            assert_listed_artifacts_exist(record, sc, project)
    write_artifact("backups disk full while the copy is dumped",
              "| end | error | running | data |",
              ["| rolled_back (by the copy) | disk_full | 1.0.0 (same container) | equal |"])  # fmt: skip


# --- 3. a corrupted pre-update snapshot, then a failed migration ----------------------------


@pytest.mark.timeout(600)
def test_corrupt_snapshot_is_not_restored_and_blocks_until_acknowledged(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        seed_rows(project)
        # 1.2.0's migration fails half-way; the restore path (no rollback copy: with one, the
        # database comes back by a rename and the dump is not needed, see the next test)
        with held_update(
            project, docker_proxy_url, tmp_path, "1.2.0", "migrate",
            SUPERVISOR_ROLLBACK_COPY="false",
        ) as (sc, update_id):  # fmt: skip
            snapshot_id = journal(Path(sc.env["SUPERVISOR_STATE_DIR"]))["snapshot_id"]
            dump = next((tmp_path / "backups" / snapshot_id).glob("*.dump"))
            data = bytearray(dump.read_bytes())
            data[len(data) // 2] ^= 0xFF  # one flipped byte, after it was verified
            dump.write_bytes(bytes(data))
            record = wait_end(sc, update_id)
            assert record["state"] == "needs_intervention", record.get("error")
            assert "unusable" in record["error"]["message"]
            assert not replaced_databases(project)  # nothing was restored over the data
            assert stack_postgres(project).psql("SELECT count(*) FROM items") == str(ROWS)
            assert_listed_artifacts_exist(record, sc, project)
            assert any(k.startswith("pre-update snapshot") for k in record["kept"])

            status, body = sc.request("POST", "/admin/update/start", {"target_version": "1.1.0"})
            assert status == 409
            assert body["error_key"] == "needs_intervention"
            assert update_id in body["message"]
            status, body = sc.request("POST", "/admin/update/acknowledge",
                                       {"update_id": update_id, "note": "restored by hand"})  # fmt: skip
            assert status == 200, body
            assert body["acknowledged"]["note"] == "restored by hand"
            history = sc.call("GET", "/admin/update/history")["runs"]
            assert history[0]["acknowledged"] is not None
            status, body = sc.request("POST", "/admin/update/acknowledge",
                                       {"update_id": update_id})  # fmt: skip
            assert status == 409
            assert body["error_key"] == "not_acknowledgeable"
    write_artifact("corrupt pre-update snapshot, failed migration",
              "| end | restored? | start | acknowledge |",
              ["| needs_intervention | no (snapshot unusable) | 409 needs_intervention | 200, then 409 |"])  # fmt: skip


@pytest.mark.timeout(600)
def test_with_a_rollback_copy_a_damaged_snapshot_still_rolls_back(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    """The database comes back from the copy (the snapshot's dump is not used); the damaged
    InfluxDB archive is never restored: InfluxDB keeps the failed version's points, named
    in the warnings, and the run ends on the old version."""
    with compose_stack("1.0.0") as project:
        seed_rows(project)
        before = items_state(project)
        with held_update(project, docker_proxy_url, tmp_path, "1.2.0", "migrate") as (
            sc,
            update_id,
        ):
            snapshot_id = journal(Path(sc.env["SUPERVISOR_STATE_DIR"]))["snapshot_id"]
            archive = tmp_path / "backups" / snapshot_id / "influxdb.tar"
            data = bytearray(archive.read_bytes())
            data[len(data) // 2] ^= 0xFF
            archive.write_bytes(bytes(data))
            record = wait_end(sc, update_id)
            assert record["state"] == "rolled_back", record.get("error")
            assert record["rollback"]["via_copy"]
            assert app_version(project) == "1.0.0"
            assert items_state(project) == before
            assert not replaced_databases(project)
            assert any("InfluxDB was not restored" in w and "damaged" in w
                       for w in record["warnings"]), record["warnings"]  # fmt: skip
    write_artifact("damaged InfluxDB archive, failed migration, rollback copy",
              "| end | PostgreSQL | InfluxDB |",
              ["| rolled_back | back from the copy, rows equal | not restored (warning) |"])  # fmt: skip


# --- 4. retained old containers removed by hand during healthcheck --------------------------


@pytest.mark.timeout(600)
def test_retained_containers_removed_by_hand_are_recreated(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        seed_rows(project)
        before = items_state(project)
        with held_update(project, docker_proxy_url, tmp_path, "1.3.0", "healthcheck") as (
            sc,
            update_id,
        ):
            old = [n for n in docker("ps", "-a", "--format", "{{.Names}}").split()
                   if n.startswith(project.name) and ".old-" in n]  # fmt: skip
            assert len(old) == 2, old
            docker("rm", "-f", *old)
            record = wait_end(sc, update_id)
            assert record["state"] == "rolled_back", record.get("error")
            assert app_version(project) == "1.0.0"
            assert items_state(project) == before
            version = sc.call("GET", "/admin/version")
            assert version["current"]["app"]["tag"] == "1.0.0", version["current"]
            assert version["current"]["app"]["state"] == "running", version["current"]
            assert version["last_result"]["state"] == "rolled_back"
    write_artifact("retained containers removed by hand", "| end | running | data |",
              ["| rolled_back (recreated from the recorded spec) | 1.0.0 | equal |"])  # fmt: skip


# --- 5. cancel in each cancellable stage; a second start while running ----------------------


@pytest.mark.timeout(600)
def test_cancel_in_each_cancellable_stage(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    rows = []
    with (
        compose_stack("1.0.0") as project,
        running_sidecar(project, docker_proxy_url, tmp_path) as sc,
    ):
        before = items_state(project)
        for stage in ("preflight", "pull", "verify", "rehearse"):
            sc.env["STACKSUP_FAULT_HOLD"] = f"{stage}:4"
            mark = sc.log_mark()
            sc.start()
            update_id = start(sc, "1.1.0")
            wait_for(lambda s=stage, m=mark: sc.log_has(f"holding {s}", m), stage)
            status, body = sc.request("POST", "/admin/update/start", {"target_version": "1.1.0"})
            assert status == 409, body
            assert body["error_key"] == "update_running", body
            status, body = sc.request("POST", "/admin/update/cancel", {"update_id": update_id})
            assert status == 202, body
            record = wait_end(sc, update_id)
            assert record["state"] == "cancelled", (stage, record)
            assert app_version(project) == "1.0.0"
            assert items_state(project) == before
            rows.append(f"| {stage} | 409 update_running | cancelled | 1.0.0 |")
            sc.stop()
    write_artifact(
        "cancel in each cancellable stage", "| stage | second start | end | running |", rows
    )


# --- 6. a CLI restore while the server recovers ---------------------------------------------


@pytest.mark.timeout(900)
def test_cli_restore_is_refused_while_the_server_recovers(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with compose_stack("1.0.0") as project:
        seed_rows(project)
        before = items_state(project)
        with running_sidecar(
            project, docker_proxy_url, tmp_path, SUPERVISOR_REHEARSE="false"
        ) as sc:
            sc.env["STACKSUP_FAULT_HOLD"] = "rollback.swapped:60"
            sc.start()
            update_id = start(sc, "1.3.0")
            wait_for(lambda: sc.log_has("holding rollback.swapped"), "rollback hold")
            sc.kill()
            snapshot_id = journal(Path(sc.env["SUPERVISOR_STATE_DIR"]))["snapshot_id"]
            # Recovery resumes the rollback and is held inside it while the CLI tries.
            sc.env["STACKSUP_FAULT_HOLD"] = "rollback.put-back:20"
            starter = threading.Thread(target=sc.start)
            starter.start()
            wait_for(lambda: sc.log_has("holding rollback.put-back"), "recovery hold")
            dbs_before = databases(stack_postgres(project))
            cli = subprocess.run(
                [sys.executable, "-m", "supervisor", "restore", snapshot_id, "--yes"],
                env=sc.env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert cli.returncode == 3, cli.stdout + cli.stderr
            assert re.search(r"stack_busy|is held|busy", cli.stdout + cli.stderr), cli.stderr
            assert databases(stack_postgres(project)) == dbs_before  # nothing dropped
            starter.join(240)
            record = wait_end(sc, update_id)
            assert record["state"] == "rolled_back", record.get("error")
            assert items_state(project) == before
    write_artifact("CLI restore while the server recovers", "| CLI exit | databases | end |",
              ["| 3 (stack_busy) | unchanged | rolled_back |"])  # fmt: skip


# --- 7. damaged state files at start ---------------------------------------------------------


@pytest.mark.timeout(600)
def test_damaged_state_files_do_not_stop_the_sidecar(
    compose_stack: StackFactory, docker_proxy_url: str, tmp_path: Path
) -> None:
    with (
        compose_stack("1.0.0") as project,
        running_sidecar(project, docker_proxy_url, tmp_path) as sc,
    ):
        sc.start()
        update_id = start(sc, "1.1.0")
        assert wait_end(sc, update_id)["state"] == "completed"
        sc.stop()
        state_dir = Path(sc.env["SUPERVISOR_STATE_DIR"])
        with (state_dir / "history.jsonl").open("a") as history:
            history.write('{"update_id": "torn", "sta')  # a torn append
        snapshot = next(p for p in (tmp_path / "backups").iterdir() if p.is_dir())
        (snapshot / "manifest.json").write_bytes(b"\x00\xff not json")
        mark = sc.log_mark()
        sc.start()
        for path in ("/admin/version", "/admin/update/history", "/admin/snapshots",
                     "/admin/badge.json", f"/admin/update/status?update_id={update_id}"):  # fmt: skip
            status, body = sc.request("GET", path)
            assert status == 200, (path, body)
        assert sc.log_has("history.jsonl", mark)
        assert snapshot.exists()  # kept for the operator, not deleted
    write_artifact("damaged state files at start", "| history | manifest | endpoints |",
              ["| torn line skipped | undecodable, kept | 200 |"])  # fmt: skip


def _journal_summary(journal: dict[str, Any]) -> str:
    """The rollback journal's steps at the moment of the kill, in one cell."""
    return (
        f"{'copy' if journal.get('via_copy') else 'restore path'}: "
        f"dump {journal.get('pre_rollback')}, restore "
        f"{'done' if journal.get('restored') else 'started' if journal.get('restore_started') else 'not started'}, "
        f"{len(journal.get('put_back') or [])} put back"
    )
