"""Ledgers only grow: xp_ledger (HX102), badges (HX401), trust_ledger and admin_actions (HX801)
refuse UPDATE, DELETE and TRUNCATE; money_outbox rows are never deleted (HX202)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests import factories as f


def xp_ledger_row(conn: f.Conn) -> Any:
    return f.xp_row(conn, f.completed_task(conn))


def badge_row(conn: f.Conn) -> Any:
    return f.badge(conn, f.user(conn))


def trust_ledger_row(conn: f.Conn) -> Any:
    user_id = f.user(conn)
    f.trust_change(conn, user_id, 2)
    return f.one(conn, "SELECT id FROM trust_ledger WHERE user_id = %s", (user_id,))["id"]


def admin_actions_row(conn: f.Conn) -> Any:
    return f.admin_action(conn)


LEDGERS = {
    "xp_ledger": (xp_ledger_row, "HX102", "reason = 'edited'"),
    "badges": (badge_row, "HX401", "badge_tier = 4"),
    "trust_ledger": (trust_ledger_row, "HX801", "new_tier = 4"),
    "admin_actions": (admin_actions_row, "HX801", "result = 'edited'"),
}


def table_rows(conn: f.Conn, table: str) -> list[dict[str, Any]]:
    return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(table))).fetchall()


@pytest.mark.parametrize("table", LEDGERS)
def test_append_only_refuses_delete(conn, table):
    make, code, _ = LEDGERS[table]
    row_id = make(conn)
    before = table_rows(conn, table)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(table)), (row_id,))
    assert ei.value.sqlstate == code
    assert table_rows(conn, table) == before


@pytest.mark.parametrize("table", LEDGERS)
def test_append_only_refuses_update(conn, table):
    make, code, change = LEDGERS[table]
    row_id = make(conn)
    before = table_rows(conn, table)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), sql.SQL(change)),
                     (row_id,))
    assert ei.value.sqlstate == code
    assert table_rows(conn, table) == before


@pytest.mark.parametrize("table", LEDGERS)
def test_append_only_refuses_truncate(conn, table):
    make, code, _ = LEDGERS[table]
    make(conn)
    before = table_rows(conn, table)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    assert ei.value.sqlstate == code
    assert table_rows(conn, table) == before


@pytest.mark.parametrize("table", LEDGERS)
def test_append_only_refuses_truncate_of_an_empty_ledger(conn, table):
    # Statement-level: the guard does not depend on there being rows to lose.
    _, code, _ = LEDGERS[table]
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    assert ei.value.sqlstate == code


def test_badge_animation_may_be_confirmed_once(conn):
    badge_id = badge_row(conn)
    conn.execute("UPDATE badges SET animation_shown_at = now() WHERE id = %s", (badge_id,))
    shown = conn.execute("SELECT animation_shown_at FROM badges WHERE id = %s", (badge_id,)).fetchone()
    assert shown["animation_shown_at"] is not None
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE badges SET animation_shown_at = now() + interval '1 day' WHERE id = %s",
                     (badge_id,))
    assert ei.value.sqlstate == "HX401"
    assert conn.execute("SELECT animation_shown_at FROM badges WHERE id = %s", (badge_id,)).fetchone() == shown


def test_badge_animation_cannot_be_unset(conn):
    badge_id = f.badge(conn, f.user(conn), animation_shown_at="2026-01-01T00:00:00Z")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE badges SET animation_shown_at = NULL WHERE id = %s", (badge_id,))
    assert ei.value.sqlstate == "HX401"


def test_badge_animation_confirmation_cannot_smuggle_other_changes(conn):
    badge_id = badge_row(conn)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE badges SET animation_shown_at = now(), badge_tier = 4 WHERE id = %s", (badge_id,))
    assert ei.value.sqlstate == "HX401"
    row = conn.execute("SELECT badge_tier, animation_shown_at FROM badges WHERE id = %s", (badge_id,)).fetchone()
    assert row == {"badge_tier": 1, "animation_shown_at": None}


def test_money_outbox_refuses_delete(conn):
    ids = f.escrow_in(conn, "RELEASED")
    row_id = f.outbox(conn, ids["escrow"], "TRANSFER", 3825)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("DELETE FROM money_outbox WHERE id = %s", (row_id,))
    assert ei.value.sqlstate == "HX202"
    assert conn.execute("SELECT count(*) AS n FROM money_outbox").fetchone()["n"] == 1
