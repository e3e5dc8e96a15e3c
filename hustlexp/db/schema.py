"""The schema gate (B001-B005) as code: `hustlexp db verify` and its checks. Installing and
migrating live in migrations.py."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from hustlexp.db import migrations
from hustlexp.db.migrations import NEWEST_VERSION_SQL, PUBLIC_TABLES_SQL, first_value

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

# The production verification queries (spec/api.md §8; scripts/verify-production.sql).
PATTERN_TRIGGERS_SQL = """
    SELECT count(*) AS n FROM pg_trigger
     WHERE NOT tgisinternal
       AND (tgname LIKE '%guard%' OR tgname LIKE '%immutable%'
            OR tgname LIKE '%requires%' OR tgname LIKE '%no_delete%')"""
__all__ = ["NEWEST_VERSION_SQL", "PATTERN_TRIGGERS_SQL", "PUBLIC_TABLES_SQL", "Check", "verify"]


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
        present = {first_value(r) for r in rows}
        missing = [t for t in GATE_TABLES if t not in present]
        return not missing, f"{len(GATE_TABLES) - len(missing)}/{len(GATE_TABLES)} gate tables" + (
            f"; missing {', '.join(missing)}" if missing else "")

    def table_count() -> tuple[bool, str]:
        n = first_value(conn.execute(PUBLIC_TABLES_SQL).fetchone())
        return n >= 18, f"{n} tables in public (need >= 18)"

    def triggers() -> tuple[bool, str]:
        rows = conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()
        present = {first_value(r) for r in rows}
        missing = [t for t in GATE_TRIGGERS if t not in present]
        return not missing, f"{len(GATE_TRIGGERS) - len(missing)}/{len(GATE_TRIGGERS)} named triggers, " \
            f"{len(present)} in all" + (f"; missing {', '.join(missing)}" if missing else "")

    def pattern_triggers() -> tuple[bool, str]:
        n = first_value(conn.execute(PATTERN_TRIGGERS_SQL).fetchone())
        return n >= 10, f"{n} guard/immutable/requires/no_delete triggers (need >= 10)"

    def inv1_probe() -> tuple[bool, str]:
        return _inv1_probe(conn)

    def version() -> tuple[bool, str]:
        st = migrations.status(conn)
        if st.state == "current":
            return True, f"{st.current} (this build's newest), {len(st.applied)} versions recorded, checksums match"
        if st.state == "behind":
            pending = ", ".join(f"{s.version} ({s.file})" for s in st.pending)
            return False, f"{st.current} recorded, {st.head} expected; pending: {pending}; run `hustlexp db migrate`"
        return False, st.refusal() or "no schema installed; run `hustlexp db init`"

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
            user = first_value(conn.execute(
                "INSERT INTO users (email, full_name) VALUES ('inv1-probe@hustlexp.invalid', 'probe') "
                "RETURNING id").fetchone())
            worker = first_value(conn.execute(
                "INSERT INTO users (email, full_name) VALUES ('inv1-worker@hustlexp.invalid', 'probe') "
                "RETURNING id").fetchone())
            task = first_value(conn.execute(
                "INSERT INTO tasks (poster_id, worker_id, title, description, price, state) "
                "VALUES (%s, %s, 'probe', 'probe', 500, 'ACCEPTED') RETURNING id", (user, worker)).fetchone())
            escrow = first_value(conn.execute(
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
