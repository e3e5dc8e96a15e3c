"""INV-4: an escrow is created for exactly its task's price (HX003) and its amount never
changes afterwards, in any state (HX004)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f

ALL_STATES = ["PENDING", "FUNDED", "LOCKED_DISPUTE", "RELEASED", "REFUNDED", "REFUND_PARTIAL"]
PRICE = 4500


def amount_of(conn: f.Conn, escrow_id: object) -> int:
    return f.one(conn, "SELECT amount FROM escrows WHERE id = %s", (escrow_id,))["amount"]


@pytest.mark.parametrize("new_amount", [PRICE + 1, PRICE - 1, 0], ids=["plus1", "minus1", "zero"])
@pytest.mark.parametrize("state", ALL_STATES)
def test_inv4_refuses_amount_change(conn, state, new_amount):
    ids = f.escrow_in(conn, state, price=PRICE)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET amount = %s WHERE id = %s", (new_amount, ids["escrow"]))
    # escrow_amount_immutable fires before the terminal guard and the amount CHECK.
    assert ei.value.sqlstate == "HX004"
    assert amount_of(conn, ids["escrow"]) == PRICE


def test_inv4_refuses_amount_change_riding_on_a_legal_state_move(conn):
    ids = f.escrow_in(conn, "PENDING")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET state = 'FUNDED', amount = amount * 2 WHERE id = %s", (ids["escrow"],))
    assert ei.value.sqlstate == "HX004"
    row = conn.execute("SELECT state, amount FROM escrows WHERE id = %s", (ids["escrow"],)).fetchone()
    assert row == {"state": "PENDING", "amount": PRICE}


@pytest.mark.parametrize("state", ["PENDING", "FUNDED"])
def test_inv4_task_price_is_frozen_once_escrowed(conn, state):
    ids = f.escrow_in(conn, state)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET price = 6000 WHERE id = %s", (ids["task"],))
    assert ei.value.sqlstate == "HX004"
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET amount = 6000 WHERE id = %s", (ids["escrow"],))
    assert ei.value.sqlstate == "HX004"
    assert amount_of(conn, ids["escrow"]) == PRICE
    assert f.one(conn, "SELECT price FROM tasks WHERE id = %s", (ids["task"],))["price"] == PRICE


def test_price_of_a_task_without_escrow_may_change(conn):
    task_id = f.task(conn, price=PRICE)
    conn.execute("UPDATE tasks SET price = 6000 WHERE id = %s", (task_id,))
    assert f.one(conn, "SELECT price FROM tasks WHERE id = %s", (task_id,))["price"] == 6000


def test_inv4_allows_rewriting_the_same_amount(conn):
    ids = f.escrow_in(conn, "FUNDED")
    conn.execute("UPDATE escrows SET amount = %s, stripe_payment_intent_id = 'pi_1' WHERE id = %s",
                 (PRICE, ids["escrow"]))
    assert amount_of(conn, ids["escrow"]) == PRICE


@pytest.mark.parametrize("amount", [PRICE + 1, PRICE - 1, PRICE * 2, 500], ids=["plus1", "minus1", "double", "min"])
def test_inv4_refuses_escrow_amount_other_than_task_price(conn, amount):
    task_id = f.task(conn, price=PRICE)
    with pytest.raises(psycopg.Error) as ei:
        f.escrow(conn, task_id, amount=amount)
    assert ei.value.sqlstate == "HX003"
    assert conn.execute("SELECT count(*) AS n FROM escrows").fetchone()["n"] == 0


def test_inv4_refuses_escrow_for_a_missing_task(conn):
    with pytest.raises(psycopg.Error) as ei:
        f.escrow(conn, "00000000-0000-0000-0000-000000000000", amount=PRICE)
    assert ei.value.sqlstate == "HX003"


@pytest.mark.parametrize("price", [500, 4500, 99999])
def test_inv4_accepts_escrow_for_exactly_the_price(conn, price):
    escrow_id = f.escrow(conn, f.task(conn, price=price), amount=price)
    assert amount_of(conn, escrow_id) == price
