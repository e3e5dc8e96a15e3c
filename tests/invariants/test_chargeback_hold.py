"""A chargeback hold is the last guard over disputed money (escrow_chargeback_guard and
money_outbox_held_escrow_guard, HX204): a held escrow is never released nor refunded, no
transfer or refund of it is written or claimed for sending, and a lost chargeback's hold is
permanent. A buggy service issuing the SQL directly gets the same refusal."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def _hold(conn, escrow_id, hold="CHARGEBACK"):
    conn.execute("UPDATE escrows SET chargeback_hold = %s WHERE id = %s", (hold, escrow_id))


def _refused(conn, query, params):
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(query, params)
    return ei.value.sqlstate


def _escrow(conn, escrow_id):
    return f.one(conn, "SELECT state, chargeback_hold FROM escrows WHERE id = %s", (escrow_id,))


@pytest.mark.parametrize("hold", ["CHARGEBACK", "CHARGEBACK_LOST"])
def test_held_escrow_of_a_completed_task_is_never_released(conn, hold):
    ids = f.task_in(conn, "COMPLETED")
    _hold(conn, ids["escrow"], hold)
    assert _refused(conn, "UPDATE escrows SET state = 'RELEASED', released_at = now() WHERE id = %s",
                    (ids["escrow"],)) == "HX204"
    assert _escrow(conn, ids["escrow"]) == {"state": "FUNDED", "chargeback_hold": hold}


@pytest.mark.parametrize("hold", ["CHARGEBACK", "CHARGEBACK_LOST"])
@pytest.mark.parametrize("task_state", ["CANCELLED", "EXPIRED"])
def test_held_escrow_of_an_ended_task_is_never_refunded(conn, hold, task_state):
    ids = f.task_in(conn, task_state)
    _hold(conn, ids["escrow"], hold)
    assert _refused(conn, "UPDATE escrows SET state = 'REFUNDED', refunded_at = now() WHERE id = %s",
                    (ids["escrow"],)) == "HX204"
    assert _refused(conn, """UPDATE escrows SET state = 'REFUND_PARTIAL', release_amount = 2000,
                             refund_amount = 2500 WHERE id = %s""", (ids["escrow"],)) == "HX204"
    assert _escrow(conn, ids["escrow"])["state"] == "FUNDED"


def test_holding_and_releasing_in_one_statement_is_refused(conn):
    ids = f.task_in(conn, "COMPLETED")
    assert _refused(conn, """UPDATE escrows SET state = 'RELEASED', released_at = now(),
                             chargeback_hold = 'CHARGEBACK' WHERE id = %s""", (ids["escrow"],)) == "HX204"
    assert _escrow(conn, ids["escrow"]) == {"state": "FUNDED", "chargeback_hold": None}


@pytest.mark.parametrize("to", [None, "CHARGEBACK"])
def test_a_lost_chargeback_hold_is_permanent(conn, to):
    ids = f.task_in(conn, "ACCEPTED")
    _hold(conn, ids["escrow"], "CHARGEBACK_LOST")
    assert _refused(conn, "UPDATE escrows SET chargeback_hold = %s WHERE id = %s", (to, ids["escrow"])) == "HX204"
    assert _escrow(conn, ids["escrow"])["chargeback_hold"] == "CHARGEBACK_LOST"


def test_an_open_hold_may_be_lifted_and_the_money_then_moves(conn):
    ids = f.task_in(conn, "COMPLETED")
    _hold(conn, ids["escrow"])
    _hold(conn, ids["escrow"], None)
    conn.execute("UPDATE escrows SET state = 'RELEASED', released_at = now() WHERE id = %s", (ids["escrow"],))
    assert _escrow(conn, ids["escrow"]) == {"state": "RELEASED", "chargeback_hold": None}


@pytest.mark.parametrize("kind, amount", [("TRANSFER", 4500 * 85 // 100), ("REFUND", 4500)])
def test_no_movement_of_a_held_escrow_is_written(conn, kind, amount):
    ids = f.escrow_in(conn, "RELEASED" if kind == "TRANSFER" else "REFUNDED")
    _hold(conn, ids["escrow"])
    assert _refused(conn, """INSERT INTO money_outbox (escrow_id, kind, amount, idempotency_key)
                             VALUES (%s, %s, %s, %s)""", (ids["escrow"], kind, amount, f"k-{ids['escrow']}")) == "HX204"
    assert f.one(conn, "SELECT count(*) AS n FROM money_outbox")["n"] == 0


def test_a_written_transfer_of_a_held_escrow_is_never_claimed(conn):
    ids = f.escrow_in(conn, "RELEASED")
    row = f.outbox(conn, ids["escrow"], "TRANSFER", 4500 * 85 // 100)
    _hold(conn, ids["escrow"])
    assert _refused(conn, """UPDATE money_outbox SET status = 'PROCESSING', attempt_count = attempt_count + 1
                             WHERE id = %s""", (row,)) == "HX204"
    assert f.one(conn, "SELECT status, attempt_count FROM money_outbox WHERE id = %s", (row,)) == \
        {"status": "PENDING", "attempt_count": 0}
    # An attempt already at Stripe may still record its outcome, and a lost hold may cancel it.
    conn.execute("UPDATE money_outbox SET status = 'CANCELLED' WHERE id = %s", (row,))
    assert f.one(conn, "SELECT status FROM money_outbox WHERE id = %s", (row,))["status"] == "CANCELLED"


def test_held_by_chargeback_names_only_money_that_leaves(conn):
    ids = f.escrow_in(conn, "RELEASED")
    _hold(conn, ids["escrow"])
    held = f.one(conn, """SELECT held_by_chargeback(%(e)s, 'TRANSFER') AS transfer,
                                 held_by_chargeback(%(e)s, 'REFUND') AS refund,
                                 held_by_chargeback(%(e)s, 'CANCEL_INTENT') AS cancel""", {"e": ids["escrow"]})
    assert held == {"transfer": True, "refund": True, "cancel": False}


def test_unknown_hold_is_refused_by_its_check(conn):
    ids = f.task_in(conn, "ACCEPTED")
    assert _refused(conn, "UPDATE escrows SET chargeback_hold = 'FROZEN' WHERE id = %s", (ids["escrow"],)) == "23514"
