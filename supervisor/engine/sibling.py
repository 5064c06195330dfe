"""A sibling of a database container: it holds a snapshot folder for the database to read in place.

::

    database container (PID namespace shared) ───────────────┐
      exec: pg_restore … /proc/<pid>/root/supervisor-snapshot-<tag>/postgres.dump
                                   │
    sibling: the database's image, user and PID namespace; no network; one process
      (``sleep``, bounded) whose root holds ``<backups on the host>/<snapshot>/<file>``
      read-only at /supervisor-snapshot-<tag>/<file>: that file only, not the rest of
      the snapshot (the config archive may hold the app's secrets)

Why: ``pg_restore --jobs`` needs a file it can seek in, inside the database
container, which does not mount our ``backups/``. Uploading the dump there
(a tar through the docker-proxy and dockerd into the container's writable
layer) cost about 0.7 CPU-seconds per 165 MB on a two-CPU host, beside a
``pg_restore`` that already keeps both CPUs busy, and it wrote a second copy
of every dump into Docker's root. The sibling costs one container start
(about 0.12 s). Connecting ``pg_restore`` from a container of its own over
TCP was measured too and is slower than the upload: loopback TCP instead of
the unix socket added about 0.8 s per 0.5 GB restore.

Reading ``/proc/<pid>/root`` of another process needs the same user (the
kernel's ptrace read check) and, under AppArmor, the same profile: the
sibling therefore runs as the database container's own user and image. If
any of that fails, the caller falls back to the upload.

Pure functions, no I/O; the engine calls are in :mod:`.docker_sibling`.
"""

from __future__ import annotations

import copy
import math
import re
import secrets
from pathlib import PurePosixPath
from typing import Any

from supervisor.const import COMPOSE_PROJECT_LABEL

JSON = dict[str, Any]

SIBLING_LABEL = "supervisor.sibling"  # value: the operation's tag
SIBLING_OF_LABEL = "supervisor.sibling.of"  # value: the database container's id
SIBLING_PROJECT_LABEL = "supervisor.sibling.project"  # value: its Compose project
SIBLING_TARGET_PREFIX = "/supervisor-snapshot-"
_TAG_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")
# One process and never a child of its own: the sibling lives in the database's PID
# namespace, where an orphan is re-parented to PID 1, usually the postmaster, which takes
# any child that dies by a signal for a crashed backend and restarts the whole server
# (what a ``sh`` loop around ``sleep`` did on removal). ``sleep`` ends on TERM, and on
# its own after the lifetime: a sibling left by a crashed sidecar goes away by itself.
_HOLD = ["sleep"]
# Printed by the database container: every path through which it can read the file at
# the sibling's target, with the file's size, inode and mtime. Only the sibling's root
# should have it, but anything could (a file put at that path in the database container
# itself is seen through /proc/1/root), so the caller keeps the one that is the file
# it hashed (the same identity on the host).
FIND_SCRIPT = (
    'for d in /proc/[0-9]*/root"$0"; do '
    '[ -f "$d/$1" ] && [ -r "$d/$1" ] && echo "$d $(stat -L -c "%s %i %Y" "$d/$1")"; '
    "done; true"
)


def sibling_target(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"unsafe sibling tag {tag!r}")
    return f"{SIBLING_TARGET_PREFIX}{tag}"


def sibling_spec(of: JSON, source: str, tag: str, lifetime: float) -> tuple[str, JSON]:
    """(name, create body) of the sibling of the container inspected as ``of``, holding
    the host file ``source`` read-only at ``sibling_target(tag)/<its name>``, for at most
    ``lifetime`` seconds. Nothing more than ``sleep`` needs: no network, no capability,
    no health check, no volume, a read-only root."""
    target = f"{sibling_target(tag)}/{PurePosixPath(source).name}"
    config: JSON = of.get("Config") or {}
    labels = config.get("Labels") or {}
    body: JSON = {
        "Image": of["Image"],
        "Entrypoint": [*_HOLD, str(max(1, math.ceil(lifetime)))],
        "Cmd": [],
        "Labels": {
            SIBLING_LABEL: tag,
            SIBLING_OF_LABEL: of["Id"],
            SIBLING_PROJECT_LABEL: str(labels.get(COMPOSE_PROJECT_LABEL, "")),
        },
        "NetworkDisabled": True,
        # The image's health check would run a shell and its child every few seconds in
        # the database's PID namespace: "one process, never a child" would not hold.
        "Healthcheck": {"Test": ["NONE"]},
    }
    if config.get("User"):
        body["User"] = copy.deepcopy(config["User"])
    # The image's VOLUMEs would each get a new anonymous volume: an empty tmpfs instead.
    volumes = sorted((config.get("Volumes") or {}).keys())
    body["HostConfig"] = {
        "PidMode": f"container:{of['Id']}",
        "NetworkMode": "none",
        # A structured mount: any character in the path is fine (a ``Binds`` string
        # splits on ":"), and a missing source is an error, not a new empty directory.
        "Mounts": [{"Type": "bind", "Source": source, "Target": target, "ReadOnly": True}],
        "Tmpfs": {path: "size=64k" for path in volumes if path != target},
        "ReadonlyRootfs": True,
        # No capability at all: ``sleep`` needs none, and the kernel lets the database
        # container read the sibling's root only if the sibling holds no capability the
        # reader lacks (a database container with dropped capabilities included).
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges:true", *_confinement(of)],
        "PidsLimit": 4,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        # Killed at the end of its operation, the engine then removes it: nothing waits
        # for the removal (about 0.2 s of every restore otherwise).
        "AutoRemove": True,
    }
    # The suffix: a sibling being removed still holds its name for a moment.
    name = f"{str(of.get('Name', '')).lstrip('/') or of['Id'][:12]}.{tag}-{secrets.token_hex(3)}"
    return name, body


def _confinement(of: JSON) -> list[str]:
    """The database container's AppArmor profile and SELinux label: reading another
    process's root needs the same confinement as well as the same user."""
    options = (of.get("HostConfig") or {}).get("SecurityOpt") or []
    return [str(o) for o in options if str(o).startswith(("apparmor", "label"))]
