"""Apply and verify sql/schema.sql (the B001-B005 gate as code)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

SCHEMA_VERSION = "1.0.0"
MIN_SERVER_VERSION = 140000

GATE_TABLES = (
    "users", "tasks", "escrows", "proofs", "proof_photos", "xp_ledger", "trust_ledger", "badges",
    "disputes", "processed_stripe_events", "ai_events", "ai_jobs", "ai_proposals", "ai_decisions",
    "evidence", "admin_roles", "admin_actions", "schema_versions",
)
GATE_TRIGGERS = (
    "task_terminal_guard", "escrow_terminal_guard", "escrow_amount_immutable",
    "xp_requires_released_escrow", "xp_ledger_no_delete", "badge_no_delete",
    "escrow_released_requires_completed_task", "task_completed_requires_accepted_proof",
    "trust_tier_audit", "admin_actions_no_delete",
)

# The three production verification queries (spec/api.md §8; scripts/verify-production.sql).
NEWEST_VERSION_SQL = "SELECT version FROM schema_versions ORDER BY applied_at DESC, version DESC LIMIT 1"
PATTERN_TRIGGERS_SQL = """
    SELECT count(*) AS n FROM pg_trigger
     WHERE NOT tgisinternal
       AND (tgname LIKE '%guard%' OR tgname LIKE '%immutable%'
            OR tgname LIKE '%requires%' OR tgname LIKE '%no_delete%')"""
PUBLIC_TABLES_SQL = """
    SELECT count(*) AS n FROM information_schema.tables
     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"""


class SchemaError(Exception):
    pass


def schema_path() -> Path:
    """sql/schema.sql of the checkout (the file is the source of truth, not a copy)."""
    here = Path(__file__).resolve().parents[2] / "sql" / "schema.sql"
    if here.exists():
        return here
    return Path(str(resources.files("hustlexp"))).parent / "sql" / "schema.sql"


def schema_text() -> str:
    return schema_path().read_text(encoding="utf-8")


def schema_checksum() -> str:
    return hashlib.sha256(schema_path().read_bytes()).hexdigest()


def installed_version(conn: psycopg.Connection[Any]) -> str | None:
    """The newest schema version in this database, or None for an empty database."""
    has_table = conn.execute("SELECT to_regclass('public.schema_versions') IS NOT NULL AS t").fetchone()
    if not _first(has_table):
        return None
    row = conn.execute(NEWEST_VERSION_SQL).fetchone()
    return _first(row) if row else None


def apply(conn: psycopg.Connection[Any]) -> str:
    """Apply the schema to an empty database. Returns what happened: 'applied' or 'current'.
    Refuses a database holding another version or unrelated tables."""
    version = installed_version(conn)
    if version == SCHEMA_VERSION:
        stored = _first(conn.execute("SELECT checksum FROM schema_versions WHERE version = %s",
                                     (SCHEMA_VERSION,)).fetchone())
        if stored != schema_checksum():
            raise SchemaError(f"schema {SCHEMA_VERSION} is installed but its checksum differs from "
                              "sql/schema.sql; the database was built from another file")
        return "current"
    if version is not None:
        raise SchemaError(f"database holds schema version {version}; this build ships {SCHEMA_VERSION} "
                          "and will not overwrite it")
    tables = _first(conn.execute(PUBLIC_TABLES_SQL).fetchone())
    if tables:
        raise SchemaError(f"database is not empty ({tables} tables in public) and has no schema_versions; "
                          "refusing to apply the schema over it")
    autocommit = conn.autocommit
    conn.autocommit = True  # the file carries its own BEGIN/COMMIT
    try:
        conn.execute("SELECT set_config('hustlexp.schema_checksum', %s, false)", (schema_checksum(),))
        conn.execute(schema_text().encode())
    finally:
        conn.execute("RESET hustlexp.schema_checksum")
        conn.autocommit = autocommit
    return "applied"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def verify(conn: psycopg.Connection[Any]) -> list[Check]:
    """Every gate check of B001-B005; each independent, none raises."""
    checks: list[Check] = []

    def run(name: str, fn: Any) -> None:
        try:
            ok, detail = fn()
        except psycopg.Error as exc:
            ok, detail = False, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            if not conn.autocommit:
                conn.rollback()
        checks.append(Check(name, ok, detail))

    def server() -> tuple[bool, str]:
        num = conn.info.server_version
        return num >= MIN_SERVER_VERSION, f"PostgreSQL {num // 10000}.{num % 10000} (need 14+)"

    def tables() -> tuple[bool, str]:
        rows = conn.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = 'public'").fetchall()
        present = {_first(r) for r in rows}
        missing = [t for t in GATE_TABLES if t not in present]
        return not missing, f"{len(GATE_TABLES) - len(missing)}/{len(GATE_TABLES)} gate tables" + (
            f"; missing {', '.join(missing)}" if missing else "")

    def table_count() -> tuple[bool, str]:
        n = _first(conn.execute(PUBLIC_TABLES_SQL).fetchone())
        return n >= 18, f"{n} tables in public (need >= 18)"

    def triggers() -> tuple[bool, str]:
        rows = conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()
        present = {_first(r) for r in rows}
        missing = [t for t in GATE_TRIGGERS if t not in present]
        return not missing, f"{len(GATE_TRIGGERS) - len(missing)}/{len(GATE_TRIGGERS)} named triggers, " \
            f"{len(present)} in all" + (f"; missing {', '.join(missing)}" if missing else "")

    def pattern_triggers() -> tuple[bool, str]:
        n = _first(conn.execute(PATTERN_TRIGGERS_SQL).fetchone())
        return n >= 10, f"{n} guard/immutable/requires/no_delete triggers (need >= 10)"

    def inv1_probe() -> tuple[bool, str]:
        return _inv1_probe(conn)

    def version() -> tuple[bool, str]:
        newest = _first(conn.execute(NEWEST_VERSION_SQL).fetchone() or (None,))
        stored = _first(conn.execute("SELECT checksum FROM schema_versions WHERE version = %s",
                                     (SCHEMA_VERSION,)).fetchone() or (None,))
        if newest != SCHEMA_VERSION:
            return False, f"newest version is {newest!r}, expected {SCHEMA_VERSION}"
        if stored != schema_checksum():
            return False, f"version {SCHEMA_VERSION} present but checksum {stored!r} != sql/schema.sql"
        return True, f"{SCHEMA_VERSION}, checksum matches sql/schema.sql"

    run("connection", server)
    run("gate tables", tables)
    run("table count", table_count)
    run("named triggers", triggers)
    run("trigger patterns", pattern_triggers)
    run("INV-1 probe", inv1_probe)
    run("schema version", version)
    return checks


def _inv1_probe(conn: psycopg.Connection[Any]) -> tuple[bool, str]:
    """Insert XP against a PENDING escrow inside a transaction that is always rolled back."""

    class _Rollback(Exception):
        pass

    outcome: tuple[bool, str] = (False, "XP insert on a PENDING escrow was accepted: INV-1 is not enforced")
    try:
        with conn.transaction():
            user = _first(conn.execute(
                "INSERT INTO users (email, full_name) VALUES ('inv1-probe@hustlexp.invalid', 'probe') "
                "RETURNING id").fetchone())
            worker = _first(conn.execute(
                "INSERT INTO users (email, full_name) VALUES ('inv1-worker@hustlexp.invalid', 'probe') "
                "RETURNING id").fetchone())
            task = _first(conn.execute(
                "INSERT INTO tasks (poster_id, worker_id, title, description, price, state) "
                "VALUES (%s, %s, 'probe', 'probe', 500, 'ACCEPTED') RETURNING id", (user, worker)).fetchone())
            escrow = _first(conn.execute(
                "INSERT INTO escrows (task_id, amount) VALUES (%s, 500) RETURNING id", (task,)).fetchone())
            try:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO xp_ledger (user_id, task_id, escrow_id, base_xp, effective_xp, "
                        "user_xp_before, user_xp_after, user_level_before, user_level_after, "
                        "user_streak_at_award) VALUES (%s, %s, %s, 5, 5, 0, 5, 1, 1, 0)",
                        (worker, task, escrow))
            except psycopg.Error as exc:
                ok = exc.sqlstate == "HX101"
                outcome = (ok, f"XP on a PENDING escrow refused with SQLSTATE {exc.sqlstate}"
                           + ("" if ok else " (expected HX101)") + "; probe rolled back")
            raise _Rollback
    except _Rollback:
        pass
    return outcome


def checks_as_dicts(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]


def _first(row: Any) -> Any:
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
