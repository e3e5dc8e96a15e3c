"""Every trust tier change is logged by trust_tier_audit and only by it: one trust_ledger row
per changed user, described by the transaction-local hustlexp.trust_* settings."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests import factories as f


def ledger(conn: f.Conn, user_id: object) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT user_id, old_tier, new_tier, reason, reason_details, task_id, dispute_id, changed_by "
        "FROM trust_ledger WHERE user_id = %s ORDER BY changed_at, id", (user_id,)).fetchall()


def describe(conn: f.Conn, **settings: str) -> None:
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, true)", (f"hustlexp.trust_{name}", value))


def test_trust_update_writes_one_direct_system_row(conn):
    user_id = f.user(conn)
    f.trust_change(conn, user_id, 2)
    assert ledger(conn, user_id) == [{
        "user_id": user_id, "old_tier": 1, "new_tier": 2, "reason": "direct_update", "reason_details": None,
        "task_id": None, "dispute_id": None, "changed_by": "system"}]


@pytest.mark.parametrize(("old", "new"), [(1, 3), (3, 1), (2, 4), (4, 1)])
def test_trust_update_records_old_and_new_tier(conn, old, new):
    user_id = f.user(conn, trust_tier=old)
    f.trust_change(conn, user_id, new)
    rows = ledger(conn, user_id)
    assert [(r["old_tier"], r["new_tier"]) for r in rows] == [(old, new)]


def test_trust_update_records_transaction_local_description(conn):
    ids = f.task_in(conn, "COMPLETED")
    admin = f.user(conn)
    dispute_id = "11111111-1111-1111-1111-111111111111"
    with conn.transaction():
        describe(conn, reason="PROMOTION", actor=f"admin:{admin}", task_id=str(ids["task"]),
                 dispute_id=dispute_id, details='{"completed": 5}')
        f.trust_change(conn, ids["worker"], 2)
    [row] = ledger(conn, ids["worker"])
    assert row["reason"] == "PROMOTION"
    assert row["changed_by"] == f"admin:{admin}"
    assert row["task_id"] == ids["task"]
    assert str(row["dispute_id"]) == dispute_id
    assert row["reason_details"] == {"completed": 5}


def test_trust_description_does_not_outlive_its_transaction(conn):
    user_id = f.user(conn)
    with conn.transaction():
        describe(conn, reason="PENALTY", actor="system:sla")
        f.trust_change(conn, user_id, 2)
    f.trust_change(conn, user_id, 3)
    assert [(r["reason"], r["changed_by"]) for r in ledger(conn, user_id)] == [
        ("PENALTY", "system:sla"), ("direct_update", "system")]


@pytest.mark.parametrize("statement", [
    "UPDATE users SET trust_tier = trust_tier WHERE id = %s",
    "UPDATE users SET full_name = 'Renamed' WHERE id = %s",
    "UPDATE users SET xp_total = 100, current_level = 2 WHERE id = %s",
])
def test_update_not_changing_the_tier_writes_nothing(conn, statement):
    user_id = f.user(conn)
    conn.execute(statement, (user_id,))
    assert ledger(conn, user_id) == []


def test_trust_update_of_many_users_writes_one_row_each(conn):
    users = [f.user(conn) for _ in range(3)]
    bystander = f.user(conn, trust_tier=2)
    conn.execute("UPDATE users SET trust_tier = 2 WHERE id = ANY(%s)", ([*users, bystander],))
    assert [len(ledger(conn, u)) for u in users] == [1, 1, 1]
    assert ledger(conn, bystander) == []


def test_rolled_back_tier_change_leaves_no_row(conn):
    user_id = f.user(conn)
    with pytest.raises(psycopg.Error) as ei, conn.transaction():
        f.trust_change(conn, user_id, 2)
        f.trust_change(conn, user_id, 5)
    assert ei.value.sqlstate == "23514"
    assert ledger(conn, user_id) == []


def test_trust_ledger_rows_cannot_be_forged_or_erased(conn):
    user_id = f.user(conn)
    f.trust_change(conn, user_id, 2)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE trust_ledger SET changed_by = 'admin:someone' WHERE user_id = %s", (user_id,))
    assert ei.value.sqlstate == "HX801"
    assert ledger(conn, user_id)[0]["changed_by"] == "system"


def test_bad_description_aborts_the_tier_change(conn):
    # A malformed task id setting fails the audit insert, so the tier change cannot land unlogged.
    user_id = f.user(conn)
    with pytest.raises(psycopg.Error) as ei, conn.transaction():
        describe(conn, task_id="not-a-uuid")
        f.trust_change(conn, user_id, 2)
    assert ei.value.sqlstate == "22P02"
    assert conn.execute("SELECT trust_tier FROM users WHERE id = %s", (user_id,)).fetchone()["trust_tier"] == 1
    assert ledger(conn, user_id) == []

