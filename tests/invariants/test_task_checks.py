"""Task row CHECKs: nobody works their own task (tasks_worker_not_poster), every state past OPEN
has a worker (tasks_worker_assigned), and a task costs at least 500 cents (tasks_price_check)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def task_row(conn: f.Conn, task_id: object) -> dict[str, object]:
    return f.one(conn, "SELECT state, worker_id, price FROM tasks WHERE id = %s", (task_id,))


def test_poster_cannot_accept_own_task(conn):
    poster = f.user(conn)
    task_id = f.task(conn, poster)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET state = 'ACCEPTED', worker_id = %s WHERE id = %s", (poster, task_id))
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "tasks_worker_not_poster"
    assert task_row(conn, task_id) == {"state": "OPEN", "worker_id": None, "price": 4500}


def test_task_born_with_poster_as_worker_refused(conn):
    poster = f.user(conn)
    with pytest.raises(psycopg.Error) as ei:
        f.task(conn, poster, state="ACCEPTED", worker_id=poster)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "tasks_worker_not_poster"


@pytest.mark.parametrize("state", ["ACCEPTED", "PROOF_SUBMITTED", "DISPUTED"])
def test_state_past_open_needs_a_worker(conn, state):
    task_id = f.task(conn)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET state = %s WHERE id = %s", (state, task_id))
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "tasks_worker_assigned"
    assert task_row(conn, task_id)["state"] == "OPEN"


@pytest.mark.parametrize("state", ["ACCEPTED", "PROOF_SUBMITTED", "DISPUTED"])
def test_worker_cannot_be_removed_from_active_task(conn, state):
    ids = f.task_in(conn, state)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET worker_id = NULL WHERE id = %s", (ids["task"],))
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "tasks_worker_assigned"
    assert task_row(conn, ids["task"])["worker_id"] == ids["worker"]


@pytest.mark.parametrize("state", ["OPEN", "CANCELLED", "EXPIRED"])
def test_states_without_worker_allowed(conn, state):
    task_id = f.task(conn, state=state)
    assert task_row(conn, task_id) == {"state": state, "worker_id": None, "price": 4500}


@pytest.mark.parametrize("price", [499, 0, -500])
def test_price_below_minimum_refused(conn, price):
    with pytest.raises(psycopg.Error) as ei:
        f.task(conn, price=price)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "tasks_price_check"
    assert conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_price_cannot_drop_below_minimum_later(conn):
    task_id = f.task(conn, price=500)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET price = 499 WHERE id = %s", (task_id,))
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "tasks_price_check"
    assert task_row(conn, task_id)["price"] == 500


def test_minimum_price_accepted(conn):
    assert task_row(conn, f.task(conn, price=500))["price"] == 500
