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

JSON = dict[str, Any]

SIBLING_LABEL = "supervisor.sibling"  # value: the operation's tag
SIBLING_OF_LABEL = "supervisor.sibling.of"  # value: the database container's id
SIBLING_TARGET_PREFIX = "/supervisor-snapshot-"
_TAG_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")
# One process and never a child of its own: the sibling lives in the database's PID
# namespace, where an orphan is re-parented to PID 1, usually the postmaster, which takes
# any child that dies by a signal for a crashed backend and restarts the whole server
# (what a ``sh`` loop around ``sleep`` did on removal). ``sleep`` ends on TERM, and on
# its own after the lifetime: a sibling left by a crashed sidecar goes away by itself.
_HOLD = ["sleep"]
# Printed by the database container: the path of the sibling's mount as seen from there.
# Only the sibling's processes have the target in their root, and only those of the exec
# user are readable, so the first readable match is the sibling (a regular file only).
FIND_SCRIPT = (
    'for d in /proc/[0-9]*/root"$0"; do '
    '[ -f "$d/$1" ] && [ -r "$d/$1" ] && { echo "$d"; exit 0; }; done; true'
)


def sibling_target(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"unsafe sibling tag {tag!r}")
    return f"{SIBLING_TARGET_PREFIX}{tag}"


def sibling_spec(of: JSON, source: str, tag: str, lifetime: float) -> tuple[str, JSON]:
    """(name, create body) of the sibling of the container inspected as ``of``, holding
    the host file ``source`` read-only at ``sibling_target(tag)/<its name>``, for at most
    ``lifetime`` seconds."""
    target = f"{sibling_target(tag)}/{PurePosixPath(source).name}"
    config: JSON = of.get("Config") or {}
    body: JSON = {
        "Image": of["Image"],
        "Entrypoint": [*_HOLD, str(max(1, math.ceil(lifetime)))],
        "Cmd": [],
        "Labels": {SIBLING_LABEL: tag, SIBLING_OF_LABEL: of["Id"]},
        "NetworkDisabled": True,
    }
    if config.get("User"):
        body["User"] = copy.deepcopy(config["User"])
    body["HostConfig"] = {
        "PidMode": f"container:{of['Id']}",
        "NetworkMode": "none",
        # A structured mount: any character in the path is fine (a ``Binds`` string
        # splits on ":"), and a missing source is an error, not a new empty directory.
        "Mounts": [{"Type": "bind", "Source": source, "Target": target, "ReadOnly": True}],
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        # Killed at the end of its operation, the engine then removes it: nothing waits
        # for the removal (about 0.2 s of every restore otherwise).
        "AutoRemove": True,
    }
    # The suffix: a sibling being removed still holds its name for a moment.
    name = f"{str(of.get('Name', '')).lstrip('/') or of['Id'][:12]}.{tag}-{secrets.token_hex(3)}"
    return name, body
