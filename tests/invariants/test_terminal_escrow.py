"""An escrow in RELEASED, REFUNDED or REFUND_PARTIAL keeps its state, task, and split
amounts forever (escrow_terminal_guard, HX002); Stripe ids and timestamps stay writable."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests import factories as f

TERMINAL = ["RELEASED", "REFUNDED", "REFUND_PARTIAL"]
FROZEN = ["state", "task_id", "refund_amount", "release_amount"]


def snapshot(conn: f.Conn, escrow_id: object) -> dict[str, Any]:
    return f.one(conn, "SELECT state, amount, task_id, refund_amount, release_amount FROM escrows "
                 "WHERE id = %s", (escrow_id,))


def set_column(conn: f.Conn, escrow_id: object, column: str, value: Any) -> None:
    conn.execute(sql.SQL("UPDATE escrows SET {} = %s WHERE id = %s").format(sql.Identifier(column)),
                 (value, escrow_id))


@pytest.mark.parametrize("target", ["PENDING", "FUNDED", "LOCKED_DISPUTE"])
@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_escrow_refuses_reopening(conn, state, target):
    ids = f.escrow_in(conn, state)
    before = snapshot(conn, ids["escrow"])
    with pytest.raises(psycopg.Error) as ei:
        set_column(conn, ids["escrow"], "state", target)
    assert ei.value.sqlstate == "HX002"
    assert snapshot(conn, ids["escrow"]) == before


@pytest.mark.parametrize(("state", "target"), [
    ("RELEASED", "REFUNDED"), ("RELEASED", "REFUND_PARTIAL"), ("REFUNDED", "REFUND_PARTIAL"),
    ("REFUND_PARTIAL", "REFUNDED"),
])
def test_terminal_escrow_refuses_move_to_another_terminal_state(conn, state, target):
    ids = f.escrow_in(conn, state)
    before = snapshot(conn, ids["escrow"])
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET state = %s, refund_amount = 1000, release_amount = 3500 "
                     "WHERE id = %s", (target, ids["escrow"]))
    assert ei.value.sqlstate == "HX002"
    assert snapshot(conn, ids["escrow"]) == before


@pytest.mark.parametrize("state", ["REFUNDED", "REFUND_PARTIAL"])
def test_refunded_escrow_to_released_is_refused_by_inv2_first(conn, state):
    # escrow_released_requires_completed_task sorts before escrow_terminal_guard; the task is CANCELLED.
    ids = f.escrow_in(conn, state)
    with pytest.raises(psycopg.Error) as ei:
        set_column(conn, ids["escrow"], "state", "RELEASED")
    assert ei.value.sqlstate == "HX201"


@pytest.mark.parametrize("column", ["task_id", "refund_amount", "release_amount"])
@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_escrow_refuses_change_of_frozen_column(conn, state, column):
    ids = f.escrow_in(conn, state)
    before = snapshot(conn, ids["escrow"])
    value: Any = f.task(conn) if column == "task_id" else (before[column] or 0) + 100
    with pytest.raises(psycopg.Error) as ei:
        set_column(conn, ids["escrow"], column, value)
    assert ei.value.sqlstate == "HX002"
    assert snapshot(conn, ids["escrow"]) == before


def test_refund_partial_escrow_refuses_rebalancing_the_split(conn):
    ids = f.escrow_in(conn, "REFUND_PARTIAL")
    before = snapshot(conn, ids["escrow"])
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET refund_amount = refund_amount - 100, "
                     "release_amount = release_amount + 100 WHERE id = %s", (ids["escrow"],))
    assert ei.value.sqlstate == "HX002"
    assert snapshot(conn, ids["escrow"]) == before


@pytest.mark.parametrize(("column", "value"), [
    ("stripe_transfer_id", "tr_123"), ("stripe_refund_id", "re_123"), ("stripe_payment_intent_id", "pi_123"),
    ("released_at", "2026-02-01T00:00:00Z"), ("refunded_at", "2026-02-01T00:00:00Z"),
    ("funded_at", "2026-01-01T00:00:00Z"),
])
@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_escrow_keeps_stripe_ids_and_timestamps_writable(conn, state, column, value):
    ids = f.escrow_in(conn, state)
    before = snapshot(conn, ids["escrow"])
    set_column(conn, ids["escrow"], column, value)
    row = conn.execute(sql.SQL("SELECT {} = %s AS written FROM escrows WHERE id = %s").format(
        sql.Identifier(column)), (value, ids["escrow"])).fetchone()
    assert row["written"] is True
    assert snapshot(conn, ids["escrow"]) == before


@pytest.mark.parametrize("state", ["PENDING", "FUNDED", "LOCKED_DISPUTE"])
def test_open_escrow_may_still_move(conn, state):
    ids = f.escrow_in(conn, state)
    conn.execute("UPDATE tasks SET state = 'CANCELLED' WHERE id = %s", (ids["task"],))
    set_column(conn, ids["escrow"], "state", "REFUNDED")
    assert snapshot(conn, ids["escrow"])["state"] == "REFUNDED"
