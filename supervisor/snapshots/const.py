"""Names inside a snapshot folder and inside the database containers."""

from __future__ import annotations

from enum import StrEnum

MANIFEST_FILE = "manifest.json"
POSTGRES_DUMP_FILE = "postgres.dump"  # pg_dump -Fc
POSTGRES_GLOBALS_FILE = "postgres-globals.sql"  # pg_dumpall --globals-only
INFLUX_ARCHIVE_FILE = "influxdb.tar"  # the portable backup directory, as a tar
CONFIG_ARCHIVE_FILE = "config.tar.gz"

# A snapshot being written lives in <backups>/.tmp-<id> until it is complete.
TEMP_PREFIX = ".tmp-"
# Scratch space for one operation inside a database container; removed afterwards.
CONTAINER_WORKDIR_PREFIX = "/tmp/supervisor-"  # noqa: S108 (in the container, mode 700)
# application_name of our PostgreSQL sessions, so that they can be found and ended.
PG_APP_PREFIX = "supervisor-"


class SnapshotReason(StrEnum):
    """Why a snapshot was taken. Retention counts a pre-rollback dump (the failed
    version's data) apart: it cannot bring a known-good version back."""

    PRE_UPDATE = "pre-update"
    PRE_ROLLBACK = "pre-rollback"
    MANUAL = "manual"
    REHEARSAL = "rehearsal"  # a fresh dump restored into a scratch DB to rehearse migrations
