"""INV-5: one XP award per escrow, ever (UNIQUE xp_ledger_escrow_unique -> 23505)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def xp_rows(conn: f.Conn, escrow_id: object) -> list[dict[str, object]]:
    return conn.execute("SELECT effective_xp FROM xp_ledger WHERE escrow_id = %s", (escrow_id,)).fetchall()


@pytest.mark.parametrize("cols", [
    {},
    {"base_xp": 90, "effective_xp": 90, "user_xp_after": 90},
    {"reason": "manual_retry"},
    {"user_xp_before": 45, "user_xp_after": 90},
], ids=["identical", "bigger", "other-reason", "stacked"])
def test_inv5_refuses_second_award_for_one_escrow(conn, cols):
    ids = f.completed_task(conn)
    f.xp_row(conn, ids)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids, **cols)
    assert ei.value.sqlstate == "23505"
    assert ei.value.diag.constraint_name == "xp_ledger_escrow_unique"
    assert xp_rows(conn, ids["escrow"]) == [{"effective_xp": 45}]


def test_inv5_refuses_two_awards_in_one_statement(conn):
    ids = f.completed_task(conn)
    row = (ids["worker"], ids["task"], ids["escrow"])
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(
            "INSERT INTO xp_ledger (user_id, task_id, escrow_id, base_xp, effective_xp, user_xp_before, "
            "user_xp_after, user_level_before, user_level_after, user_streak_at_award) "
            "VALUES (%s, %s, %s, 45, 45, 0, 45, 1, 1, 0), (%s, %s, %s, 45, 45, 45, 90, 1, 1, 0)", row + row)
    assert ei.value.sqlstate == "23505"
    assert xp_rows(conn, ids["escrow"]) == []


def test_inv5_repeat_award_with_on_conflict_returns_nothing(conn):
    ids = f.completed_task(conn)
    first = f.xp_row(conn, ids)
    again = conn.execute(
        "INSERT INTO xp_ledger (user_id, task_id, escrow_id, base_xp, effective_xp, user_xp_before, "
        "user_xp_after, user_level_before, user_level_after, user_streak_at_award) "
        "VALUES (%s, %s, %s, 45, 45, 45, 90, 1, 1, 0) "
        "ON CONFLICT ON CONSTRAINT xp_ledger_escrow_unique DO NOTHING RETURNING id",
        (ids["worker"], ids["task"], ids["escrow"])).fetchall()
    assert again == []
    assert conn.execute("SELECT id FROM xp_ledger").fetchall() == [{"id": first}]


def test_inv5_second_award_for_a_stranger_is_refused_by_inv1_first(conn):
    ids = f.completed_task(conn)
    f.xp_row(conn, ids)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids, user_id=f.user(conn))
    assert ei.value.sqlstate == "HX101"


def test_inv5_each_escrow_gets_its_own_award(conn):
    first = f.completed_task(conn)
    f.xp_row(conn, first)
    second = f.completed_task(conn)
    f.xp_row(conn, second, user_xp_before=0, user_xp_after=45)
    assert len(xp_rows(conn, first["escrow"])) == 1
    assert len(xp_rows(conn, second["escrow"])) == 1
