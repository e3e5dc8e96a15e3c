"""Messages flow only while a task is active (message_requires_active_task, HX801) and only
between its poster and its worker (message_sender_is_participant, HX802); text <= 500 chars."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f

ACTIVE = ["ACCEPTED", "PROOF_SUBMITTED", "DISPUTED"]


def message_count(conn: f.Conn) -> int:
    return f.one(conn, "SELECT count(*) AS n FROM task_messages")["n"]


@pytest.mark.parametrize("state", ["OPEN", "COMPLETED", "CANCELLED", "EXPIRED"])
def test_message_refused_on_inactive_task(conn, state):
    ids = f.task_in(conn, state)
    # An OPEN or EXPIRED task never had a worker: the hopeful worker writes to the poster.
    worker = ids["worker"] or f.user(conn)
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], worker, ids["poster"])
    assert ei.value.sqlstate == "HX801"
    assert message_count(conn) == 0


@pytest.mark.parametrize("state", ["COMPLETED", "CANCELLED"])
def test_message_refused_on_ended_task_from_the_poster_too(conn, state):
    ids = f.task_in(conn, state)
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], ids["poster"], ids["worker"], message_type="LOCATION", content=None)
    assert ei.value.sqlstate == "HX801"


@pytest.mark.parametrize("case", ["stranger-to-poster", "stranger-to-worker", "poster-to-stranger",
                                  "worker-to-stranger"])
@pytest.mark.parametrize("state", ACTIVE)
def test_message_refused_outside_the_pair(conn, state, case):
    ids = f.task_in(conn, state)
    stranger = f.user(conn)
    sender, receiver = {
        "stranger-to-poster": (stranger, ids["poster"]), "stranger-to-worker": (stranger, ids["worker"]),
        "poster-to-stranger": (ids["poster"], stranger), "worker-to-stranger": (ids["worker"], stranger),
    }[case]
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], sender, receiver)
    assert ei.value.sqlstate == "HX802"
    assert message_count(conn) == 0


def test_message_refused_between_the_pair_of_another_task(conn):
    ids = f.task_in(conn, "ACCEPTED")
    other = f.task_in(conn, "ACCEPTED")
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], other["worker"], other["poster"])
    assert ei.value.sqlstate == "HX802"


def test_message_to_self_refused_by_the_participant_trigger_first(conn):
    ids = f.task_in(conn, "ACCEPTED")
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], ids["worker"], ids["worker"])
    assert ei.value.sqlstate == "HX802"


@pytest.mark.parametrize("direction", ["worker-to-poster", "poster-to-worker"])
@pytest.mark.parametrize("state", ACTIVE)
def test_message_between_poster_and_worker_of_active_task(conn, state, direction):
    ids = f.task_in(conn, state)
    sender, receiver = ((ids["worker"], ids["poster"]) if direction == "worker-to-poster"
                        else (ids["poster"], ids["worker"]))
    message_id = f.message(conn, ids["task"], sender, receiver)
    row = conn.execute("SELECT sender_id, receiver_id, read_at FROM task_messages WHERE id = %s",
                       (message_id,)).fetchone()
    assert row == {"sender_id": sender, "receiver_id": receiver, "read_at": None}


@pytest.mark.parametrize(("length", "accepted"), [(1, True), (500, True), (501, False), (2000, False)])
def test_message_content_length(conn, length, accepted):
    ids = f.task_in(conn, "ACCEPTED")
    if accepted:
        f.message(conn, ids["task"], ids["worker"], ids["poster"], content="x" * length)
        assert message_count(conn) == 1
        return
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], ids["worker"], ids["poster"], content="x" * length)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "task_messages_content_length_check"
    assert message_count(conn) == 0


def test_empty_text_message_refused(conn):
    ids = f.task_in(conn, "ACCEPTED")
    with pytest.raises(psycopg.Error) as ei:
        f.message(conn, ids["task"], ids["worker"], ids["poster"], content="")
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "task_messages_text_has_content"
