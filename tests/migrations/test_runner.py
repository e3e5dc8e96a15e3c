"""The migration runner's rules (DESIGN §7.15): files in order, one transaction per migration,
a failure rolls back whole and names its statement, one host migrates at a time, a database
ahead of the code is refused everywhere; and the commands an operator types."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from hustlexp import cli, commands, config
from hustlexp.db import migrations
from tests.pg import install_release_1_0_0


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@pytest.fixture
def old_url(pg: Any) -> Any:
    """A database holding release 1.0.0 only."""
    with pg.database(empty=True) as url:
        with connect(url) as conn:
            install_release_1_0_0(conn)
        yield url


@pytest.fixture
def sql_root(tmp_path: Path) -> Path:
    """A copy of sql/ that a test may add migrations to."""
    root = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), root)
    return root


def add_migration(root: Path, slug: str, text: str) -> Path:
    number = len(list((root / "migrations").glob("*.sql"))) + 1
    path = root / "migrations" / f"{number:04d}_{slug}.sql"
    path.write_text(text)
    return path


def versions(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT version FROM schema_versions").fetchall()
    return sorted((r["version"] for r in rows), key=migrations.version_key)


# --- splitting ---------------------------------------------------------------------------------

def test_statements_split_only_at_top_level_semicolons() -> None:
    text = """-- a comment; not a statement
CREATE TABLE t (a text DEFAULT 'x;y', "odd;name" int);
/* block; /* nested; */ still comment */
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE NOTICE 'a; b';
    RETURN NEW;
END
$body$;
SELECT E'it\\'s; fine', $$dollar; quoted$$, 'it''s; too';
SELECT 1"""
    parts = migrations.statements(text)
    assert [line for line, _ in parts] == [2, 4, 10, 11]
    assert parts[0][1] == """CREATE TABLE t (a text DEFAULT 'x;y', "odd;name" int)"""
    assert parts[1][1].startswith("CREATE FUNCTION f()") and parts[1][1].endswith("$body$")
    assert parts[2][1] == "SELECT E'it\\'s; fine', $$dollar; quoted$$, 'it''s; too'"
    assert parts[3][1] == "SELECT 1"


def test_statements_of_the_real_files_run_as_one_file_does() -> None:
    """Splitting schema.sql and the baseline yields whole statements: each starts with a keyword."""
    for path in (migrations.schema_path(), *(s.path for s in migrations.steps())):
        for line, statement in migrations.statements(path.read_text()):
            assert statement.split()[0].upper() in {"BEGIN", "COMMIT", "CREATE", "ALTER", "INSERT", "COMMENT",
                                                    "DROP", "DO", "UPDATE"}, (path.name, line)


# --- which files are migrations ---------------------------------------------------------------

def test_steps_are_the_baseline_then_each_numbered_file() -> None:
    known = migrations.steps()
    assert known[0].version == "1.0.0" and known[0].file == "versions/1.0.0.sql"
    for number, step in enumerate(known[1:], start=1):
        assert step.version == f"1.{number}.0" and step.path.name.startswith(f"{number:04d}_")


@pytest.mark.parametrize(("name", "message"), [
    ("0019_skipped_ahead.sql", "expected migration number"),
    ("0002 bad name.sql", "NNNN_lowercase_words.sql"),
])
def test_a_misnamed_or_misnumbered_file_is_refused(sql_root: Path, name: str, message: str) -> None:
    (sql_root / "migrations" / name).write_text("SELECT 1;")
    with pytest.raises(migrations.SchemaError, match=message):
        migrations.steps(sql_root)


# --- install and migrate ------------------------------------------------------------------------

def test_an_empty_database_gets_the_current_schema_and_every_version(pg: Any) -> None:
    with pg.database(empty=True) as url, connect(url) as conn:
        assert migrations.status(conn).state == "empty"
        outcome = migrations.migrate(conn)
        assert outcome.action == "install" and outcome.after == migrations.head()
        assert versions(conn) == [s.version for s in migrations.steps()]
        row = conn.execute("SELECT applied_by, applied_at FROM schema_versions LIMIT 1").fetchone()
        assert "hustlexp" in row["applied_by"] and row["applied_at"] is not None


def test_a_1_0_0_database_is_behind_and_migrates_in_place(old_url: str) -> None:
    with connect(old_url) as conn:
        st = migrations.status(conn)
        assert (st.state, st.current) == ("behind", "1.0.0")
        assert st.pending == list(migrations.steps()[1:])
        outcome = migrations.migrate(conn)
        assert (outcome.action, outcome.before, outcome.after) == ("migrate", "1.0.0", migrations.head())
        assert migrations.status(conn).state == "current"
        assert migrations.migrate(conn).action == "none"


def test_a_failing_migration_rolls_back_whole_and_names_its_statement(pg: Any, sql_root: Path) -> None:
    add_migration(sql_root, "broken", "CREATE TABLE half_done (id int);\n\n"
                                      "ALTER TABLE no_such_table ADD COLUMN x int;\n")
    known = migrations.steps(sql_root)
    with pg.database() as url, connect(url) as conn:
        with pytest.raises(migrations.MigrationError) as caught:
            migrations.migrate(conn, known=known)
        message = str(caught.value)
        assert "_broken.sql line 3" in message and "ALTER TABLE no_such_table ADD COLUMN x int" in message
        assert "42P01" in message and "rolled back" in message
        assert conn.execute("SELECT to_regclass('half_done') AS t").fetchone()["t"] is None
        assert versions(conn)[-1] == migrations.head()  # nothing recorded
        with connect(url) as other:  # the lock went with the failure
            assert other.execute("SELECT pg_try_advisory_lock(%s) AS got", (migrations.LOCK_KEY,)).fetchone()["got"]


def test_a_migration_may_not_manage_its_own_transaction(pg: Any, sql_root: Path) -> None:
    add_migration(sql_root, "commits", "CREATE TABLE early (id int);\nCOMMIT;\n")
    with pg.database() as url, connect(url) as conn:
        with pytest.raises(migrations.MigrationError, match="may not manage its own transaction"):
            migrations.migrate(conn, known=migrations.steps(sql_root))
        assert conn.execute("SELECT to_regclass('early') AS t").fetchone()["t"] is None


def test_two_hosts_migrating_at_once_apply_each_step_once(old_url: str, sql_root: Path) -> None:
    # A slow step widens the window in which the second host must wait on the lock.
    add_migration(sql_root, "slow", "SELECT pg_sleep(0.5);\nCREATE TABLE slow_done (id int);\n")
    known = migrations.steps(sql_root)
    outcomes: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def host() -> None:
        try:
            with connect(old_url) as conn:
                start.wait()
                outcomes.append(migrations.migrate(conn, known=known).action)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=host) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(outcomes) == ["migrate", "none"]
    with connect(old_url) as conn:
        assert versions(conn) == [s.version for s in known]


def test_a_database_ahead_of_the_code_is_refused(conn: Any) -> None:
    conn.execute("INSERT INTO schema_versions (version, applied_by, checksum) VALUES ('1.99.0', 'later', 'x')")
    st = migrations.status(conn)
    assert st.state == "ahead"
    with pytest.raises(migrations.SchemaError, match=r"1\.99\.0, newer than this build"):
        migrations.migrate(conn)


def test_a_release_file_edited_after_install_is_refused(conn: Any) -> None:
    conn.execute("UPDATE schema_versions SET checksum = 'edited' WHERE version = '1.0.0'")
    with pytest.raises(migrations.SchemaError, match=r"installed from a different versions/1\.0\.0\.sql"):
        migrations.migrate(conn)


def test_a_missing_intermediate_version_is_refused(old_url: str) -> None:
    with connect(old_url) as conn:
        migrations.migrate(conn)
        conn.execute("DELETE FROM schema_versions WHERE version = '1.0.0'")
        with pytest.raises(migrations.SchemaError, match=r"1\.0\.0 .* is missing"):
            migrations.migrate(conn)


# --- the commands ----------------------------------------------------------------------------

def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str,
            *argv: str) -> tuple[int, Any, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    code = cli.main(["db", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if "--json" in argv else out, err


def test_db_status_and_dry_run_report_without_changing_anything(old_url: str, monkeypatch: Any,
                                                                 capsys: Any) -> None:
    code, doc, _ = run_cli(monkeypatch, capsys, old_url, "status", "--json")
    assert code == 1
    assert doc["state"] == "behind" and doc["current"] == "1.0.0" and doc["head"] == migrations.head()
    assert [p["version"] for p in doc["pending"]] == [s.version for s in migrations.steps()[1:]]
    assert doc["applied"][0]["version"] == "1.0.0" and doc["applied"][0]["applied_by"]

    code, plan, _ = run_cli(monkeypatch, capsys, old_url, "migrate", "--dry-run", "--json")
    assert code == 0 and plan["dry_run"] is True and plan["action"] == "migrate"
    assert [s["file"] for s in plan["steps"]] == [s.file for s in migrations.steps()[1:]]
    code, text, _ = run_cli(monkeypatch, capsys, old_url, "migrate", "--dry-run")
    assert "would migrate 1.0.0 -> " in text
    with connect(old_url) as conn:
        assert versions(conn) == ["1.0.0"]


def test_db_migrate_then_status_is_current(old_url: str, monkeypatch: Any, capsys: Any) -> None:
    code, _, err = run_cli(monkeypatch, capsys, old_url, "migrate")
    assert code == 0 and f"migrated schema 1.0.0 -> {migrations.head()}" in err
    code, doc, _ = run_cli(monkeypatch, capsys, old_url, "status", "--json")
    assert code == 0 and doc["state"] == "current" and doc["pending"] == []
    code, _, err = run_cli(monkeypatch, capsys, old_url, "verify")
    assert code == 0


def test_db_init_leaves_a_database_that_is_behind_to_migrate(old_url: str, monkeypatch: Any, capsys: Any) -> None:
    code, _, err = run_cli(monkeypatch, capsys, old_url, "init")
    assert code == 2 and "run `hustlexp db migrate`" in err
    with connect(old_url) as conn:
        assert versions(conn) == ["1.0.0"]


def test_db_status_of_a_database_ahead_exits_2(conn: Any, db_url: str, monkeypatch: Any, capsys: Any) -> None:
    conn.execute("INSERT INTO schema_versions (version, applied_by, checksum) VALUES ('2.0.0', 'later', 'x')")
    code, doc, _ = run_cli(monkeypatch, capsys, db_url, "status", "--json")
    assert code == 2 and doc["state"] == "ahead" and "newer than this build" in doc["problems"][0]


# --- serve ---------------------------------------------------------------------------------------

def test_serve_refuses_a_database_url_that_is_behind_in_one_line(old_url: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        commands._database(config.load({"DATABASE_URL": old_url}))
    message = str(caught.value)
    assert "\n" not in message and "1.0.0" in message and "run `hustlexp db migrate`" in message
    with connect(old_url) as conn:
        assert versions(conn) == ["1.0.0"]


def test_serve_installs_on_an_empty_database_url(pg: Any) -> None:
    with pg.database(empty=True) as url:
        assert commands._database(config.load({"DATABASE_URL": url})) == (url, None)
        with connect(url) as conn:
            assert migrations.status(conn).state == "current"


def test_serve_refuses_a_database_url_ahead_of_the_code(conn: Any, db_url: str) -> None:
    conn.execute("INSERT INTO schema_versions (version, applied_by, checksum) VALUES ('1.99.0', 'later', 'x')")
    with pytest.raises(config.ConfigError, match="newer than this build"):
        commands._database(config.load({"DATABASE_URL": db_url}))


def test_serve_on_the_embedded_server_migrates_by_itself_but_never_past_ahead(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hustlexp.db import embedded

    # Not under pytest's tmp_path: as root the server runs as its own user, which must reach the folder.
    folder = tempfile.TemporaryDirectory(prefix="hustlexp-embedded-")
    monkeypatch.setenv("HUSTLEXP_PGDATA", str(Path(folder.name) / "pgdata"))
    url, server = embedded.resolve_url(None, cleanup="delete")
    try:
        with connect(url) as conn:
            install_release_1_0_0(conn)
        served_url, served = commands._database(config.load({}))  # same data folder: attaches
        assert served_url == url and served is not None
        with connect(url) as conn:
            assert migrations.status(conn).state == "current"
            conn.execute("INSERT INTO schema_versions (version, applied_by, checksum) VALUES ('1.99.0', 'x', 'x')")
        with pytest.raises(config.ConfigError, match="newer than this build"):
            commands._database(config.load({}))
    finally:
        server.cleanup()
        folder.cleanup()
