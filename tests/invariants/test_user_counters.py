"""user_counters: what trust and badges count of a worker's history, kept by triggers on tasks,
proofs and disputes. Whatever writes those tables (here raw SQL, the way an operator would),
the counters stay equal to a recount of the history; any other write to them is refused (HX103)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests import factories as f

RECOUNT = """
SELECT (SELECT count(*) FROM tasks WHERE worker_id = %(u)s) AS tasks_taken,
       (SELECT count(*) FROM tasks WHERE worker_id = %(u)s AND state = 'COMPLETED') AS tasks_completed,
       (SELECT count(*) FROM tasks WHERE worker_id = %(u)s AND state = 'COMPLETED'
           AND lower(category) = 'cleaning') AS completed_cleaning,
       (SELECT count(*) FROM tasks WHERE worker_id = %(u)s AND state = 'COMPLETED'
           AND lower(category) = 'delivery') AS completed_delivery,
       (SELECT count(*) FROM tasks WHERE worker_id = %(u)s AND state = 'COMPLETED'
           AND lower(category) = 'moving') AS completed_moving,
       (SELECT count(*) FROM tasks WHERE worker_id = %(u)s AND state = 'COMPLETED'
           AND (completed_at AT TIME ZONE 'UTC')::time < time '09:00') AS completed_early,
       (SELECT count(*) FROM proofs WHERE submitter_id = %(u)s AND state = 'ACCEPTED') AS proofs_accepted,
       (SELECT count(*) FROM proofs WHERE submitter_id = %(u)s AND state = 'REJECTED') AS proofs_rejected,
       (SELECT count(*) FROM disputes WHERE worker_id = %(u)s) AS disputes
"""
COUNTED = ("tasks_taken", "tasks_completed", "completed_cleaning", "completed_delivery", "completed_moving",
           "completed_early", "proofs_accepted", "proofs_rejected", "disputes")


def counters(conn: f.Conn, user_id: Any) -> dict[str, int]:
    row = conn.execute("SELECT * FROM user_counters WHERE user_id = %s", (user_id,)).fetchone()
    return {k: row[k] if row else 0 for k in COUNTED}


def assert_counted(conn: f.Conn, *users: Any) -> None:
    for user_id in users:
        assert counters(conn, user_id) == f.one(conn, RECOUNT, {"u": user_id}), user_id


def test_a_completion_counts_for_its_worker(conn):
    ids = f.task_in(conn, "ACCEPTED")
    conn.execute("UPDATE tasks SET category = 'Cleaning' WHERE id = %s", (ids["task"],))
    assert counters(conn, ids["worker"])["tasks_taken"] == 1
    assert counters(conn, ids["worker"])["tasks_completed"] == 0
    ids["proof"] = f.proof(conn, ids["task"], ids["worker"], state="ACCEPTED")
    conn.execute("UPDATE tasks SET state = 'COMPLETED', completed_at = '2026-03-02 08:30+00' WHERE id = %s",
                 (ids["task"],))
    assert counters(conn, ids["worker"]) == {
        "tasks_taken": 1, "tasks_completed": 1, "completed_cleaning": 1, "completed_delivery": 0,
        "completed_moving": 0, "completed_early": 1, "proofs_accepted": 1, "proofs_rejected": 0, "disputes": 0}
    assert counters(conn, ids["poster"]) == dict.fromkeys(COUNTED, 0)


def test_counters_follow_every_change_of_the_history(conn):
    """Assignments, reassignment, unassignment, completions (early and late, by category),
    category and time changes after completion, proof reviews, disputes and deletions."""
    first, second = f.user(conn), f.user(conn)
    done = [f.task_in(conn, "COMPLETED") for _ in range(3)]
    for n, ids in enumerate(done):
        conn.execute("UPDATE proofs SET submitter_id = %s WHERE id = %s", (first, ids["proof"]))
        assert_counted(conn, first, ids["worker"])
        # A completed task's worker cannot change (HX001), but its category and time can.
        conn.execute("UPDATE tasks SET category = %s, completed_at = %s WHERE id = %s",
                     (["moving", "DELIVERY", None][n], ["2026-03-02 06:00+00", "2026-03-02 18:00+00", None][n],
                      ids["task"]))
        assert_counted(conn, ids["worker"])
    open_ids = f.task_in(conn, "ACCEPTED")
    conn.execute("UPDATE tasks SET worker_id = %s WHERE id = %s", (second, open_ids["task"]))
    assert_counted(conn, open_ids["worker"], second)
    conn.execute("UPDATE tasks SET worker_id = NULL, state = 'OPEN' WHERE id = %s", (open_ids["task"],))
    assert_counted(conn, second)
    rejected = f.task_in(conn, "PROOF_SUBMITTED")
    conn.execute("UPDATE proofs SET state = 'REJECTED', rejection_reason = 'blurry' WHERE id = %s",
                 (rejected["proof"],))
    assert_counted(conn, rejected["worker"])
    disputed = f.task_in(conn, "DISPUTED")
    dispute = f._insert(conn, "disputes", {
        "task_id": disputed["task"], "escrow_id": disputed["escrow"], "initiated_by": disputed["poster"],
        "poster_id": disputed["poster"], "worker_id": disputed["worker"], "reason": "quality",
        "description": "not done"})
    assert_counted(conn, disputed["worker"])
    conn.execute("UPDATE disputes SET worker_id = %s WHERE id = %s", (second, dispute))
    assert_counted(conn, disputed["worker"], second)
    conn.execute("DELETE FROM disputes WHERE id = %s", (dispute,))
    assert_counted(conn, second)
    fresh = f.task_in(conn, "PROOF_SUBMITTED")
    conn.execute("DELETE FROM proof_photos WHERE proof_id = %s", (fresh["proof"],))
    conn.execute("DELETE FROM proofs WHERE id = %s", (fresh["proof"],))
    conn.execute("DELETE FROM escrows WHERE task_id = %s", (fresh["task"],))
    conn.execute("DELETE FROM tasks WHERE id = %s", (fresh["task"],))
    assert_counted(conn, fresh["worker"])


@pytest.mark.parametrize("statement", [
    "INSERT INTO user_counters (user_id, tasks_taken) VALUES (%(u)s, 1)",
    "UPDATE user_counters SET tasks_completed = tasks_completed + 1 WHERE user_id = %(u)s",
    "DELETE FROM user_counters WHERE user_id = %(u)s",
    "SELECT add_user_counts(%(u)s, taken => 1, completed => 1)",
    "TRUNCATE user_counters",
])
def test_a_direct_write_is_refused(conn, statement):
    ids = f.task_in(conn, "COMPLETED")
    other = f.user(conn)
    before = counters(conn, ids["worker"])
    for user_id in (ids["worker"], other):  # an existing row and a missing one
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(statement, {"u": user_id})
        assert ei.value.sqlstate == "HX103"
    assert counters(conn, ids["worker"]) == before
    assert_counted(conn, ids["worker"], other)
