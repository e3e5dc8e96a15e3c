"""poster_rating_totals: what workers rated each poster, counted exactly once per task when its
pair of ratings completes (one rating alone counts nothing; both in one statement, as the
auto-rating inserts them, count once), and the CHECKs that keep a total meaningful (23514)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def totals(conn: f.Conn, poster: object) -> dict[str, int] | None:
    return conn.execute("SELECT ratings, stars FROM poster_rating_totals WHERE poster_id = %s", (poster,)).fetchone()


def test_a_pair_counts_the_workers_rating_once(conn):
    ids = f.task_in(conn, "COMPLETED")
    f.rating(conn, ids["task"], ids["worker"], ids["poster"], stars=3)
    assert totals(conn, ids["poster"]) is None  # blind: the poster has not rated yet
    f.rating(conn, ids["task"], ids["poster"], ids["worker"], stars=5)
    assert totals(conn, ids["poster"]) == {"ratings": 1, "stars": 3}
    assert totals(conn, ids["worker"]) is None  # the poster's rating of the worker is not a poster rating


def test_the_poster_rating_first_counts_when_the_worker_rates(conn):
    ids = f.task_in(conn, "COMPLETED")
    f.rating(conn, ids["task"], ids["poster"], ids["worker"], stars=2)
    assert totals(conn, ids["poster"]) is None
    f.rating(conn, ids["task"], ids["worker"], ids["poster"], stars=4)
    assert totals(conn, ids["poster"]) == {"ratings": 1, "stars": 4}


def test_both_ratings_in_one_statement_count_once(conn):
    ids = f.task_in(conn, "COMPLETED")
    conn.execute("""INSERT INTO task_ratings (task_id, rater_id, ratee_id, stars, is_auto_rated)
                    VALUES (%(t)s, %(p)s, %(w)s, 5, true), (%(t)s, %(w)s, %(p)s, 5, true)""",
                 {"t": ids["task"], "p": ids["poster"], "w": ids["worker"]})
    assert totals(conn, ids["poster"]) == {"ratings": 1, "stars": 5}


def test_totals_add_up_over_tasks(conn):
    first = f.task_in(conn, "COMPLETED")
    f.rating(conn, first["task"], first["worker"], first["poster"], stars=4)
    f.rating(conn, first["task"], first["poster"], first["worker"])
    # A second task of the same poster, completed the way task_in completes one.
    second = f.task_in(conn, "PROOF_SUBMITTED")
    conn.execute("UPDATE tasks SET poster_id = %s WHERE id = %s", (first["poster"], second["task"]))
    conn.execute("UPDATE proofs SET state = 'ACCEPTED', reviewed_by = %s, reviewed_at = now() WHERE id = %s",
                 (first["poster"], second["proof"]))
    conn.execute("UPDATE tasks SET state = 'COMPLETED', completed_at = now() WHERE id = %s", (second["task"],))
    f.rating(conn, second["task"], second["worker"], first["poster"], stars=1)
    f.rating(conn, second["task"], first["poster"], second["worker"])
    assert totals(conn, first["poster"]) == {"ratings": 2, "stars": 5}


@pytest.mark.parametrize(("ratings", "stars"), [(0, 0), (-1, -5), (2, 1), (2, 11)])
def test_meaningless_totals_refused(conn, ratings, stars):
    poster = f.user(conn)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("INSERT INTO poster_rating_totals (poster_id, ratings, stars) VALUES (%s, %s, %s)",
                     (poster, ratings, stars))
    assert ei.value.sqlstate == "23514"
