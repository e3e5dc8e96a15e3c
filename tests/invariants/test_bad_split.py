"""A split escrow (REFUND_PARTIAL) names both shares and they add up to the amount
(CHECK escrow_partial_sum_check -> 23514)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f

PRICE = 4500


def split(conn: f.Conn, escrow_id: object, refund: int | None, release: int | None) -> None:
    """What a SPLIT ruling writes: the task is cancelled, then the escrow split."""
    conn.execute("UPDATE tasks SET state = 'CANCELLED', cancelled_at = now() WHERE state <> 'CANCELLED' "
                 "AND id = (SELECT task_id FROM escrows WHERE id = %s)", (escrow_id,))
    conn.execute("UPDATE escrows SET state = 'REFUND_PARTIAL', refund_amount = %s, release_amount = %s "
                 "WHERE id = %s", (refund, release, escrow_id))


def escrow_row(conn: f.Conn, escrow_id: object) -> dict[str, object]:
    return f.one(conn, "SELECT state, refund_amount, release_amount FROM escrows WHERE id = %s",
                 (escrow_id,))


@pytest.mark.parametrize(("refund", "release"), [
    (None, None), (None, PRICE), (PRICE, None), (2000, 2000), (2500, 2500), (0, 0), (PRICE, 1),
], ids=["both-missing", "refund-missing", "release-missing", "short", "over", "zero", "over-by-one"])
def test_bad_split_refused(conn, refund, release):
    ids = f.escrow_in(conn, "LOCKED_DISPUTE", price=PRICE)
    with pytest.raises(psycopg.Error) as ei:
        split(conn, ids["escrow"], refund, release)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "escrow_partial_sum_check"
    assert escrow_row(conn, ids["escrow"]) == {"state": "LOCKED_DISPUTE", "refund_amount": None,
                                               "release_amount": None}


def test_bad_split_negative_share_refused_by_its_own_check(conn):
    ids = f.escrow_in(conn, "LOCKED_DISPUTE", price=PRICE)
    with pytest.raises(psycopg.Error) as ei:
        split(conn, ids["escrow"], PRICE + 100, -100)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "escrows_release_amount_check"


def test_bad_split_refused_on_an_escrow_born_split(conn):
    task_id = f.task(conn, price=PRICE, state="CANCELLED")
    with pytest.raises(psycopg.Error) as ei:
        f.escrow(conn, task_id, state="REFUND_PARTIAL", refund_amount=1000, release_amount=1000)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "escrow_partial_sum_check"


@pytest.mark.parametrize(("refund", "release"), [(2250, 2250), (45, 4455), (4455, 45), (1, PRICE - 1)])
def test_correct_split_accepted(conn, refund, release):
    ids = f.escrow_in(conn, "LOCKED_DISPUTE", price=PRICE)
    split(conn, ids["escrow"], refund, release)
    assert escrow_row(conn, ids["escrow"]) == {"state": "REFUND_PARTIAL", "refund_amount": refund,
                                               "release_amount": release}


def test_shares_outside_a_split_are_not_summed(conn):
    # Only REFUND_PARTIAL is bound by the sum; a full refund may record its refund alone.
    ids = f.escrow_in(conn, "FUNDED", price=PRICE)
    conn.execute("UPDATE tasks SET state = 'CANCELLED' WHERE id = %s", (ids["task"],))
    conn.execute("UPDATE escrows SET state = 'REFUNDED', refund_amount = %s WHERE id = %s",
                 (PRICE, ids["escrow"]))
    assert escrow_row(conn, ids["escrow"])["state"] == "REFUNDED"
