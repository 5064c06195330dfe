"""The exact PostgreSQL commands and SQL the snapshot adapter runs, as pure functions.

Kept apart from the I/O so that unit tests pin them (argv lists, never shell
strings; the password only ever in ``PGPASSWORD``). Every command connects
through the container's local socket as the configured user, with the client
tools *of the server's own image*, so versions always match.

The checksums' SQL is in :mod:`.checksum_sql`; the session that holds the dump's
snapshot is built here (:func:`hold_snapshot`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from supervisor.exceptions import EngineError, SnapshotError
from supervisor.snapshots.checksum_sql import (
    PLAN_SQL,
    SEQUENCES_SQL,
    STABLE_OUTPUT,
    quote_ident,
    quote_literal,
)

# Best effort: the schema_migrations table of our stack, or Alembic's version table.
_LATEST = "'SELECT max({col})::text AS v FROM {table}'"
REVISION_SQL = (
    "SELECT 'revision=' || coalesce(CASE "
    "WHEN to_regclass('public.schema_migrations') IS NOT NULL THEN (xpath('/row/v/text()', "
    f"query_to_xml({_LATEST.format(col='version', table='public.schema_migrations')}, "
    "false, true, '')))[1]::text "
    "WHEN to_regclass('public.alembic_version') IS NOT NULL THEN (xpath('/row/v/text()', "
    f"query_to_xml({_LATEST.format(col='version_num', table='public.alembic_version')}, "
    "false, true, '')))[1]::text END, '')"
)
DATABASE_INFO_SQL = (
    "SELECT json_build_object('owner', pg_get_userbyid(d.datdba), "
    "'encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate, "
    "'ctype', d.datctype, 'size', pg_database_size(d.oid), "
    "'version', current_setting('server_version'), "
    "'version_num', current_setting('server_version_num')::int, "
    "'roles', (SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]') FROM pg_roles "
    "WHERE rolname !~ '^pg_'), "
    "'settings', (SELECT coalesce(json_agg(s ORDER BY s), '[]') FROM pg_db_role_setting r, "
    "unnest(r.setconfig) s WHERE r.setdatabase = d.oid AND r.setrole = 0)) "
    "FROM pg_database d WHERE d.datname = current_database()"
)


def stderr_of(err: SnapshotError | EngineError) -> str:
    """The useful part of a failed command's message (its stderr), for an operator."""
    text = err.message.split(": exited with code", 1)[-1]
    return text.strip().removeprefix(str(err.details.get("exit_code", ""))).strip(": ")


def conninfo(database: str) -> str:
    """A libpq connection string for ``database``: a bare ``-d`` value containing ``=``
    would itself be parsed as a connection string."""
    escaped = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def maintenance_database(database: str) -> str:
    """Where to connect to create, rename and drop ``database`` (never itself)."""
    return "template1" if database == "postgres" else "postgres"


def psql(user: str, database: str, *commands: str) -> list[str]:
    """``psql`` running each command in turn in one session, unaligned, no headers."""
    argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    argv += ["-U", user, "-d", conninfo(database)]
    for command in commands:
        argv += ["-c", command]
    return argv


def pg_dump(user: str, database: str, snapshot: str | None = None) -> list[str]:
    """Custom format (compressed, restorable in parallel) to stdout."""
    argv = ["pg_dump", "-Fc", "-U", user, "-d", conninfo(database)]
    if snapshot is not None:
        argv.append(f"--snapshot={snapshot}")
    return argv


def pg_dumpall_globals(user: str, database: str) -> list[str]:
    return ["pg_dumpall", "--globals-only", "-U", user, "-l", conninfo(database)]


def pg_restore(
    user: str, database: str, path: str, jobs: int, sections: Sequence[str] = ()
) -> list[str]:
    """Restore ``path`` (only ``sections``, e.g. ``pre-data``, ``data``, ``post-data``)."""
    return [
        "pg_restore", "-U", user, "-d", conninfo(database),
        f"--jobs={max(1, jobs)}", "--exit-on-error",
        *(f"--section={section}" for section in sections), path,
    ]  # fmt: skip


def pg_restore_list(path: str) -> list[str]:
    """The archive's table of contents (reads only the header: cheap, misses data damage)."""
    return ["pg_restore", "--list", path]


def pg_restore_read(path: str) -> list[str]:
    """Read and decompress every block of the archive into nothing: no database needed,
    but a truncated or garbled data block fails it (about 100 MB/s of dump)."""
    return ["pg_restore", "--file=/dev/null", path]


def table_data_entries(listing: str) -> set[tuple[str, str]]:
    """``(schema, table)`` of every ``TABLE DATA`` line of ``pg_restore --list``.

    A line reads ``3342; 0 16385 TABLE DATA public orders app`` (id; catalog ids, kind,
    schema, name, owner); names with spaces are ambiguous there and are skipped.
    """
    found: set[tuple[str, str]] = set()
    for line in listing.splitlines():
        if line.startswith(";") or " TABLE DATA " not in line:
            continue
        words = line.split(" TABLE DATA ", 1)[1].split()
        if len(words) == 3:
            found.add((words[0], words[1]))
    return found


def split_table_key(key: str) -> tuple[str, str]:
    """``format('%I.%I')`` of the stats (``public.t``, ``"My Schema"."T"``) → its parts."""
    parts: list[str] = []
    rest = key
    while True:
        if rest.startswith('"'):
            end = 1
            while True:
                end = rest.index('"', end)
                if rest[end + 1 : end + 2] == '"':
                    end += 2
                    continue
                break
            parts.append(rest[1:end].replace('""', '"'))
            rest = rest[end + 1 :]
        else:
            name, _, tail = rest.partition(".")
            parts.append(name)
            rest = "." + tail if _ else ""
        if not rest:
            break
        rest = rest.removeprefix(".")
    if len(parts) != 2:
        raise ValueError(f"not a schema.table key: {key!r}")
    return parts[0], parts[1]


def hold_snapshot(seconds: int) -> list[str]:
    """The commands of the session that exports the snapshot pg_dump and the checksum
    connections import, then waits (until ended by the sidecar, or ``seconds``).

    Before the export it reads every sequence's position (sequences are not
    transactional: pg_dump reads them later, so this is the lower end of what it saw);
    after it, in the snapshot, the plan of the checksum work and the revision.
    """
    return [
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        STABLE_OUTPUT,
        SEQUENCES_SQL,
        "SELECT 'snapshot=' || pg_export_snapshot()",
        PLAN_SQL,
        REVISION_SQL,
        "SELECT 'ready'",
        f"SELECT pg_sleep({int(seconds)})",
    ]


def create_database(name: str, owner: str, encoding: str, collate: str, ctype: str) -> str:
    return (
        f"CREATE DATABASE {quote_ident(name)} WITH TEMPLATE template0 OWNER {quote_ident(owner)} "
        f"ENCODING {quote_literal(encoding)} LC_COLLATE {quote_literal(collate)} "
        f"LC_CTYPE {quote_literal(ctype)}"
    )


# Settings whose value is a list stored as text ("a, b"): set element by element, as
# pg_dump does, or ``search_path TO 'a, b'`` would name one schema called "a, b".
LIST_SETTINGS = frozenset(
    {"search_path", "temp_tablespaces", "session_preload_libraries",
     "shared_preload_libraries", "local_preload_libraries"}
)  # fmt: skip


def split_setting_list(value: str) -> list[str]:
    """``a, "B c", "x""y"`` → ``['a', 'B c', 'x"y']`` (identifiers unquoted)."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(value):
        char = value[i]
        if quoted:
            if char == '"' and value[i + 1 : i + 2] == '"':
                current.append('"')
                i += 1
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == ",":
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    items.append("".join(current).strip())
    return [item for item in items if item]


def database_setting(name: str, setting: str) -> str:
    """``ALTER DATABASE … SET`` from a ``pg_db_role_setting`` entry ``key=value``."""
    key, _, value = setting.partition("=")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key):
        raise ValueError(f"unexpected database setting {setting!r}")
    if key.lower() in LIST_SETTINGS:
        elements = split_setting_list(value) or [""]
        return f"ALTER DATABASE {quote_ident(name)} SET {key} TO " + ", ".join(
            quote_literal(element) for element in elements
        )
    return f"ALTER DATABASE {quote_ident(name)} SET {key} TO {quote_literal(value)}"


def terminate_sessions(database: str) -> str:
    return (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "  # noqa: S608 (quoted)
        f"WHERE datname = {quote_literal(database)} AND pid <> pg_backend_pid()"
    )


def terminate_application(application_name: str) -> str:
    return (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "  # noqa: S608 (quoted)
        f"WHERE application_name = {quote_literal(application_name)}"
    )


def database_exists(name: str) -> str:
    return f"SELECT count(*) FROM pg_database WHERE datname = {quote_literal(name)}"  # noqa: S608


def existing_databases(names: Sequence[str]) -> str:
    """Which of ``names`` exist, one per line."""
    listed = ", ".join(quote_literal(name) for name in names)
    return f"SELECT datname FROM pg_database WHERE datname IN ({listed}) ORDER BY 1"  # noqa: S608


def survey(databases: Sequence[str], roles: Sequence[str]) -> str:
    """One JSON object: which of ``databases`` exist (name → takes connections) and which
    of ``roles`` exist (a list): every question a restore asks before it acts, at once."""
    names = ", ".join(quote_literal(name) for name in databases)
    wanted = ", ".join(quote_literal(role) for role in roles)
    return (
        "SELECT json_build_object('databases', (SELECT coalesce(json_object_agg("  # noqa: S608
        "datname, datallowconn), '{}') FROM pg_database "
        f"WHERE datname::text = ANY (ARRAY[{names}]::text[])), 'roles', (SELECT "
        "coalesce(json_agg(rolname), '[]') FROM pg_roles "
        f"WHERE rolname::text = ANY (ARRAY[{wanted}]::text[])))"
    )


def swap_databases(
    live: str, restored: str, old: str, live_exists: bool, end_sessions_of_restored: bool = False
) -> list[str]:
    """Commands (one session) that put ``restored`` in the place of ``live``, which becomes
    ``old``. The renames run in one transaction: both happen or neither; the same
    transaction lets ``old`` take connections again (it is kept, dumped or inspected
    under its new name). A crash between the first command and the last leaves ``live``
    refusing connections: :func:`allow_connections_state` / :func:`allow_connections`
    undo that at the start of the next restore.

    ``end_sessions_of_restored``: ``restored`` may have sessions of its own (a rollback
    copy, with a dump a killed process left running), and a database with sessions
    cannot be renamed; they are refused and ended first, and the transaction lets it
    take connections again under its new name."""
    first: list[str] = []
    reopen = ""
    if end_sessions_of_restored:
        first = [
            f"ALTER DATABASE {quote_ident(restored)} WITH ALLOW_CONNECTIONS false",
            terminate_sessions(restored),
        ]
        reopen = f"; ALTER DATABASE {quote_ident(live)} WITH ALLOW_CONNECTIONS true"
    if not live_exists:
        return [*first, f"ALTER DATABASE {quote_ident(restored)} RENAME TO {quote_ident(live)}"
                + reopen]  # fmt: skip
    return [
        *first,
        f"ALTER DATABASE {quote_ident(live)} WITH ALLOW_CONNECTIONS false",
        terminate_sessions(live),
        f"ALTER DATABASE {quote_ident(live)} RENAME TO {quote_ident(old)}; "
        f"ALTER DATABASE {quote_ident(restored)} RENAME TO {quote_ident(live)}; "
        f"ALTER DATABASE {quote_ident(old)} WITH ALLOW_CONNECTIONS true{reopen}",
    ]


def copy_database(name: str, template: str, owner: str, version_num: int) -> str:
    """A copy of ``template`` made by the server from its files (no SQL replay): about
    a second a gigabyte. ``FILE_COPY`` (15+) skips writing the whole copy to the WAL;
    older servers copy files anyway. The template must have no other sessions."""
    strategy = " STRATEGY FILE_COPY" if version_num >= 150000 else ""
    return (
        f"CREATE DATABASE {quote_ident(name)} WITH TEMPLATE {quote_ident(template)} "
        f"OWNER {quote_ident(owner)}{strategy}"
    )


def allow_connections_state(name: str) -> str:
    """``t`` / ``f`` for an existing database, nothing when it does not exist."""
    return f"SELECT datallowconn FROM pg_database WHERE datname = {quote_literal(name)}"  # noqa: S608


def allow_connections(name: str) -> str:
    return f"ALTER DATABASE {quote_ident(name)} WITH ALLOW_CONNECTIONS true"


def drop_database(name: str) -> str:
    return f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"


def derived_name(database: str, suffix: str) -> str:
    """``database`` + ``suffix`` within PostgreSQL's 63-byte identifier limit."""
    room = 63 - len(suffix.encode())
    head = database.encode()[:room].decode("utf-8", "ignore")
    return head + suffix


KEPT_MARK = "__old_"
_KEPT_TAG_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _tagged_name(database: str, mark: str, tag: str) -> str:
    if not _KEPT_TAG_RE.fullmatch(tag):
        raise ValueError(f"a database name tag is 1-40 of [A-Za-z0-9_-], not {tag!r}")
    return derived_name(database, f"{mark}{tag}")


def _is_tagged_name(database: str, name: str, mark: str) -> bool:
    head, found, tag = name.rpartition(mark)
    if not found or not head or not _KEPT_TAG_RE.fullmatch(tag):
        return False
    return name == _tagged_name(database, mark, tag)


def kept_database_name(database: str, tag: str) -> str:
    """The name a replaced ``database`` is kept under: ``<database>__old_<tag>``.

    ``tag`` (e.g. the run's id) makes it unique and lets a resumed rollback find it
    again. Only names of this form can be dropped by ``drop_kept_database``.
    """
    return _tagged_name(database, KEPT_MARK, tag)


def is_kept_name(database: str, name: str) -> bool:
    """Whether ``name`` is ``kept_database_name(database, tag)`` for some tag."""
    return _is_tagged_name(database, name, KEPT_MARK)


COPY_MARK = "__copy_"


def copy_database_name(database: str, tag: str) -> str:
    """The name of a run's rollback copy of ``database``: ``<database>__copy_<tag>``."""
    return _tagged_name(database, COPY_MARK, tag)


def is_copy_name(database: str, name: str) -> bool:
    return _is_tagged_name(database, name, COPY_MARK)


TAGS = ("snapshot", "sequences", "plan", "revision")  # part= lines: checksum_sql.part_lines


def tagged_lines(output: str) -> dict[str, str]:
    """``key=value`` lines printed by the holder session (other lines ignored)."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in TAGS:
            found[key] = value
    return found


def missing_roles_sql(globals_sql: str, missing: Sequence[str]) -> str:
    """From ``pg_dumpall --globals-only`` output, the statements that create ``missing``
    roles (CREATE ROLE and its ALTER ROLE … WITH options); nothing else is replayed."""
    wanted = {quote_ident(name) for name in missing} | set(missing)
    kept: list[str] = []
    for line in globals_sql.splitlines():
        match = re.match(r'(CREATE|ALTER) ROLE ("(?:[^"]|"")+"|[^\s;]+)[\s;]', line)
        if match and match.group(2) in wanted:
            kept.append(line)
    return "\n".join(kept)
