"""Money goes back only from a task that ended without completion, an accepted proof stays
accepted, and neither INV-3 nor the outbox can be dodged by a clever statement
(HX203, HX301, HX202, 23514)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


@pytest.mark.parametrize("task_state", ["OPEN", "ACCEPTED", "PROOF_SUBMITTED", "COMPLETED"])
def test_refund_while_task_is_live_or_completed_is_hx203(conn, task_state):
    ids = f.task_in(conn, task_state)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET state = 'REFUNDED', refunded_at = now() WHERE id = %s", (ids["escrow"],))
    assert ei.value.sqlstate == "HX203"
    assert f.one(conn, "SELECT state FROM escrows WHERE id = %s", (ids["escrow"],))["state"] == "FUNDED"


@pytest.mark.parametrize("task_state", ["CANCELLED", "EXPIRED"])
def test_refund_after_cancel_or_expiry_succeeds(conn, task_state):
    ids = f.task_in(conn, task_state)
    conn.execute("UPDATE escrows SET state = 'REFUNDED', refunded_at = now() WHERE id = %s", (ids["escrow"],))
    assert f.one(conn, "SELECT state FROM escrows WHERE id = %s", (ids["escrow"],))["state"] == "REFUNDED"


def test_disputed_escrow_is_not_split_while_the_task_is_disputed(conn):
    ids = f.task_in(conn, "DISPUTED")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET state = 'REFUND_PARTIAL', release_amount = 2250, refund_amount = 2250 "
                     "WHERE id = %s", (ids["escrow"],))
    assert ei.value.sqlstate == "HX203"


def test_switching_requires_proof_off_does_not_dodge_inv3(conn):
    ids = f.task_in(conn, "PROOF_SUBMITTED")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET requires_proof = false, state = 'COMPLETED' WHERE id = %s", (ids["task"],))
    assert ei.value.sqlstate == "HX301"
    assert f.one(conn, "SELECT state, requires_proof FROM tasks WHERE id = %s", (ids["task"],)) == \
        {"state": "PROOF_SUBMITTED", "requires_proof": True}


@pytest.mark.parametrize("new_state", ["REJECTED", "SUBMITTED", "EXPIRED", "PENDING"])
def test_accepted_proof_stays_accepted(conn, new_state):
    ids = f.task_in(conn, "COMPLETED")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE proofs SET state = %s, rejection_reason = 'late change' WHERE id = %s",
                     (new_state, ids["proof"]))
    assert ei.value.sqlstate == "HX301"


def test_refund_row_for_an_escrow_never_paid_is_hx202(conn):
    poster = f.user(conn)
    task_id = f.task(conn, poster, state="CANCELLED")
    escrow_id = f.escrow(conn, task_id, state="REFUNDED")
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, escrow_id, "REFUND", 4500)
    assert ei.value.sqlstate == "HX202"
    f.outbox(conn, escrow_id, "CANCEL_INTENT", 0)  # closing the unpaid intent is fine


def test_truncating_the_outbox_is_hx202(conn):
    ids = f.escrow_in(conn, "RELEASED")
    f.outbox(conn, ids["escrow"], "TRANSFER", 3825)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("TRUNCATE money_outbox")
    assert ei.value.sqlstate == "HX202"
    assert f.one(conn, "SELECT count(*) AS n FROM money_outbox", ())["n"] == 1


@pytest.mark.parametrize("message_type", ["TEXT", "AUTO"])
def test_text_message_without_content_is_23514(conn, message_type):
    ids = f.task_in(conn, "ACCEPTED")
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], ids["poster"], ids["worker"], message_type=message_type, content=None)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "task_messages_text_has_content"
