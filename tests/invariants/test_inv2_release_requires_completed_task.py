"""INV-2: an escrow becomes RELEASED only when its task is COMPLETED (HX201)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f

NOT_COMPLETED = ["OPEN", "ACCEPTED", "PROOF_SUBMITTED", "DISPUTED", "CANCELLED", "EXPIRED"]


def escrow_state(conn: f.Conn, escrow_id: object) -> str:
    return f.one(conn, "SELECT state FROM escrows WHERE id = %s", (escrow_id,))["state"]


@pytest.mark.parametrize("task_state", NOT_COMPLETED)
def test_inv2_refuses_release_before_completion(conn, task_state):
    ids = f.task_in(conn, task_state)
    before = escrow_state(conn, ids["escrow"])
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET state = 'RELEASED', released_at = now() WHERE id = %s",
                     (ids["escrow"],))
    assert ei.value.sqlstate == "HX201"
    assert escrow_state(conn, ids["escrow"]) == before


def test_inv2_refuses_release_of_an_unfunded_escrow_on_an_open_task(conn):
    ids = f.escrow_in(conn, "PENDING")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET state = 'RELEASED' WHERE id = %s", (ids["escrow"],))
    assert ei.value.sqlstate == "HX201"
    assert escrow_state(conn, ids["escrow"]) == "PENDING"


@pytest.mark.parametrize("task_state", ["OPEN", "ACCEPTED", "PROOF_SUBMITTED", "CANCELLED"])
def test_inv2_refuses_an_escrow_born_released(conn, task_state):
    task_id = f.task(conn, state=task_state, worker_id=f.user(conn))
    with pytest.raises(psycopg.Error) as ei:
        f.escrow(conn, task_id, state="RELEASED", released_at="2026-01-01T00:00:00Z")
    assert ei.value.sqlstate == "HX201"
    assert conn.execute("SELECT count(*) AS n FROM escrows WHERE task_id = %s", (task_id,)).fetchone()["n"] == 0


def test_inv2_another_completed_task_does_not_unlock_release(conn):
    # A completed task elsewhere does not help: the check reads this escrow's own task.
    ids = f.task_in(conn, "PROOF_SUBMITTED")
    f.task_in(conn, "COMPLETED")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE escrows SET state = 'RELEASED' WHERE id = %s", (ids["escrow"],))
    assert ei.value.sqlstate == "HX201"


def test_inv2_allows_release_once_the_task_is_completed(conn):
    ids = f.task_in(conn, "COMPLETED")
    conn.execute("UPDATE escrows SET state = 'RELEASED', released_at = now() WHERE id = %s", (ids["escrow"],))
    assert escrow_state(conn, ids["escrow"]) == "RELEASED"


def test_inv2_allows_release_from_dispute_after_a_worker_win(conn):
    ids = f.task_in(conn, "DISPUTED")
    conn.execute("UPDATE proofs SET state = 'ACCEPTED' WHERE id = %s", (ids["proof"],))
    conn.execute("UPDATE tasks SET state = 'COMPLETED', completed_at = now() WHERE id = %s", (ids["task"],))
    conn.execute("UPDATE escrows SET state = 'RELEASED' WHERE id = %s", (ids["escrow"],))
    assert escrow_state(conn, ids["escrow"]) == "RELEASED"


def test_inv2_allows_an_escrow_born_released_on_a_completed_task(conn):
    task_id = f.task(conn, requires_proof=False)
    worker = f.user(conn)
    conn.execute("UPDATE tasks SET state = 'ACCEPTED', worker_id = %s WHERE id = %s", (worker, task_id))
    conn.execute("UPDATE tasks SET state = 'COMPLETED' WHERE id = %s", (task_id,))
    escrow_id = f.escrow(conn, task_id, state="RELEASED")
    assert escrow_state(conn, escrow_id) == "RELEASED"


def test_inv2_released_escrow_keeps_accepting_stripe_ids(conn):
    ids = f.escrow_in(conn, "RELEASED")
    conn.execute("UPDATE escrows SET stripe_transfer_id = 'tr_1' WHERE id = %s", (ids["escrow"],))
    row = conn.execute("SELECT state, stripe_transfer_id FROM escrows WHERE id = %s", (ids["escrow"],)).fetchone()
    assert row == {"state": "RELEASED", "stripe_transfer_id": "tr_1"}
