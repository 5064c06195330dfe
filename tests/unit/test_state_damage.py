"""Damaged state files never stop the sidecar: each kind is skipped or set aside, logged once
and counted, and what follows (appends, listings, retention, recovery) keeps working.

Real files in a temporary directory; the damage is what a crash or a disk leaves: a torn last
line, bytes that are not UTF-8, a truncated JSON document, a manifest that names another
snapshot. Permissions (issue 13 §4) are checked here too: state and snapshot files are 0600.
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.damage import DamageReport
from supervisor.snapshots import SnapshotManifest, SnapshotReason, SnapshotStore
from supervisor.statedir import StateStore, atomic_write, exposed_directories, warn_if_exposed
from supervisor.update.models import LastGood, RunRecord
from supervisor.update.stages import Stage
from tests.unit.test_snapshot_influx_v2 import FakeEngine, service_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAMAGED_LINES = [
    pytest.param(b'{"update_id": "torn", "state": "comp', id="torn-json"),
    pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
    pytest.param(b'{"update_id": 7}', id="wrong-schema"),
    pytest.param(b"\x00" * 64, id="zeroed-block"),
]


def finished(update_id: str, hours: int = 0) -> RunRecord:
    return RunRecord(
        update_id=update_id, state=Stage.COMPLETED, result=Stage.COMPLETED,
        started_at=T0 + timedelta(hours=hours), finished_at=T0 + timedelta(hours=hours, minutes=5),
    )  # fmt: skip


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- history.jsonl ---------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGED_LINES)
def test_damaged_history_line_is_skipped_reported_once_and_appends_go_on(
    tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateStore(tmp_path)
    state.append_history(finished("first", 0))
    with open(tmp_path / "history.jsonl", "ab") as handle:
        handle.write(damage)  # no newline: the crash tore the append
    assert [r.update_id for r in state.history()] == ["first"]

    state.append_history(finished("second", 1))  # e.g. recovery archiving a run
    state.append_history(finished("third", 2))

    assert [r.update_id for r in state.history()] == ["third", "second", "first"]
    lines = (tmp_path / "history.jsonl").read_bytes().split(b"\n")
    assert lines[1] == damage  # kept as it was, on a line of its own, not glued onto
    assert state.history(limit=1)[0].update_id == "third"
    assert state.damage.counts()["history.jsonl"] == 1  # read five times, counted once
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len([r for r in warnings if "history.jsonl line 2" in r.getMessage()]) == 1


def test_damaged_line_in_the_middle_and_unreadable_history(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    good = finished("good").model_dump_json().encode()
    (tmp_path / "history.jsonl").write_bytes(
        good + b"\n{oops}\n\n" + good.replace(b"good", b"also") + b"\n"
    )
    assert [r.update_id for r in state.history()] == ["also", "good"]
    assert state.damage.counts()["history.jsonl"] == 1
    assert state.find("also") is not None

    (tmp_path / "history.jsonl").unlink()
    (tmp_path / "history.jsonl").mkdir()  # EISDIR: the file cannot be read at all
    assert state.history() == []
    assert state.damage.counts()["history.jsonl"] == 2


def test_append_to_a_history_ending_without_newline_of_a_good_record(tmp_path: Path) -> None:
    """A complete record whose newline was lost is not glued onto either."""
    state = StateStore(tmp_path)
    (tmp_path / "history.jsonl").write_bytes(finished("a").model_dump_json().encode())
    state.append_history(finished("b", 1))
    assert [r.update_id for r in state.history()] == ["b", "a"]
    assert state.damage.counts()["history.jsonl"] == 0


# --- whole files: current-run.json, last-good.json ---------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="truncated"),
        pytest.param(b"\xff\xd8\xff\xe0 not json", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"state": "pull"}', id="wrong-schema"),
    ],
)
def test_damaged_journal_is_set_aside_and_reads_as_none(
    tmp_path: Path, content: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateStore(tmp_path)
    record = RunRecord(update_id="abc123", state=Stage.MIGRATE)
    state.write_current(record)
    whole = (tmp_path / "current-run.json").read_bytes()
    (tmp_path / "current-run.json").write_bytes(
        whole[: len(whole) // 2] if content is None else content
    )

    assert state.read_current() is None
    assert state.find("abc123") is None
    aside = list(tmp_path.glob("current-run.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == (whole[: len(whole) // 2] if content is None else content)
    assert not (tmp_path / "current-run.json").exists()
    assert state.damage.counts()["current-run.json"] == 1
    assert any(
        r.levelno == logging.WARNING and aside[0].name in r.getMessage() for r in caplog.records
    )
    state.write_current(record)  # the next run journals as usual
    assert state.read_current() == record


def test_damaged_last_good_is_set_aside(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    state.write_last_good(
        LastGood(update_id="u1", version="1.0.0", images={"app": "r/a@sha256:" + "0" * 64})
    )
    (tmp_path / "last-good.json").write_bytes(b'{"version": "1.0.0", "ima')
    assert state.read_last_good() is None
    assert len(list(tmp_path.glob("last-good.json.corrupt-*"))) == 1
    assert state.damage.counts() == {
        "current-run.json": 0, "history.jsonl": 0, "last-good.json": 1,
        "versions.env": 0, "manifest.json": 0,
    }  # fmt: skip


def test_damaged_pin_lines_are_skipped(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    state.write_pins({"app": "reg/app@sha256:" + "a" * 64})
    with open(tmp_path / "versions.env", "ab") as handle:
        handle.write(b"BACKEND_IMAGE=reg/b\xff@sha256:12")
    assert state.read_pins() == {"APP_IMAGE": "reg/app@sha256:" + "a" * 64}
    assert state.damage.counts()["versions.env"] == 1


def test_one_report_shared_by_both_stores_counts_each_kind(tmp_path: Path) -> None:
    damage = DamageReport()
    assert StateStore(tmp_path, damage).damage is damage
    assert SnapshotStore(tmp_path, "p", damage).damage is damage


# --- snapshot manifests --------------------------------------------------------------


async def _snapshot(store: SnapshotStore, hours: int) -> SnapshotManifest:
    at = T0 + timedelta(hours=hours)
    snapshot_id = at.strftime("%Y%m%dT%H%M%SZ") + f"_{hours:08x}"
    async with store.begin(snapshot_id) as writer:
        async with writer.sink("postgres.dump") as sink:
            await sink(b"rows")
        writer.add(sink.entry)
        manifest = SnapshotManifest(
            id=snapshot_id, project=store.project, reason=SnapshotReason.PRE_UPDATE,
            created_at=at, files=writer.files,
        )  # fmt: skip
        await store.commit(writer, manifest)
    return manifest


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(b"\xff\xfe\x00\x01", id="not-utf8"),
        pytest.param(b'{"id": "2026', id="truncated"),
        pytest.param(None, id="missing"),
        pytest.param(b"other", id="names-another-snapshot"),
    ],
)
async def test_damaged_manifest_is_not_listed_but_kept_and_reported(
    tmp_path: Path, damage: bytes | None
) -> None:
    store = SnapshotStore(tmp_path, "proj")
    good = await _snapshot(store, 1)
    bad = await _snapshot(store, 2)
    manifest = tmp_path / bad.id / "manifest.json"
    if damage is None:
        manifest.unlink()
    elif damage == b"other":
        manifest.write_text(good.model_dump_json())
    else:
        manifest.write_bytes(damage)

    for _ in range(3):
        assert [m.id for m in await store.list()] == [good.id]
    usable, damaged = await store.scan()
    assert [m.id for m in usable] == [good.id]
    assert list(damaged) == [bad.id]
    assert (tmp_path / bad.id / "postgres.dump").read_bytes() == b"rows"  # the data is kept
    assert store.damage.counts()["manifest.json"] == 1


async def test_retention_never_deletes_a_damaged_snapshot(tmp_path: Path) -> None:
    service = service_for(FakeEngine(), tmp_path, retention_keep=1)
    store = service.store
    made = [await _snapshot(store, hours) for hours in range(1, 5)]
    (tmp_path / made[0].id / "manifest.json").write_bytes(b"\x00\x00")  # the oldest: damaged

    deleted = await service.apply_retention(protected=set())

    assert deleted == [made[1].id, made[2].id]
    assert sorted(os.listdir(tmp_path)) == sorted([made[0].id, made[3].id])
    assert store.damage.counts()["manifest.json"] == 1


# --- permissions (issue 13 §4) ----------------------------------------------------------


async def test_state_and_snapshot_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        state = StateStore(tmp_path / "state")
        (tmp_path / "state").mkdir(mode=0o700)
        state.write_current(RunRecord(update_id="u"))
        state.append_history(finished("u"))
        state.write_last_good(LastGood(update_id="u", version="1", images={}))
        state.write_pins({"app": "reg/app@sha256:" + "a" * 64})
        atomic_write(tmp_path / "state" / "other", b"x")
        (tmp_path / "backups").mkdir(mode=0o700)
        snapshot = await _snapshot(SnapshotStore(tmp_path / "backups", "proj"), 1)
    finally:
        os.umask(old)
    for name in ("current-run.json", "history.jsonl", "last-good.json", "versions.env", "other"):
        assert mode_of(tmp_path / "state" / name) == 0o600, name
    folder = tmp_path / "backups" / snapshot.id
    assert mode_of(folder) == 0o700
    assert {name: mode_of(folder / name) for name in os.listdir(folder)} == {
        "manifest.json": 0o600, "postgres.dump": 0o600,
    }  # fmt: skip


def test_start_up_warns_about_directories_others_can_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    private, shared, listable = tmp_path / "state", tmp_path / "backups", tmp_path / "x"
    for path, mode in ((private, 0o700), (shared, 0o755), (listable, 0o710)):
        path.mkdir()
        path.chmod(mode)
    assert exposed_directories([private]) == []
    assert warn_if_exposed([private, shared, listable, tmp_path / "missing"]) == [
        (shared, 0o755), (listable, 0o710),
    ]  # fmt: skip
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert str(shared) in messages[0]
    assert "0755" in messages[0]
    assert str(listable) in messages[1]
    assert "0710" in messages[1]
