"""The database and Compose fixtures hold what the test put in them."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager

from tests.support.compose import ComposeProject
from tests.support.databases import InfluxHandle, PostgresHandle
from tests.support.dockercli import OWNER_LABEL, docker, exec_in, inspect


def test_postgres_fixture_holds_written_data(postgres: PostgresHandle) -> None:
    postgres.psql("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
    postgres.psql("INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 1000) g")
    assert postgres.psql("SELECT count(*), max(body) FROM notes") == "1000|note 999"
    # The password really is required over TCP (trust only on the local socket).
    labels = inspect("container", postgres.container_id)["Config"]["Labels"]
    assert OWNER_LABEL in labels
    assert postgres.psql("SHOW server_version").startswith("15.")


def test_influxdb_fixture_holds_written_points(influxdb: InfluxHandle) -> None:
    influxdb.query("CREATE DATABASE metrics")
    influxdb.write(
        "metrics",
        "cpu,host=a value=0.5 1700000000000000000\ncpu,host=b value=0.7 1700000001000000000",
    )
    result = influxdb.query("SELECT value FROM cpu ORDER BY time", db="metrics")
    values = result["results"][0]["series"][0]["values"]
    assert [v[1] for v in values] == [0.5, 0.7]


def test_compose_stack_comes_up_labelled_and_migrated(
    compose_stack: Callable[..., AbstractContextManager[ComposeProject]],
) -> None:
    with compose_stack("1.0.0") as project:
        app = inspect("container", project.container("app"))
        labels = app["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == project.name
        assert labels["com.docker.compose.service"] == "app"
        assert labels["supervisor.role"] == "app"
        assert app["State"]["Health"]["Status"] == "healthy"

        (migrations,) = project.containers("migrations", all_states=True)
        state = inspect("container", migrations)["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0)

        port = docker("port", project.container("app"), "8000/tcp").split(":")[-1].strip()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as r:
            assert json.loads(r.read()) == {"version": "1.0.0"}
        tables = exec_in(
            project.container("postgres"),
            "psql", "-U", "app", "-d", "appdb", "-A", "-t", "-c",
            "SELECT version FROM schema_migrations ORDER BY 1",
        )  # fmt: skip
        assert tables.split() == ["001"]
