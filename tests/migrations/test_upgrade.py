"""A database of release 1.0.0, filled by that release's own services, migrated to this build:
nothing lost, and the schema it ends with is exactly a fresh install's (DESIGN §7.15).
The `migrations` nox session also runs every kill test on a database built this way."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from hustlexp.db import migrations
from hustlexp.db import schema as schema_mod
from tests.migrations import catalog

ROOT = Path(__file__).resolve().parents[2]
# The commit that shipped schema 1.0.0: its code fills the old database.
RELEASE_1_0_0 = "0756470e24b43b37d6545a90063a444da2cf6863"


def git(*args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, (f"git {args[0]} failed: this test needs the repository's history back to "
                                  f"{RELEASE_1_0_0[:7]} (a full clone): {done.stderr.decode().strip()}")
    return done.stdout


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1.0.0 source (hustlexp/, tests/, sql/) as it was committed."""
    root = tmp_path_factory.mktemp("release-1.0.0")
    with tarfile.open(fileobj=io.BytesIO(git("archive", RELEASE_1_0_0, "hustlexp", "tests", "sql"))) as tar:
        tar.extractall(root, filter="data")
    return root


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def test_the_kept_1_0_0_file_is_the_release_schema_byte_for_byte() -> None:
    assert migrations.steps()[0].path.read_bytes() == git("show", f"{RELEASE_1_0_0}:sql/schema.sql")


def test_a_filled_1_0_0_database_migrates_to_exactly_a_fresh_install(pg: Any, release_tree: Path,
                                                                      tmp_path: Path) -> None:
    with pg.database(empty=True) as old_url, pg.database(empty=True) as fresh_url:
        env = {**os.environ, "PYTHONPATH": str(release_tree)}
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "migrations" / "fill_release_1_0_0.py"),
                               old_url, str(tmp_path / "uploads")],
                              cwd=release_tree, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        made = json.loads(done.stdout.strip().splitlines()[-1])
        assert made["release"] == "1.0.0" and Path(made["code"]).is_relative_to(release_tree)
        assert made["task_states"] == 7 and made["escrow_states"] == 6  # every state of both
        assert [t for t in ("xp_ledger", "trust_ledger", "badges", "disputes", "task_messages", "notifications",
                            "money_outbox", "processed_stripe_events", "admin_actions", "proof_photos")
                if not made[t]] == []

        with connect(old_url) as conn:
            assert migrations.status(conn).current == migrations.BASELINE
            columns = catalog.table_columns(conn)
            before = catalog.table_digests(conn, columns)
            release_row = conn.execute("SELECT * FROM schema_versions").fetchall()
            outcome = migrations.migrate(conn)
            assert outcome.action == "migrate" and outcome.steps == list(migrations.steps()[1:])
            after = catalog.table_digests(conn, columns)
            assert after.pop("schema_versions")[0] == len(migrations.steps())  # one row per version
            assert after == {t: d for t, d in before.items() if t != "schema_versions"}  # every row, every value
            assert conn.execute("SELECT * FROM schema_versions WHERE version = %s",
                                (migrations.BASELINE,)).fetchall() == release_row
            assert migrations.status(conn).state == "current"
            assert [c.name for c in schema_mod.verify(conn) if not c.ok] == []
            migrated = catalog.snapshot(conn)
            versions = conn.execute("SELECT version, checksum FROM schema_versions").fetchall()

        with connect(fresh_url) as conn:
            assert migrations.migrate(conn).action == "install"
            assert catalog.differences(migrated, catalog.snapshot(conn)) == {}
            assert sorted(map(tuple, (r.values() for r in versions))) == sorted(
                (r["version"], r["checksum"]) for r in conn.execute("SELECT version, checksum FROM schema_versions"))


def test_each_migration_applies_on_its_own_in_order(pg: Any) -> None:
    """Stopping at every version on the way is as good as going straight to the head."""
    from tests.pg import install_release_1_0_0

    with pg.database(empty=True) as url, connect(url) as conn:
        install_release_1_0_0(conn)
        known = migrations.steps()
        for i in range(1, len(known)):
            outcome = migrations.migrate(conn, known=known[: i + 1])
            assert [s.version for s in outcome.steps] == [known[i].version]
        assert migrations.status(conn).state == "current"
