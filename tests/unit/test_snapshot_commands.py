"""Contract tests: the exact commands the snapshot adapters run (argv, never a shell string),
and the small parsers around them."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from supervisor.api.errors import http_status
from supervisor.exceptions import BackupFailed, DiskFull, InsufficientDiskSpace, SnapshotError
from supervisor.snapshots import checksum_sql as cs
from supervisor.snapshots import influx_commands as influx
from supervisor.snapshots import pg_commands as pg
from supervisor.snapshots.disk import DiskUsage, check_free_space
from supervisor.snapshots.sink import write_error


def test_postgres_commands() -> None:
    assert pg.pg_dump("app", "appdb", "00000003-0000000A-1") == [
        "pg_dump", "-Fc", "-U", "app", "-d", "dbname='appdb'", "--snapshot=00000003-0000000A-1",
    ]  # fmt: skip
    assert pg.pg_restore("app", "appdb__restore_0123abcd", "/tmp/supervisor-x/postgres.dump", 4) == [
        "pg_restore", "-U", "app", "-d", "dbname='appdb__restore_0123abcd'", "--jobs=4",
        "--exit-on-error", "/tmp/supervisor-x/postgres.dump",
    ]  # fmt: skip
    assert pg.pg_restore("app", "r", "/tmp/d", 0, ("pre-data", "data")) == [
        "pg_restore", "-U", "app", "-d", "dbname='r'", "--jobs=1", "--exit-on-error",
        "--section=pre-data", "--section=data", "/tmp/d",
    ]  # fmt: skip
    assert pg.pg_dumpall_globals("app", "appdb") == [
        "pg_dumpall", "--globals-only", "-U", "app", "-l", "dbname='appdb'",
    ]  # fmt: skip
    assert pg.psql("app", "x", "SELECT 1", "SELECT 2") == [
        "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "app", "-d", "dbname='x'",
        "-c", "SELECT 1", "-c", "SELECT 2",
    ]  # fmt: skip


def test_names_are_quoted_not_interpreted() -> None:
    assert pg.conninfo("host=evil dbname=x") == "dbname='host=evil dbname=x'"
    assert pg.conninfo("it's\\") == "dbname='it\\'s\\\\'"
    assert pg.quote_ident('we"ird') == '"we""ird"'
    assert pg.drop_database('a"; DROP DATABASE b; --') == (
        'DROP DATABASE IF EXISTS "a""; DROP DATABASE b; --" WITH (FORCE)'
    )
    assert pg.database_exists("o'neil").endswith("datname = 'o''neil'")
    assert pg.maintenance_database("appdb") == "postgres"
    assert pg.maintenance_database("postgres") == "template1"
    with pytest.raises(ValueError, match="unexpected database setting"):
        pg.database_setting("db", "work_mem; DROP=1")
    assert (
        pg.database_setting("db", "work_mem=64MB") == "ALTER DATABASE \"db\" SET work_mem TO '64MB'"
    )


def test_swap_renames_in_one_transaction() -> None:
    commands = pg.swap_databases("appdb", "appdb__restore_1", "appdb__old_1", live_exists=True)
    assert commands[0] == 'ALTER DATABASE "appdb" WITH ALLOW_CONNECTIONS false'
    assert "pg_terminate_backend" in commands[1]
    assert "'appdb'" in commands[1]
    assert commands[2] == (
        'ALTER DATABASE "appdb" RENAME TO "appdb__old_1"; '
        'ALTER DATABASE "appdb__restore_1" RENAME TO "appdb"; '
        'ALTER DATABASE "appdb__old_1" WITH ALLOW_CONNECTIONS true'
    )
    assert pg.swap_databases("a", "b", "c", live_exists=False) == [
        'ALTER DATABASE "b" RENAME TO "a"'
    ]


def test_derived_names_fit_postgres_identifiers() -> None:
    assert pg.derived_name("appdb", "__restore_0123abcd") == "appdb__restore_0123abcd"
    long = pg.derived_name("d" * 63, "__old_0123abcd")
    assert len(long) == 63
    assert long.endswith("__old_0123abcd")
    assert len(pg.derived_name("é" * 40, "__old_0123abcd").encode()) <= 63


def test_kept_names_are_recognised_and_nothing_else() -> None:
    # the rollback keeps under the run id (12 hex), as UpdateRun does
    assert pg.kept_database_name("appdb", "0123456789ab") == "appdb__old_0123456789ab"
    assert pg.is_kept_name("appdb", "appdb__old_run-1")
    assert pg.is_kept_name("appdb", "appdb__old_0123abcd")  # a plain restore's own name
    long = pg.kept_database_name("d" * 63, "r" * 40)
    assert len(long) == 63
    assert pg.is_kept_name("d" * 63, long)
    for name in ("appdb", "appdb__restore_0123abcd", "other__old_x", "appdb__old_",
                 "appdb__old_a b", "xappdb__old_1", "postgres", "appdb__old_" + "x" * 41):  # fmt: skip
        assert not pg.is_kept_name("appdb", name), name
    with pytest.raises(ValueError, match="database name tag"):
        pg.kept_database_name("appdb", "no/slash")


def test_allow_connections_sql() -> None:
    assert pg.allow_connections('a"b') == 'ALTER DATABASE "a""b" WITH ALLOW_CONNECTIONS true'
    assert pg.allow_connections_state("o'neil").endswith("datname = 'o''neil'")


def test_dump_check_commands_and_listing() -> None:
    assert pg.pg_restore_list("/tmp/x/postgres.dump") == [
        "pg_restore", "--list", "/tmp/x/postgres.dump",
    ]  # fmt: skip
    assert pg.pg_restore_read("/tmp/x/p") == ["pg_restore", "--file=/dev/null", "/tmp/x/p"]
    listing = (
        ";     Format: CUSTOM\n;\n214; 1259 16385 TABLE public big app\n"
        "3342; 0 16385 TABLE DATA public big app\n"
        "3343; 0 16390 TABLE DATA audit events app\n"
        "3344; 0 16391 TABLE DATA public with space app\n"
    )
    assert pg.table_data_entries(listing) == {("public", "big"), ("audit", "events")}
    assert pg.split_table_key("public.orders") == ("public", "orders")
    assert pg.split_table_key('"My ""S"".x"."T"') == ('My "S".x', "T")
    with pytest.raises(ValueError, match="not a schema.table key"):
        pg.split_table_key("a.b.c")


def test_holder_output_parsing() -> None:
    out = (
        'sequences={"public.s" : "7:true"}\nsnapshot=00000003-1\n'
        "plan=[]\nrevision=\nready\nother=ignored\n"
    )
    tagged = pg.tagged_lines(out)
    assert tagged == {
        "sequences": '{"public.s" : "7:true"}', "snapshot": "00000003-1", "plan": "[]",
        "revision": "",
    }  # fmt: skip
    commands = pg.hold_snapshot(60)
    assert commands[0] == "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    assert commands[-1] == "SELECT pg_sleep(60)"
    # Sequences are read before the export (the low end of what pg_dump sees).
    assert commands.index(cs.SEQUENCES_SQL) < commands.index(
        "SELECT 'snapshot=' || pg_export_snapshot()"
    )


def test_missing_roles_are_taken_from_the_globals_dump() -> None:
    dumped = "\n".join([
        "CREATE ROLE app;",
        "ALTER ROLE app WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';",
        'CREATE ROLE "Report User";',
        'ALTER ROLE "Report User" WITH NOSUPERUSER LOGIN;',
        "GRANT app TO reader;",
        "CREATE ROLE application;",
    ])  # fmt: skip
    assert pg.missing_roles_sql(dumped, ["Report User"]).splitlines() == [
        'CREATE ROLE "Report User";', 'ALTER ROLE "Report User" WITH NOSUPERUSER LOGIN;',
    ]  # fmt: skip
    assert pg.missing_roles_sql(dumped, ["app"]).splitlines()[0] == "CREATE ROLE app;"
    assert len(pg.missing_roles_sql(dumped, ["app"]).splitlines()) == 2


def test_influx_v1_commands() -> None:
    assert influx.v1_backup("/tmp/supervisor-x/backup") == [
        "influxd", "backup", "-portable", "/tmp/supervisor-x/backup",
    ]  # fmt: skip
    assert influx.v1_restore("/d", "metrics") == [
        "influxd", "restore", "-portable", "-db", "metrics", "/d",
    ]  # fmt: skip
    assert influx.v1_drop_database('we"ird') == ["influx", "-execute", 'DROP DATABASE "we\\"ird"']
    assert influx.v1_show_databases() == ["influx", "-format", "json", "-execute", "SHOW DATABASES"]
    assert influx.v1_env("admin", "pw") == {"INFLUX_USERNAME": "admin", "INFLUX_PASSWORD": "pw"}
    assert influx.v1_env(None, "pw") == {}
    assert influx.tar_out("/d") == ["tar", "-C", "/d", "-cf", "-", "."]
    assert influx.tar_in("/d", "/a.tar") == ["tar", "-C", "/d", "-xf", "/a.tar"]
    shown = {"results": [{"series": [{"values": [["_internal"], ["metrics"], ["x y"]]}]}]}
    assert influx.parse_databases(json.dumps(shown)) == ["metrics", "x y"]
    assert influx.parse_databases('{"results": [{}]}') == []


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("InfluxDB v1.6.7~rc0 (git: unknown unknown)\n", (1, "1.6.7~rc0")),
        ("InfluxDB v1.8.10 (git: 1.8 688e697c51)", (1, "1.8.10")),
        ("InfluxDB v2.7.6 (git: 3c58c06206) build_date: 2024-04-12T21:51:21Z", (2, "2.7.6")),
        ("InfluxDB 3.0.1, revision abc", (3, "3.0.1,")),
    ],
)
def test_influx_version_detection(output: str, expected: tuple[int, str]) -> None:
    assert influx.parse_version(output) == expected


def test_influx_version_garbage() -> None:
    with pytest.raises(SnapshotError, match="cannot tell"):
        influx.parse_version("command not found")


def test_disk_preflight_message_has_the_numbers() -> None:
    usage = lambda _: DiskUsage(total=10_000_000, used=9_000_000, free=1_000_000)  # noqa: E731
    assert check_free_space(Path("/b"), 400_000, 500_000, usage) == 1_000_000
    with pytest.raises(InsufficientDiskSpace) as err:
        check_free_space(Path("/b"), 600_000, 500_000, usage)
    assert "(600000 bytes) is needed" in err.value.message
    assert "(500000 bytes), but only 976.6 KiB (1000000 bytes) is free" in err.value.message
    assert http_status(err.value) == 507
    assert err.value.details["free_bytes"] == 1_000_000


def test_write_errors_are_snapshot_errors_not_oserror() -> None:
    full = write_error(Path("/backups/x/postgres.dump"), OSError(errno.ENOSPC, "No space"), 42)
    assert isinstance(full, DiskFull)
    assert isinstance(full, InsufficientDiskSpace)
    assert full.error_key == "disk_full"
    assert http_status(full) == 507
    assert isinstance(write_error(Path("/b/f"), OSError(errno.EDQUOT, "Quota"), 0), DiskFull)
    assert "42 bytes written" in full.message
    other = write_error(Path("/b/f"), OSError(errno.EIO, "I/O error"), 0)
    assert isinstance(other, BackupFailed)
    assert "I/O error" in other.message


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ('search_path="$user", public', "'$user', 'public'"),
        ('search_path=a, "B c", "x""y"', "'a', 'B c', 'x\"y'"),
        ('search_path=""', "''"),
        ("temp_tablespaces=fast", "'fast'"),
    ],
)
def test_list_settings_are_set_element_by_element(stored: str, expected: str) -> None:
    """As pg_dump does: one quoted literal per element, or PostgreSQL would read the whole
    stored text as a single schema name."""
    key = stored.partition("=")[0]
    assert pg.database_setting("db", stored) == f'ALTER DATABASE "db" SET {key} TO {expected}'


def test_survey_asks_every_name_quoted_and_copes_with_none() -> None:
    text = pg.survey(["app", "it's"], [])
    assert "ARRAY['app', 'it''s']::text[]" in text
    assert "ARRAY[]::text[]" in text  # no role asked: still valid SQL, nothing found
