"""INV-1: XP is written only for a RELEASED escrow, to the worker of that escrow's task (HX101)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def xp_count(conn: f.Conn) -> int:
    return f.one(conn, "SELECT count(*) AS n FROM xp_ledger")["n"]


@pytest.mark.parametrize("state", ["PENDING", "FUNDED", "LOCKED_DISPUTE", "REFUNDED", "REFUND_PARTIAL"])
def test_inv1_refuses_xp_on_unreleased_escrow(conn, state):
    ids = f.escrow_in(conn, state)
    worker = ids["worker"] or f.user(conn)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids | {"worker": worker})
    assert ei.value.sqlstate == "HX101"
    assert xp_count(conn) == 0


def test_inv1_refuses_xp_on_completed_task_whose_escrow_is_still_funded(conn):
    ids = f.completed_task(conn, release=False)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids)
    assert ei.value.sqlstate == "HX101"


@pytest.mark.parametrize("who", ["poster", "stranger"])
def test_inv1_refuses_xp_for_someone_other_than_the_worker(conn, who):
    ids = f.completed_task(conn)
    user_id = ids["poster"] if who == "poster" else f.user(conn)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids, user_id=user_id)
    assert ei.value.sqlstate == "HX101"
    assert xp_count(conn) == 0


def test_inv1_refuses_xp_naming_another_task_than_the_escrows(conn):
    ids = f.completed_task(conn)
    other = f.completed_task(conn)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids, task_id=other["task"])
    assert ei.value.sqlstate == "HX101"


def test_inv1_refuses_xp_for_worker_of_another_released_task(conn):
    ids = f.completed_task(conn)
    other = f.completed_task(conn)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids, user_id=other["worker"])
    assert ei.value.sqlstate == "HX101"


def test_inv1_refuses_xp_for_a_missing_escrow(conn):
    ids = f.completed_task(conn)
    with pytest.raises(psycopg.Error) as ei:
        f.xp_row(conn, ids, escrow_id="00000000-0000-0000-0000-000000000000")
    # The trigger runs before the foreign key is checked, so INV-1 is what answers.
    assert ei.value.sqlstate == "HX101"


def test_inv1_accepts_xp_for_the_worker_of_a_released_escrow(conn):
    ids = f.completed_task(conn)
    xp_id = f.xp_row(conn, ids)
    row = conn.execute("SELECT user_id, task_id, escrow_id, effective_xp FROM xp_ledger WHERE id = %s",
                       (xp_id,)).fetchone()
    assert row == {"user_id": ids["worker"], "task_id": ids["task"], "escrow_id": ids["escrow"],
                   "effective_xp": 45}


def test_inv1_accepts_xp_after_a_dispute_won_by_the_worker(conn):
    ids = f.task_in(conn, "DISPUTED")
    conn.execute("UPDATE proofs SET state = 'ACCEPTED' WHERE id = %s", (ids["proof"],))
    conn.execute("UPDATE tasks SET state = 'COMPLETED' WHERE id = %s", (ids["task"],))
    conn.execute("UPDATE escrows SET state = 'RELEASED' WHERE id = %s", (ids["escrow"],))
    f.xp_row(conn, ids)
    assert xp_count(conn) == 1
