"""INV-3: a task that requires proof becomes COMPLETED only with an ACCEPTED proof (HX301)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def task_state(conn: f.Conn, task_id: object) -> str:
    return f.one(conn, "SELECT state FROM tasks WHERE id = %s", (task_id,))["state"]


def complete(conn: f.Conn, task_id: object) -> None:
    conn.execute("UPDATE tasks SET state = 'COMPLETED', completed_at = now() WHERE id = %s", (task_id,))


@pytest.mark.parametrize("proof_state", [None, "PENDING", "SUBMITTED", "REJECTED", "EXPIRED"])
def test_inv3_refuses_completion_without_accepted_proof(conn, proof_state):
    ids = f.accepted_task(conn)
    if proof_state:
        f.proof(conn, ids["task"], ids["worker"], state=proof_state)
    conn.execute("UPDATE tasks SET state = 'PROOF_SUBMITTED' WHERE id = %s", (ids["task"],))
    with pytest.raises(psycopg.Error) as ei:
        complete(conn, ids["task"])
    assert ei.value.sqlstate == "HX301"
    assert task_state(conn, ids["task"]) == "PROOF_SUBMITTED"


@pytest.mark.parametrize("from_state", ["OPEN", "ACCEPTED", "DISPUTED"])
def test_inv3_refuses_completion_from_any_state_without_proof(conn, from_state):
    ids = f.task_in(conn, from_state)
    with pytest.raises(psycopg.Error) as ei:
        complete(conn, ids["task"])
    assert ei.value.sqlstate == "HX301"
    assert task_state(conn, ids["task"]) == from_state


def test_inv3_refuses_completion_with_only_rejected_and_expired_proofs(conn):
    ids = f.accepted_task(conn)
    f.proof(conn, ids["task"], ids["worker"], state="REJECTED")
    f.proof(conn, ids["task"], ids["worker"], state="EXPIRED")
    f.proof(conn, ids["task"], ids["worker"], state="SUBMITTED")
    with pytest.raises(psycopg.Error) as ei:
        complete(conn, ids["task"])
    assert ei.value.sqlstate == "HX301"


def test_inv3_an_accepted_proof_of_another_task_does_not_count(conn):
    ids = f.accepted_task(conn)
    other = f.task_in(conn, "COMPLETED")
    assert other["proof"] is not None
    with pytest.raises(psycopg.Error) as ei:
        complete(conn, ids["task"])
    assert ei.value.sqlstate == "HX301"


def test_inv3_refuses_a_task_born_completed(conn):
    with pytest.raises(psycopg.Error) as ei:
        f.task(conn, state="COMPLETED", worker_id=f.user(conn), completed_at="2026-01-01T00:00:00Z")
    assert ei.value.sqlstate == "HX301"
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_inv3_allows_completion_with_an_accepted_proof(conn):
    ids = f.task_in(conn, "PROOF_SUBMITTED")
    conn.execute("UPDATE proofs SET state = 'ACCEPTED' WHERE id = %s", (ids["proof"],))
    complete(conn, ids["task"])
    assert task_state(conn, ids["task"]) == "COMPLETED"


def test_inv3_allows_completion_after_a_rejected_then_accepted_resubmission(conn):
    ids = f.accepted_task(conn)
    f.proof(conn, ids["task"], ids["worker"], state="REJECTED")
    f.proof(conn, ids["task"], ids["worker"], state="ACCEPTED")
    complete(conn, ids["task"])
    assert task_state(conn, ids["task"]) == "COMPLETED"


def test_inv3_task_without_proof_requirement_completes_without_proof(conn):
    task_id = f.task(conn, requires_proof=False)
    conn.execute("UPDATE tasks SET state = 'ACCEPTED', worker_id = %s WHERE id = %s", (f.user(conn), task_id))
    complete(conn, task_id)
    assert task_state(conn, task_id) == "COMPLETED"


def test_inv3_task_without_proof_requirement_may_be_born_completed(conn):
    task_id = f.task(conn, state="COMPLETED", worker_id=f.user(conn), requires_proof=False)
    assert task_state(conn, task_id) == "COMPLETED"
