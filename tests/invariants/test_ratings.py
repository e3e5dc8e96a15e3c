"""task_ratings (RATE-1..8): only for a COMPLETED task (HX807), within 7 days of completion
unless auto-rated (HX808), never changed or removed (HX809), 1-5 stars (HX810), a comment of at
most 500 characters (HX811), only between the task's poster and worker (HX812), one per rater
per task (23505), and an auto-rating is always the plain default (23514)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def count(conn: f.Conn) -> int:
    return f.one(conn, "SELECT count(*) AS n FROM task_ratings")["n"]


def refused(conn: f.Conn, sqlstate: str, *args, **cols) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as ei:
        f.rating(conn, *args, **cols)
    assert ei.value.sqlstate == sqlstate, ei.value
    return ei.value


@pytest.mark.parametrize("state", ["OPEN", "ACCEPTED", "PROOF_SUBMITTED", "DISPUTED", "CANCELLED", "EXPIRED"])
def test_rating_refused_before_completion(conn, state):
    ids = f.task_in(conn, state)
    worker = ids["worker"] or f.user(conn)
    refused(conn, "HX807", ids["task"], ids["poster"], worker)
    refused(conn, "HX807", ids["task"], worker, ids["poster"])
    assert count(conn) == 0


def test_rating_refused_for_a_missing_task(conn):
    a, b = f.user(conn), f.user(conn)
    import uuid

    with pytest.raises(psycopg.Error) as ei:
        f.rating(conn, uuid.uuid4(), a, b)
    assert ei.value.sqlstate == "HX807"


@pytest.mark.parametrize("direction", ["poster-rates-worker", "worker-rates-poster"])
def test_rating_between_the_pair_of_a_completed_task(conn, direction):
    ids = f.task_in(conn, "COMPLETED")
    rater, ratee = ((ids["poster"], ids["worker"]) if direction == "poster-rates-worker"
                    else (ids["worker"], ids["poster"]))
    rating_id = f.rating(conn, ids["task"], rater, ratee, stars=4, comment="x" * 500, tags=["on_time"])
    row = f.one(conn, "SELECT stars, is_auto_rated, tags FROM task_ratings WHERE id = %s", (rating_id,))
    assert row == {"stars": 4, "is_auto_rated": False, "tags": ["on_time"]}


@pytest.mark.parametrize("case", ["stranger-rates-worker", "stranger-rates-poster", "poster-rates-stranger",
                                  "worker-rates-stranger", "poster-rates-self", "worker-rates-self"])
def test_rating_refused_outside_the_pair(conn, case):
    ids = f.task_in(conn, "COMPLETED")
    stranger = f.user(conn)
    rater, ratee = {
        "stranger-rates-worker": (stranger, ids["worker"]), "stranger-rates-poster": (stranger, ids["poster"]),
        "poster-rates-stranger": (ids["poster"], stranger), "worker-rates-stranger": (ids["worker"], stranger),
        "poster-rates-self": (ids["poster"], ids["poster"]), "worker-rates-self": (ids["worker"], ids["worker"]),
    }[case]
    refused(conn, "HX812", ids["task"], rater, ratee)
    assert count(conn) == 0


def test_rating_refused_between_the_pair_of_another_task(conn):
    ids, other = f.task_in(conn, "COMPLETED"), f.task_in(conn, "COMPLETED")
    refused(conn, "HX812", ids["task"], other["poster"], other["worker"])


@pytest.mark.parametrize("stars", [0, -1, 6, 100])
def test_stars_outside_1_to_5_refused(conn, stars):
    ids = f.task_in(conn, "COMPLETED")
    refused(conn, "HX810", ids["task"], ids["poster"], ids["worker"], stars=stars)
    assert count(conn) == 0


def test_missing_stars_refused(conn):
    ids = f.task_in(conn, "COMPLETED")
    refused(conn, "HX810", ids["task"], ids["poster"], ids["worker"], stars=None)


@pytest.mark.parametrize("stars", [1, 2, 3, 4, 5])
def test_every_star_value_accepted(conn, stars):
    ids = f.task_in(conn, "COMPLETED")
    f.rating(conn, ids["task"], ids["poster"], ids["worker"], stars=stars)
    assert count(conn) == 1


@pytest.mark.parametrize("length", [501, 5000])
def test_long_comment_refused(conn, length):
    ids = f.task_in(conn, "COMPLETED")
    refused(conn, "HX811", ids["task"], ids["worker"], ids["poster"], comment="x" * length)
    assert count(conn) == 0


def test_stars_checked_before_the_task(conn):
    ids = f.task_in(conn, "ACCEPTED")
    refused(conn, "HX810", ids["task"], ids["poster"], ids["worker"], stars=9)


def test_rating_refused_after_the_window(conn):
    ids = f.task_in(conn, "COMPLETED")
    conn.execute("UPDATE tasks SET completed_at = now() - interval '7 days 1 minute' WHERE id = %s", (ids["task"],))
    refused(conn, "HX808", ids["task"], ids["poster"], ids["worker"], stars=1)
    refused(conn, "HX808", ids["task"], ids["worker"], ids["poster"], stars=3)
    assert count(conn) == 0


def test_rating_accepted_on_the_last_day_of_the_window(conn):
    ids = f.task_in(conn, "COMPLETED")
    conn.execute("UPDATE tasks SET completed_at = now() - interval '6 days 23 hours' WHERE id = %s", (ids["task"],))
    f.rating(conn, ids["task"], ids["poster"], ids["worker"], stars=2)
    assert count(conn) == 1


def test_auto_rating_closes_the_window_after_it(conn):
    ids = f.task_in(conn, "COMPLETED")
    conn.execute("UPDATE tasks SET completed_at = now() - interval '8 days' WHERE id = %s", (ids["task"],))
    f.rating(conn, ids["task"], ids["poster"], ids["worker"], is_auto_rated=True)
    assert count(conn) == 1


@pytest.mark.parametrize("cols", [{"stars": 1}, {"comment": "meh"}, {"tags": ["late_arrival"]}])
def test_auto_rating_is_only_the_default(conn, cols):
    ids = f.task_in(conn, "COMPLETED")
    conn.execute("UPDATE tasks SET completed_at = now() - interval '8 days' WHERE id = %s", (ids["task"],))
    err = refused(conn, "23514", ids["task"], ids["poster"], ids["worker"], is_auto_rated=True, **cols)
    assert err.diag.constraint_name == "task_ratings_auto_is_default"


def test_second_rating_by_the_same_rater_refused(conn):
    ids = f.task_in(conn, "COMPLETED")
    f.rating(conn, ids["task"], ids["poster"], ids["worker"], stars=5)
    err = refused(conn, "23505", ids["task"], ids["poster"], ids["worker"], stars=1)
    assert err.diag.constraint_name == "task_ratings_one_per_rater"
    assert count(conn) == 1


def test_too_many_tags_refused(conn):
    ids = f.task_in(conn, "COMPLETED")
    err = refused(conn, "23514", ids["task"], ids["poster"], ids["worker"], tags=["t"] * 12)
    assert err.diag.constraint_name == "task_ratings_tags_check"


@pytest.mark.parametrize("change", ["stars = 1", "comment = 'edited'", "tags = '{}'", "is_auto_rated = true",
                                    "ratee_id = rater_id", "created_at = now() - interval '1 day'"])
def test_rating_never_changes(conn, change):
    ids = f.task_in(conn, "COMPLETED")
    rating_id = f.rating(conn, ids["task"], ids["poster"], ids["worker"], stars=5, comment="great")
    before = f.one(conn, "SELECT * FROM task_ratings WHERE id = %s", (rating_id,))
    with pytest.raises(psycopg.Error) as ei:
        conn.execute(f"UPDATE task_ratings SET {change} WHERE id = %s", (rating_id,))  # test-only SQL
    assert ei.value.sqlstate == "HX809"
    assert f.one(conn, "SELECT * FROM task_ratings WHERE id = %s", (rating_id,)) == before


def test_rating_never_deleted(conn):
    ids = f.task_in(conn, "COMPLETED")
    rating_id = f.rating(conn, ids["task"], ids["poster"], ids["worker"])
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("DELETE FROM task_ratings WHERE id = %s", (rating_id,))
    assert ei.value.sqlstate == "HX809"
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("TRUNCATE task_ratings")
    assert ei.value.sqlstate == "HX809"
    assert count(conn) == 1
