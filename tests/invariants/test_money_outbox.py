"""Money leaves only as it should (money_outbox_requires_matching_escrow, HX202): a transfer of
floor(85 %) from a released escrow, a refund of what a refunded escrow gives back; one movement
of each kind per escrow; a movement is fixed once written and settled once SUCCEEDED."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tests import factories as f

PRICE = 4999  # 85 % is 4249.15: the payout is floored to 4249
PAYOUT = 4249


def outbox_row(conn: f.Conn, row_id: object) -> dict[str, object]:
    return f.one(conn, "SELECT kind, amount, status, idempotency_key FROM money_outbox WHERE id = %s",
                 (row_id,))


def outbox_count(conn: f.Conn) -> int:
    return f.one(conn, "SELECT count(*) AS n FROM money_outbox")["n"]


@pytest.mark.parametrize("state", ["PENDING", "FUNDED", "LOCKED_DISPUTE", "REFUNDED"])
def test_transfer_refused_from_unreleased_escrow(conn, state):
    ids = f.escrow_in(conn, state, price=PRICE)
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, ids["escrow"], "TRANSFER", PAYOUT)
    assert ei.value.sqlstate == "HX202"
    assert outbox_count(conn) == 0


@pytest.mark.parametrize("amount", [PAYOUT + 1, PAYOUT - 1, PRICE, 4250, 0],
                         ids=["plus1", "minus1", "whole", "rounded-up", "zero"])
def test_transfer_of_wrong_amount_refused(conn, amount):
    ids = f.escrow_in(conn, "RELEASED", price=PRICE)
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, ids["escrow"], "TRANSFER", amount)
    assert ei.value.sqlstate == "HX202"
    assert outbox_count(conn) == 0


@pytest.mark.parametrize(("price", "payout"), [(PRICE, PAYOUT), (500, 425), (4500, 3825), (10101, 8585)])
def test_transfer_of_floored_85_percent_accepted(conn, price, payout):
    ids = f.escrow_in(conn, "RELEASED", price=price)
    row_id = f.outbox(conn, ids["escrow"], "TRANSFER", payout, recipient_id=ids["worker"])
    assert outbox_row(conn, row_id) == {"kind": "TRANSFER", "amount": payout, "status": "PENDING",
                                        "idempotency_key": f"transfer:{ids['escrow']}"}


def test_split_transfers_85_percent_of_the_released_share_and_refunds_the_rest(conn):
    ids = f.escrow_in(conn, "REFUND_PARTIAL", price=PRICE)  # release 2499, refund 2500
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, ids["escrow"], "TRANSFER", PAYOUT)
    assert ei.value.sqlstate == "HX202"
    f.outbox(conn, ids["escrow"], "TRANSFER", 2124)
    f.outbox(conn, ids["escrow"], "REFUND", 2500)
    assert outbox_count(conn) == 2


@pytest.mark.parametrize(("state", "amount", "code"), [
    ("RELEASED", PRICE, "HX202"), ("FUNDED", PRICE, "HX202"), ("REFUNDED", PRICE - 1, "HX202"),
    ("REFUNDED", PRICE, None),
])
def test_refund_matches_a_refunded_escrow(conn, state, amount, code):
    ids = f.escrow_in(conn, state, price=PRICE)
    if code is None:
        f.outbox(conn, ids["escrow"], "REFUND", amount)
        assert outbox_count(conn) == 1
        return
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, ids["escrow"], "REFUND", amount)
    assert ei.value.sqlstate == code


def test_second_transfer_for_one_escrow_refused(conn):
    ids = f.escrow_in(conn, "RELEASED", price=PRICE)
    f.outbox(conn, ids["escrow"], "TRANSFER", PAYOUT)
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, ids["escrow"], "TRANSFER", PAYOUT, idempotency_key=f"transfer-retry:{ids['escrow']}")
    assert ei.value.sqlstate == "23505"
    assert ei.value.diag.constraint_name == "money_outbox_one_per_kind"
    assert outbox_count(conn) == 1


def test_reused_idempotency_key_refused(conn):
    first = f.escrow_in(conn, "RELEASED", price=PRICE)
    second = f.escrow_in(conn, "RELEASED", price=PRICE)
    f.outbox(conn, first["escrow"], "TRANSFER", PAYOUT)
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, second["escrow"], "TRANSFER", PAYOUT, idempotency_key=f"transfer:{first['escrow']}")
    assert ei.value.sqlstate == "23505"
    assert ei.value.diag.constraint_name == "money_outbox_idempotency_key_key"


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "FAILED_PERMANENT", "CANCELLED"])
def test_succeeded_movement_cannot_change_status(conn, status):
    ids = f.escrow_in(conn, "RELEASED", price=PRICE)
    row_id = f.outbox(conn, ids["escrow"], "TRANSFER", PAYOUT)
    conn.execute("UPDATE money_outbox SET status = 'PROCESSING', attempt_count = 1 WHERE id = %s", (row_id,))
    conn.execute("UPDATE money_outbox SET status = 'SUCCEEDED', stripe_object_id = 'tr_1', "
                 "completed_at = now() WHERE id = %s", (row_id,))
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE money_outbox SET status = %s WHERE id = %s", (status, row_id))
    assert ei.value.sqlstate == "HX202"
    assert outbox_row(conn, row_id)["status"] == "SUCCEEDED"


@pytest.mark.parametrize(("column", "value"), [
    ("amount", PAYOUT + 1), ("kind", "REFUND"), ("idempotency_key", "transfer:other"),
])
def test_written_movement_is_fixed(conn, column, value):
    ids = f.escrow_in(conn, "RELEASED", price=PRICE)
    row_id = f.outbox(conn, ids["escrow"], "TRANSFER", PAYOUT)
    before = outbox_row(conn, row_id)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(sql.SQL("UPDATE money_outbox SET {} = %s WHERE id = %s").format(sql.Identifier(column)),
                     (value, row_id))
    assert ei.value.sqlstate == "HX202"
    assert outbox_row(conn, row_id) == before


def test_pending_movement_may_be_retried_and_fail(conn):
    ids = f.escrow_in(conn, "RELEASED", price=PRICE)
    row_id = f.outbox(conn, ids["escrow"], "TRANSFER", PAYOUT)
    conn.execute("UPDATE money_outbox SET status = 'PROCESSING', attempt_count = attempt_count + 1, "
                 "last_error = 'card_declined', next_attempt_at = now() + interval '5 minutes' WHERE id = %s",
                 (row_id,))
    conn.execute("UPDATE money_outbox SET status = 'FAILED_PERMANENT' WHERE id = %s", (row_id,))
    assert outbox_row(conn, row_id)["status"] == "FAILED_PERMANENT"


def test_cancel_intent_only_for_a_refunded_escrow_and_for_nothing(conn):
    ids = f.escrow_in(conn, "REFUNDED", price=PRICE)
    with pytest.raises(psycopg.Error) as ei:
        f.outbox(conn, ids["escrow"], "CANCEL_INTENT", PRICE)
    assert ei.value.sqlstate == "HX202"
    f.outbox(conn, ids["escrow"], "CANCEL_INTENT", 0)
    assert outbox_count(conn) == 1
