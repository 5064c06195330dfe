"""The dump read where it lies: a sibling container, no upload, nothing left, no restart.

On the real engine, through the docker-proxy. The engine runs on this machine,
so the test's backups folder is at the same path on its host
(``SUPERVISOR_BACKUP_HOST_DIR``). ``put_file`` and ``start_sibling`` of the
real engine are wrapped to count calls, nothing else.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from supervisor.engine.sibling import SIBLING_LABEL, SIBLING_OF_LABEL, SIBLING_PROJECT_LABEL
from supervisor.snapshots import SnapshotReason
from supervisor.snapshots.postgres_restore import work_tag
from supervisor.snapshots.service import SnapshotService
from tests.docker.conftest import SnapshotFactory
from tests.support import pg_state
from tests.support.databases import PostgresHandle
from tests.support.dockercli import container_logs, docker, inspect


def postgres_image(pg: PostgresHandle) -> str:
    return str(inspect("container", pg.container_id)["Image"])


def _count_calls(service: SnapshotService, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    engine = service.engine
    for name in ("put_file", "start_sibling"):
        real = getattr(engine, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls[_name] += 1
            return await _real(*args, **kw)

        monkeypatch.setattr(engine, name, counted)
    return calls


@pytest.mark.parametrize(
    ("host_dir", "in_place"),
    [("the backups folder", True), ("off", False), ("an empty folder", False)],
)
async def test_restore_and_check_read_the_dump_in_place_or_upload_it(
    postgres: PostgresHandle,
    snapshot_service: SnapshotFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    host_dir: str,
    in_place: bool,
) -> None:
    """In place when the folder is where the setting says: no upload. ``off``: upload and
    no sibling. A host path that does not hold the snapshot (a wrong setting): the engine
    refuses the sibling's mount, and the upload is used."""
    backups = tmp_path / "backups"
    backups.mkdir()
    (tmp_path / "elsewhere").mkdir()
    setting = {
        "the backups folder": str(backups),
        "off": "off",
        "an empty folder": str(tmp_path / "elsewhere"),
    }[host_dir]
    service = snapshot_service(postgres=postgres.container_id, backup_host_dir=setting)
    pg_state.seed(postgres)
    old = pg_state.state(postgres)
    manifest = await service.create(SnapshotReason.MANUAL)
    pg_state.change(postgres)
    generation = pg_state.server_generation(postgres)
    calls = _count_calls(service, monkeypatch)

    with caplog.at_level(logging.INFO, "supervisor.snapshots.in_place"):
        await service.check(manifest.id)
        await service.restore(manifest.id)

    assert pg_state.state(postgres) == old
    assert calls["put_file"] == (0 if in_place else 2)
    assert calls["start_sibling"] == (0 if setting == "off" else 2)
    assert caplog.text.count("postgres.dump is read in place") == (2 if in_place else 0)
    if host_dir == "an empty folder":
        assert caplog.text.count("bind source path does not exist") == 2, caplog.text
        assert caplog.text.count("uploading it") == 2
    assert pg_state.container_leftovers(postgres) == ""  # siblings included
    # Removing a sibling (which lives in the server's PID namespace) never looks like a
    # crashed backend to the postmaster: the server was not restarted.
    assert pg_state.server_generation(postgres) == generation
    assert "terminated by signal" not in container_logs(postgres.container_id)


async def test_a_sibling_left_by_a_crash_is_replaced_and_removed(
    postgres: PostgresHandle,
    snapshot_service: SnapshotFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A crashed restore's sibling (same tag) is removed by the next restore of the same
    snapshot, which then reads through its own; a sibling that was created and never
    started (a crash between the two) is swept by the sidecar's first in-place read."""
    # A project of its own: the first in-place read of any other test's service sweeps
    # its project's unusable siblings, and this one's planted leftover must not be theirs.
    project = f"snaptest-{postgres.container_id[:12]}"
    service = snapshot_service(postgres=postgres.container_id, project=project)
    pg_state.seed(postgres)
    old = pg_state.state(postgres)
    manifest = await service.create(SnapshotReason.MANUAL)
    pg_state.change(postgres)
    dump = tmp_path / "backups" / manifest.id / "postgres.dump"
    target = f"appdb__restore_{manifest.id.rsplit('_', 1)[1]}"
    await service.engine.start_sibling(postgres.container_id, str(dump), work_tag(target), 600)
    never_started = f"{postgres.container_id[:12]}-never-started"
    docker(
        "create", "--name", never_started, "--label", f"{SIBLING_LABEL}=other",
        "--label", f"{SIBLING_OF_LABEL}={postgres.container_id}",
        "--label", f"{SIBLING_PROJECT_LABEL}={project}", "--entrypoint", "sleep",
        postgres_image(postgres), "60",
    )  # fmt: skip
    assert len(pg_state.container_leftovers(postgres, settle=0).splitlines()) == 2

    with caplog.at_level(logging.INFO, "supervisor.snapshots.in_place"):
        await service.restore(manifest.id)

    assert pg_state.state(postgres) == old
    assert pg_state.container_leftovers(postgres) == ""
    assert "postgres.dump is read in place" in caplog.text
    assert never_started in caplog.text  # "removed siblings left by a crash: …"
