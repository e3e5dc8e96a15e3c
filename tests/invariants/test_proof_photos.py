"""A proof holds at most five photos (trigger_proof_photo_limit, P0001) and is submitted with
at least one (trigger_proof_photo_minimum, P0001)."""

from __future__ import annotations

import psycopg
import pytest

from tests import factories as f


def photo_count(conn: f.Conn, proof_id: object) -> int:
    return f.one(conn, "SELECT count(*) AS n FROM proof_photos WHERE proof_id = %s", (proof_id,))["n"]


def pending_proof(conn: f.Conn, photos: int = 0) -> object:
    ids = f.accepted_task(conn)
    return f.proof(conn, ids["task"], ids["worker"], photos=photos)


@pytest.mark.parametrize("sequence", [6, 3, 0], ids=["next", "duplicate", "out-of-range"])
def test_sixth_photo_refused_by_the_limit_trigger(conn, sequence):
    # The BEFORE INSERT trigger answers before the sequence CHECK or UNIQUE could.
    proof_id = pending_proof(conn, photos=5)
    with pytest.raises(psycopg.Error) as ei:
        f.photo(conn, proof_id, sequence)
    assert ei.value.sqlstate == "P0001"
    assert photo_count(conn, proof_id) == 5


@pytest.mark.parametrize("state", ["SUBMITTED", "ACCEPTED"])
def test_sixth_photo_refused_after_submission(conn, state):
    ids = f.accepted_task(conn)
    proof_id = f.proof(conn, ids["task"], ids["worker"], state=state, photos=5)
    with pytest.raises(psycopg.Error) as ei:
        f.photo(conn, proof_id, 6)
    assert ei.value.sqlstate == "P0001"
    assert photo_count(conn, proof_id) == 5


def test_five_photos_accepted(conn):
    proof_id = pending_proof(conn, photos=4)
    f.photo(conn, proof_id, 5)
    assert photo_count(conn, proof_id) == 5


def test_photo_limit_is_per_proof(conn):
    full = pending_proof(conn, photos=5)
    other = pending_proof(conn)
    f.photo(conn, other, 1)
    assert (photo_count(conn, full), photo_count(conn, other)) == (5, 1)


@pytest.mark.parametrize("sequence", [0, 6, -1])
def test_sequence_out_of_range_refused_by_check_below_the_limit(conn, sequence):
    proof_id = pending_proof(conn, photos=2)
    with pytest.raises(psycopg.Error) as ei:
        f.photo(conn, proof_id, sequence)
    assert ei.value.sqlstate == "23514"
    assert ei.value.diag.constraint_name == "proof_photos_sequence_check"


def test_duplicate_sequence_refused_below_the_limit(conn):
    proof_id = pending_proof(conn, photos=2)
    with pytest.raises(psycopg.Error) as ei:
        f.photo(conn, proof_id, 2)
    assert ei.value.sqlstate == "23505"
    assert ei.value.diag.constraint_name == "proof_photos_sequence_unique"


def test_submission_without_photo_refused(conn):
    proof_id = pending_proof(conn)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE proofs SET state = 'SUBMITTED', submitted_at = now() WHERE id = %s", (proof_id,))
    assert ei.value.sqlstate == "P0001"
    row = conn.execute("SELECT state, submitted_at FROM proofs WHERE id = %s", (proof_id,)).fetchone()
    assert row == {"state": "PENDING", "submitted_at": None}


def test_submission_after_removing_every_photo_refused(conn):
    proof_id = pending_proof(conn, photos=2)
    conn.execute("DELETE FROM proof_photos WHERE proof_id = %s", (proof_id,))
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE proofs SET state = 'SUBMITTED' WHERE id = %s", (proof_id,))
    assert ei.value.sqlstate == "P0001"


def test_photos_of_another_proof_do_not_count(conn):
    ids = f.accepted_task(conn)
    f.proof(conn, ids["task"], ids["worker"], state="REJECTED", photos=3)
    proof_id = f.proof(conn, ids["task"], ids["worker"])
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("UPDATE proofs SET state = 'SUBMITTED' WHERE id = %s", (proof_id,))
    assert ei.value.sqlstate == "P0001"


@pytest.mark.parametrize("photos", [1, 5])
def test_submission_with_photos_accepted(conn, photos):
    proof_id = pending_proof(conn, photos=photos)
    conn.execute("UPDATE proofs SET state = 'SUBMITTED', submitted_at = now() WHERE id = %s", (proof_id,))
    assert conn.execute("SELECT state FROM proofs WHERE id = %s", (proof_id,)).fetchone()["state"] == "SUBMITTED"


def test_expiring_a_proof_without_photos_is_allowed(conn):
    # The minimum guards submission only; an abandoned empty proof may still expire.
    proof_id = pending_proof(conn)
    conn.execute("UPDATE proofs SET state = 'EXPIRED' WHERE id = %s", (proof_id,))
    assert conn.execute("SELECT state FROM proofs WHERE id = %s", (proof_id,)).fetchone()["state"] == "EXPIRED"
