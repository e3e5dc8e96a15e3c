"""A task in COMPLETED, CANCELLED or EXPIRED keeps its state, price, poster, worker, title and
description forever (task_terminal_guard, HX001); its other columns stay writable."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests import factories as f

TERMINAL = ["COMPLETED", "CANCELLED", "EXPIRED"]
FROZEN = ["state", "price", "poster_id", "worker_id", "title", "description"]


def snapshot(conn: f.Conn, task_id: object) -> dict[str, Any]:
    cols = sql.SQL(", ").join(map(sql.Identifier, FROZEN))
    return f.one(conn, sql.SQL("SELECT {} FROM tasks WHERE id = %s").format(cols), (task_id,))


def new_value(conn: f.Conn, column: str, ids: dict[str, Any]) -> Any:
    """A different, otherwise legal value, so nothing but the guard could refuse it."""
    return {"state": "ACCEPTED" if ids["worker"] else "OPEN", "price": 9000,
            "poster_id": f.user(conn), "worker_id": f.user(conn),
            "title": "Assemble two bookshelves", "description": "changed after the fact"}[column]


@pytest.mark.parametrize("column", FROZEN)
@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_task_refuses_change_of_frozen_column(conn, state, column):
    ids = f.task_in(conn, state)
    before = snapshot(conn, ids["task"])
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(sql.SQL("UPDATE tasks SET {} = %s WHERE id = %s").format(sql.Identifier(column)),
                     (new_value(conn, column, ids), ids["task"]))
    assert ei.value.sqlstate == "HX001"
    assert snapshot(conn, ids["task"]) == before


@pytest.mark.parametrize(("state", "target"), [
    ("COMPLETED", "CANCELLED"), ("COMPLETED", "DISPUTED"), ("CANCELLED", "EXPIRED"), ("EXPIRED", "CANCELLED"),
])
def test_terminal_task_refuses_move_to_another_state(conn, state, target):
    ids = f.task_in(conn, state)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET state = %s WHERE id = %s", (target, ids["task"]))
    assert ei.value.sqlstate == "HX001"
    assert snapshot(conn, ids["task"])["state"] == state


def test_cancelled_task_to_completed_is_refused_by_inv3_first(conn):
    # task_completed_requires_accepted_proof sorts before task_terminal_guard.
    ids = f.task_in(conn, "CANCELLED")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET state = 'COMPLETED' WHERE id = %s", (ids["task"],))
    assert ei.value.sqlstate == "HX301"


def test_cancelled_task_with_accepted_proof_cannot_turn_completed(conn):
    ids = f.task_in(conn, "PROOF_SUBMITTED")
    conn.execute("UPDATE proofs SET state = 'ACCEPTED' WHERE id = %s", (ids["proof"],))
    conn.execute("UPDATE tasks SET state = 'CANCELLED' WHERE id = %s", (ids["task"],))
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET state = 'COMPLETED' WHERE id = %s", (ids["task"],))
    assert ei.value.sqlstate == "HX001"


def test_terminal_task_refuses_clearing_the_worker(conn):
    ids = f.task_in(conn, "COMPLETED")
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE tasks SET worker_id = NULL WHERE id = %s", (ids["task"],))
    assert ei.value.sqlstate == "HX001"
    assert snapshot(conn, ids["task"])["worker_id"] == ids["worker"]


@pytest.mark.parametrize(("column", "value"), [
    ("proof_instructions", "photo of the finished shelf"), ("location", "Room 204"),
    ("requirements", "bring a drill"), ("category", "furniture"),
])
@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_task_keeps_other_columns_writable(conn, state, column, value):
    ids = f.task_in(conn, state)
    before = snapshot(conn, ids["task"])
    conn.execute(sql.SQL("UPDATE tasks SET {} = %s WHERE id = %s").format(sql.Identifier(column)),
                 (value, ids["task"]))
    row = conn.execute(sql.SQL("SELECT {} AS v FROM tasks WHERE id = %s").format(sql.Identifier(column)),
                       (ids["task"],)).fetchone()
    assert row["v"] == value
    assert snapshot(conn, ids["task"]) == before


@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_task_allows_rewriting_frozen_columns_unchanged(conn, state):
    ids = f.task_in(conn, state)
    before = snapshot(conn, ids["task"])
    conn.execute("UPDATE tasks SET state = state, price = price, title = title WHERE id = %s", (ids["task"],))
    assert snapshot(conn, ids["task"]) == before


@pytest.mark.parametrize("state", ["OPEN", "ACCEPTED", "PROOF_SUBMITTED", "DISPUTED"])
def test_non_terminal_task_title_stays_editable(conn, state):
    ids = f.task_in(conn, state)
    conn.execute("UPDATE tasks SET title = 'Assemble a desk' WHERE id = %s", (ids["task"],))
    assert snapshot(conn, ids["task"])["title"] == "Assemble a desk"
