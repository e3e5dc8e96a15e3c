"""The schema loads, verifies, and records every version with its file's checksum (B001-B005, DESIGN §7.11)."""

from __future__ import annotations

import psycopg
import pytest

from hustlexp.db import migrations
from hustlexp.db import schema as schema_mod
from hustlexp.domain import CHECKED_ENUMS
from tests import factories as f


def test_schema_gate_passes_on_fresh_clone(conn):
    checks = schema_mod.verify(conn)
    assert [c.name for c in checks if not c.ok] == []
    assert len(checks) == 7


def test_schema_versions_records_every_shipped_version_with_its_file_checksum(conn):
    rows = conn.execute("SELECT version, checksum FROM schema_versions").fetchall()
    assert sorted((r["version"], r["checksum"]) for r in rows) == sorted(
        (s.version, s.checksum()) for s in migrations.steps())


def test_production_queries_pass(conn):
    assert conn.execute(schema_mod.NEWEST_VERSION_SQL).fetchone()["version"] == migrations.head()
    assert conn.execute(schema_mod.PATTERN_TRIGGERS_SQL).fetchone()["n"] >= 10
    assert conn.execute(schema_mod.PUBLIC_TABLES_SQL).fetchone()["n"] >= 18


def test_migrate_is_a_no_op_on_a_current_database(conn):
    assert migrations.migrate(conn).action == "none"
    assert conn.execute("SELECT count(*) AS n FROM schema_versions").fetchone()["n"] == len(migrations.steps())


def test_migrate_refuses_an_unknown_version(conn):
    conn.execute("UPDATE schema_versions SET version = '0.9.0' WHERE version = '1.0.0'")
    with pytest.raises(migrations.SchemaError, match=r"0\.9\.0"):
        migrations.migrate(conn)


def test_migrate_refuses_a_database_with_foreign_tables(pg):
    with pg.database() as url, psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP TABLE schema_versions")
        with pytest.raises(migrations.SchemaError, match="not empty"):
            migrations.migrate(c)


def test_verify_reports_a_pending_migration(conn):
    conn.execute("DELETE FROM schema_versions WHERE version = %s", (migrations.head(),))
    failed = {c.name: c for c in schema_mod.verify(conn) if not c.ok}
    assert set(failed) == {"schema version"}
    assert "hustlexp db migrate" in failed["schema version"].detail


def test_verify_reports_a_missing_trigger(conn):
    conn.execute("DROP TRIGGER xp_requires_released_escrow ON xp_ledger")
    failed = {c.name: c for c in schema_mod.verify(conn) if not c.ok}
    assert set(failed) == {"named triggers", "INV-1 probe"}
    assert "xp_requires_released_escrow" in failed["named triggers"].detail


def test_inv1_probe_leaves_no_rows(conn):
    schema_mod.verify(conn)
    assert conn.execute("SELECT count(*) AS n FROM users").fetchone()["n"] == 0


@pytest.mark.parametrize("constraint", sorted(CHECKED_ENUMS))
def test_enum_matches_check_constraint(conn, constraint):
    row = conn.execute(
        "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = %s", (constraint,)
    ).fetchone()
    assert row is not None, f"no CHECK constraint named {constraint}"
    import re

    values = set(re.findall(r"'([^']*)'::", row["def"]))
    assert values == {m.value for m in CHECKED_ENUMS[constraint]}


def test_updated_at_is_stamped(conn):
    uid = f.user(conn)
    before = conn.execute("SELECT updated_at FROM users WHERE id = %s", (uid,)).fetchone()["updated_at"]
    conn.execute("UPDATE users SET full_name = 'Renamed' WHERE id = %s", (uid,))
    after = conn.execute("SELECT updated_at FROM users WHERE id = %s", (uid,)).fetchone()["updated_at"]
    assert after > before
