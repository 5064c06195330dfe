"""Reading a snapshot file in place: where the backups folder is on the host, the sibling's
create body, and when the upload is used instead (the real ``readable`` over the recording
engine of the InfluxDB command tests; the real engine is in tests/docker/test_snapshot_in_place.py)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path, PurePosixPath

import pytest

from supervisor.config import Policy, Settings
from supervisor.const import Role
from supervisor.engine.docker_sibling import host_path, own_container_id
from supervisor.engine.sibling import (
    FIND_SCRIPT,
    SIBLING_LABEL,
    SIBLING_OF_LABEL,
    SIBLING_PROJECT_LABEL,
    sibling_spec,
    sibling_target,
)
from supervisor.exceptions import EngineError
from supervisor.snapshots.in_place import HostFolders, readable, sibling_lifetime
from supervisor.snapshots.models import FileEntry
from supervisor.snapshots.options import SnapshotOptions
from tests.unit.test_snapshot_influx_v2 import FakeEngine

CID = "c" * 64
MOUNTINFO = (
    "612 590 0:51 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/"
    "overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF\n"
    f"620 612 8:1 /var/lib/docker/containers/{CID}/resolv.conf /etc/resolv.conf "
    "rw,relatime - ext4 /dev/sda1 rw\n"
    f"621 612 8:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname "
    "rw,relatime - ext4 /dev/sda1 rw\n"
    "622 612 8:1 /srv/stack/backups /backups rw,relatime - ext4 /dev/sda1 rw\n"
)


def test_own_container_id_comes_from_the_files_docker_mounts() -> None:
    assert own_container_id(MOUNTINFO) == CID
    # A data-root elsewhere, or its own file system: still found.
    moved = MOUNTINFO.replace("/var/lib/docker/containers", "/containers")
    assert own_container_id(moved) == CID
    # Outside a container (the host's own mountinfo, or overlay paths only): none.
    assert own_container_id("25 1 8:1 / / rw - ext4 /dev/sda1 rw\n") is None
    assert own_container_id(MOUNTINFO.splitlines()[0] + "\n") is None


def test_host_path_is_the_deepest_mount_that_holds_the_path() -> None:
    mounts = [
        {"Type": "bind", "Source": "/srv/stack", "Destination": "/data"},
        {"Type": "bind", "Source": "/srv/stack/backups", "Destination": "/data/backups"},
        {"Type": "volume", "Source": "/var/lib/docker/volumes/v/_data", "Destination": "/v"},
        {"Type": "tmpfs", "Destination": "/tmp"},  # no source on the host
    ]
    assert host_path(mounts, PurePosixPath("/data/backups")) == "/srv/stack/backups"
    assert host_path(mounts, PurePosixPath("/data/backups/x")) == "/srv/stack/backups/x"
    assert host_path(mounts, PurePosixPath("/data/other")) == "/srv/stack/other"
    assert host_path(mounts, PurePosixPath("/v/b")) == "/var/lib/docker/volumes/v/_data/b"
    assert host_path(mounts, PurePosixPath("/databackups")) is None  # a prefix, not a parent
    assert host_path(mounts, PurePosixPath("/tmp/x")) is None
    assert host_path([], PurePosixPath("/backups")) is None


def test_the_sibling_holds_one_folder_read_only_as_the_databases_own_user() -> None:
    live = {
        "Id": CID,
        "Name": "/stack-postgres-1",
        "Image": "sha256:pgimage",
        "Config": {
            "User": "postgres",
            "Env": ["POSTGRES_PASSWORD=secret"],
            "Cmd": ["postgres"],
            "Labels": {"com.docker.compose.project": "stack"},
            "Volumes": {"/var/lib/postgresql/data": {}},
            "Healthcheck": {"Test": ["CMD-SHELL", "pg_isready"]},
        },
        "HostConfig": {
            "NetworkMode": "stack_default",
            "Binds": ["pgdata:/var/lib/postgresql"],
            "SecurityOpt": ["apparmor=db-profile", "seccomp=unconfined"],
        },
    }
    source = "/srv/stack: odd, path/20261130T000000Z_abcd1234/postgres.dump"
    name, body = sibling_spec(live, source, "restore-1", 5700.2)
    assert name.startswith("stack-postgres-1.restore-1-")  # and a suffix: names are unique
    assert body["Image"] == "sha256:pgimage"
    assert body["User"] == "postgres"  # /proc/<pid>/root is readable by the same user only
    assert body["Labels"] == {
        SIBLING_LABEL: "restore-1",
        SIBLING_OF_LABEL: CID,
        SIBLING_PROJECT_LABEL: "stack",
    }
    # No health check of the image: it would run a shell and its child in the server's
    # PID namespace every few seconds.
    assert body["Healthcheck"] == {"Test": ["NONE"]}
    # One process with no children (nothing is ever re-parented to the postmaster), which
    # ends by itself after its lifetime.
    assert body["Entrypoint"] == ["sleep", "5701"]
    assert body["Cmd"] == []
    assert "Env" not in body  # the database's secrets are not copied
    host = body["HostConfig"]
    assert host["PidMode"] == f"container:{CID}"
    assert host["NetworkMode"] == "none"
    assert body["NetworkDisabled"] is True
    assert host["AutoRemove"] is True
    # The one file, read-only, as a structured mount (a ":" in a path would split a bind).
    assert host["Mounts"] == [
        {
            "Type": "bind",
            "Source": source,
            "Target": "/supervisor-snapshot-restore-1/postgres.dump",
            "ReadOnly": True,
        }
    ]
    assert "Binds" not in host
    # Nothing more than sleep needs: no anonymous volume for the image's VOLUME, no
    # capability, no new privileges, a read-only root; the database's confinement (the
    # kernel's read check wants it), not its seccomp exception.
    assert host["Tmpfs"] == {"/var/lib/postgresql/data": "size=64k"}
    assert host["CapDrop"] == ["ALL"]
    assert host["ReadonlyRootfs"] is True
    assert host["SecurityOpt"] == ["no-new-privileges:true", "apparmor=db-profile"]
    assert host["PidsLimit"] == 4
    with pytest.raises(ValueError, match="unsafe sibling tag"):
        sibling_target("../x")


async def test_the_setting_decides_where_the_backups_folder_is(tmp_path: Path) -> None:
    """SUPERVISOR_BACKUP_HOST_DIR: a path is used as is; ``off`` asks nothing and gives
    nothing; ``auto`` asks the engine once (the sidecar's own mount)."""
    folder = tmp_path / "20261130T000000Z_abcd1234"
    engine = FakeEngine(host_path="/srv/stack/backups")

    off = HostFolders(engine, tmp_path, "off")  # type: ignore[arg-type]
    assert await off.source(folder) is None
    assert engine.commands() == []
    given = HostFolders(engine, tmp_path, "/mnt/backups", "stack")  # type: ignore[arg-type]
    assert await given.source(folder) == "/mnt/backups/20261130T000000Z_abcd1234"
    assert engine.commands() == [["sweep_siblings", "stack"]]
    engine.calls.clear()

    auto = HostFolders(engine, tmp_path, "auto")  # type: ignore[arg-type]
    assert await auto.source(folder) == "/srv/stack/backups/20261130T000000Z_abcd1234"
    assert await auto.source(tmp_path) == "/srv/stack/backups"
    assert await auto.source(Path("/elsewhere/x")) is None  # not in the backups folder
    # Asked once; the stack's leftover siblings swept once, when the place is known.
    assert engine.commands() == [["host_path_of", str(tmp_path)], ["sweep_siblings", ""]]

    assert await HostFolders(FakeEngine(), tmp_path).source(folder) is None  # type: ignore[arg-type]

    base = {"compose_project": "p", "services": {"app": Role.APP}, "signature_policy": Policy.OFF}
    settings = Settings(**base, backup_host_dir="/mnt/backups")
    assert SnapshotOptions.from_settings(settings).backup_host_dir == "/mnt/backups"
    assert Settings(**base).backup_host_dir == "auto"
    with pytest.raises(ValueError, match="auto, off, or an absolute path"):
        Settings(**base, backup_host_dir="backups")


def _entry(tmp_path: Path) -> tuple[Path, FileEntry]:
    folder = tmp_path / "snap"
    folder.mkdir()
    data = b"a dump"
    (folder / "postgres.dump").write_bytes(data)
    return folder, FileEntry(
        name="postgres.dump", size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


def _seen(path: Path, *, size_off: int = 0) -> str:
    """What FIND_SCRIPT prints for a file that is (or, with ``size_off``, is not) ``path``."""
    info = path.stat()
    return f"{info.st_size + size_off} {info.st_ino} {int(info.st_mtime)}"


async def test_read_in_place_no_upload_and_the_sibling_removed(tmp_path: Path) -> None:
    folder, entry = _entry(tmp_path)
    target = sibling_target("restore-1")
    dump = folder / "postgres.dump"
    # A file at the same path in the database container itself (seen through PID 1's
    # root) is not the one hashed: only the path with the same identity is taken.
    found = f"/proc/1/root{target} {_seen(dump, size_off=1)}\n/proc/42/root{target} {_seen(dump)}\n"
    # The first two searches find nothing: the engine answered the start before the
    # sibling's process became ``sleep`` (its root is unreadable until then).
    engine = FakeEngine(found_through_sibling=found.encode(), find_empty_times=2)
    hosts = HostFolders(engine, tmp_path, "/srv/backups")  # type: ignore[arg-type]
    async with readable(engine, hosts, "db", "restore-1", folder, entry, 60) as (work, path):  # type: ignore[arg-type]
        assert work.path == "/tmp/supervisor-restore-1"
        assert path == f"/proc/42/root{target}/postgres.dump"
        assert engine.siblings == [("db", "/srv/backups/snap/postgres.dump", "restore-1")]
        assert engine.removed_siblings == []
    assert engine.uploads == []
    assert engine.removed_siblings == [("db", "restore-1")]
    assert sum(1 for argv in engine.commands() if FIND_SCRIPT in argv) == 3
    # It outlives the operation's commands (each bounded by the timeout), and a sibling
    # left by a crashed sidecar ends by itself.
    assert engine.lifetimes == [sibling_lifetime(60)]
    assert sibling_lifetime(60) == 480
    assert sibling_lifetime(None) == 3 * 1800 + 300


@pytest.mark.parametrize(
    "why", ["no host path", "start refused", "nothing found", "another file", "no stat"]
)
async def test_the_upload_is_used_when_in_place_cannot_be(tmp_path: Path, why: str) -> None:
    folder, entry = _entry(tmp_path)
    target = sibling_target("restore-1")
    found = {  # what the database container sees through the sibling's root
        "nothing found": "",  # another user, or a security profile forbids it
        "another file": f"/proc/42/root{target} {_seen(folder / 'postgres.dump', size_off=1)}",
        "no stat": f"/proc/42/root{target} ",  # an image without `stat`
    }.get(why, "")
    engine = FakeEngine(
        sibling_error=EngineError("refused") if why == "start refused" else None,
        found_through_sibling=found.encode(),
    )
    setting = "off" if why == "no host path" else "/srv/backups"
    hosts = HostFolders(engine, tmp_path, setting)  # type: ignore[arg-type]
    async with readable(engine, hosts, "db", "restore-1", folder, entry, 60) as (_, path):  # type: ignore[arg-type]
        assert path == "/tmp/supervisor-restore-1/postgres.dump"
    assert engine.uploads == [("postgres.dump", "/tmp/supervisor-restore-1", "postgres.dump")]
    started = why not in ("no host path", "start refused")
    source = "/srv/backups/snap/postgres.dump"
    assert engine.siblings == ([("db", source, "restore-1")] if started else [])
    # Removed as soon as it failed or proved useless (and once more, to be sure, at the end).
    tried = why != "no host path"
    assert engine.removed_siblings == ([("db", "restore-1")] * 2 if tried else [])


async def test_a_cancelled_or_failed_question_is_asked_again(tmp_path: Path) -> None:
    """Where backups/ is on the host is asked once and shared; a caller cancelled while
    it is asked, or a failed question, does not stick: the next caller asks again."""
    folder = tmp_path / "snap"
    gate = asyncio.Event()
    engine = FakeEngine(host_path="/srv/backups", host_path_gate=gate)
    hosts = HostFolders(engine, tmp_path)  # type: ignore[arg-type]
    first = asyncio.ensure_future(hosts.source(folder))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await hosts.source(folder) == "/srv/backups/snap"

    failing = FakeEngine(host_path="/srv/backups", host_path_error=EngineError("proxy down"))
    hosts = HostFolders(failing, tmp_path)  # type: ignore[arg-type]
    assert await hosts.source(folder) is None
    failing.host_path_error = None
    assert await hosts.source(folder) == "/srv/backups/snap"
    assert [c for c in failing.commands() if c[0] == "host_path_of"] == [
        ["host_path_of", str(tmp_path)]
    ] * 2


async def test_a_cancelled_search_removes_the_sibling(tmp_path: Path) -> None:
    folder, entry = _entry(tmp_path)
    engine = FakeEngine(find_hangs=True)
    hosts = HostFolders(engine, tmp_path, "/srv/backups")  # type: ignore[arg-type]

    async def open_it() -> None:
        async with readable(engine, hosts, "db", "restore-1", folder, entry, 60):  # type: ignore[arg-type]
            raise AssertionError("never reached")

    task = asyncio.ensure_future(open_it())
    await asyncio.sleep(0.05)  # the sibling started, the search hangs
    assert engine.siblings
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.removed_siblings == [("db", "restore-1")]
    assert engine.uploads == []
