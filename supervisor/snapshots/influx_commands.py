"""The exact InfluxDB commands the snapshot adapter runs, for both major versions.

1.x (tested against a live server): ``influxd backup -portable DIR`` and
``influxd restore -portable -db NAME DIR``; they talk to the server's RPC port
(``127.0.0.1:8088`` inside the container), which has no authentication. The
``influx`` shell (SHOW / DROP DATABASE) gets ``INFLUX_USERNAME`` and
``INFLUX_PASSWORD`` from the environment when the server has auth enabled.

2.x (contract only: no 2.x server was reachable where this was built):
``influx backup DIR`` and ``influx restore --full DIR``. The operator token is
given as ``INFLUX_TOKEN`` in the exec environment, which the ``influx`` CLI
reads like ``-t``, so it never appears in argv, ``ps`` or the engine's exec
records.
"""

from __future__ import annotations

import json
import re

from supervisor.exceptions import SnapshotError

V2_DEFAULT_HOST = "http://localhost:8086"
V1_SYSTEM_DATABASES = frozenset({"_internal"})
DATA_DIRS = {1: "/var/lib/influxdb", 2: "/var/lib/influxdb2"}  # the official images' volumes


def influxd_version() -> list[str]:
    return ["influxd", "version"]


def parse_version(output: str) -> tuple[int, str]:
    """``InfluxDB v1.8.10 (git: …)`` → ``(1, "1.8.10")``."""
    match = re.search(r"\bv?(\d+)\.(\d+)(?:\.(\d+))?\S*", output)
    if not match:
        raise SnapshotError(f"cannot tell the InfluxDB version from {output.strip()[:200]!r}")
    return int(match.group(1)), match.group(0).removeprefix("v")


def quote_identifier(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def v1_backup(directory: str) -> list[str]:
    return ["influxd", "backup", "-portable", directory]


def v1_restore(directory: str, database: str) -> list[str]:
    return ["influxd", "restore", "-portable", "-db", database, directory]


def v1_show_databases() -> list[str]:
    return ["influx", "-format", "json", "-execute", "SHOW DATABASES"]


def v1_drop_database(database: str) -> list[str]:
    return ["influx", "-execute", f"DROP DATABASE {quote_identifier(database)}"]


def v1_env(username: str | None, password: str | None) -> dict[str, str]:
    if not username:
        return {}
    return {"INFLUX_USERNAME": username, "INFLUX_PASSWORD": password or ""}


def parse_databases(output: str) -> list[str]:
    """User databases from ``SHOW DATABASES`` in JSON (``_internal`` left out)."""
    data = json.loads(output)
    names: list[str] = []
    for result in data.get("results", []):
        for series in result.get("series", []):
            names += [str(row[0]) for row in series.get("values", [])]
    return [name for name in names if name not in V1_SYSTEM_DATABASES]


def v2_backup(directory: str) -> list[str]:
    return ["influx", "backup", directory]


def v2_restore(directory: str) -> list[str]:
    return ["influx", "restore", "--full", directory]


def v2_env(token: str, host: str = V2_DEFAULT_HOST, org: str | None = None) -> dict[str, str]:
    env = {"INFLUX_TOKEN": token, "INFLUX_HOST": host}
    if org:
        env["INFLUX_ORG"] = org
    return env


def tar_out(directory: str) -> list[str]:
    """The backup directory as a tar on stdout (streamed into the snapshot folder)."""
    return ["tar", "-C", directory, "-cf", "-", "."]


def tar_in(directory: str, archive: str) -> list[str]:
    return ["tar", "-C", directory, "-xf", archive]


def disk_usage(directory: str) -> list[str]:
    return ["du", "-sk", directory]
