"""Raw-SQL builders for schema-level tests. They write rows directly, the way a buggy
service or an operator at a psql prompt would, so kill tests can prove the database
refuses what it must whatever the code above does."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[dict[str, Any]]


def user(conn: Conn, **cols: Any) -> Any:
    tag = uuid.uuid4().hex[:10]
    values = {"email": f"u{tag}@example.test", "full_name": f"User {tag}"} | cols
    return _insert(conn, "users", values)


def task(conn: Conn, poster: Any | None = None, **cols: Any) -> Any:
    values = {"poster_id": poster or user(conn), "title": "Assemble a bookshelf",
              "description": "IKEA Billy, two units", "price": 4500} | cols
    return _insert(conn, "tasks", values)


def escrow(conn: Conn, task_id: Any, **cols: Any) -> Any:
    price = conn.execute("SELECT price FROM tasks WHERE id = %s", (task_id,)).fetchone()
    values = {"task_id": task_id, "amount": price["price"] if price else 4500} | cols
    return _insert(conn, "escrows", values)


def proof(conn: Conn, task_id: Any, submitter: Any, *, state: str = "PENDING", photos: int = 0) -> Any:
    """A proof reaching `state` the legal way: insert PENDING, add photos, then update."""
    proof_id = _insert(conn, "proofs", {"task_id": task_id, "submitter_id": submitter,
                                        "description": "done, photos attached"})
    for n in range(1, photos + 1):
        photo(conn, proof_id, n)
    if state != "PENDING":
        if photos == 0 and state in ("SUBMITTED", "ACCEPTED", "REJECTED"):
            photo(conn, proof_id, 1)
        path = {"SUBMITTED": ["SUBMITTED"], "ACCEPTED": ["SUBMITTED", "ACCEPTED"],
                "REJECTED": ["SUBMITTED", "REJECTED"], "EXPIRED": ["EXPIRED"]}[state]
        for step in path:
            conn.execute(
                "UPDATE proofs SET state = %s, submitted_at = coalesce(submitted_at, now()), "
                "rejection_reason = CASE WHEN %s = 'REJECTED' THEN 'blurry photos' END WHERE id = %s",
                (step, step, proof_id))
    return proof_id


def photo(conn: Conn, proof_id: Any, sequence: int = 1) -> Any:
    return _insert(conn, "proof_photos", {
        "proof_id": proof_id, "storage_key": f"proofs/x/{proof_id}/{sequence}.jpg",
        "content_type": "image/jpeg", "file_size_bytes": 1024, "checksum_sha256": "0" * 64,
        "sequence_number": sequence})


def accepted_task(conn: Conn, *, price: int = 4500, funded: bool = True) -> dict[str, Any]:
    """A task in ACCEPTED with its worker and a FUNDED (or PENDING) escrow."""
    poster, worker = user(conn), user(conn)
    task_id = task(conn, poster, price=price)
    escrow_id = escrow(conn, task_id)
    if funded:
        conn.execute("UPDATE escrows SET state = 'FUNDED', funded_at = now() WHERE id = %s", (escrow_id,))
    conn.execute("UPDATE tasks SET state = 'ACCEPTED', worker_id = %s, accepted_at = now() WHERE id = %s",
                 (worker, task_id))
    return {"poster": poster, "worker": worker, "task": task_id, "escrow": escrow_id}


def completed_task(conn: Conn, *, price: int = 4500, release: bool = True) -> dict[str, Any]:
    """The whole legal chain: accepted -> proof ACCEPTED -> task COMPLETED -> escrow RELEASED."""
    ids = accepted_task(conn, price=price)
    ids["proof"] = proof(conn, ids["task"], ids["worker"], state="ACCEPTED")
    conn.execute("UPDATE tasks SET state = 'COMPLETED', completed_at = now() WHERE id = %s", (ids["task"],))
    if release:
        conn.execute("UPDATE escrows SET state = 'RELEASED', released_at = now() WHERE id = %s",
                     (ids["escrow"],))
    return ids


def xp_row(conn: Conn, ids: dict[str, Any], **cols: Any) -> Any:
    values = {"user_id": ids["worker"], "task_id": ids["task"], "escrow_id": ids["escrow"],
              "base_xp": 45, "effective_xp": 45, "user_xp_before": 0, "user_xp_after": 45,
              "user_level_before": 1, "user_level_after": 1, "user_streak_at_award": 0} | cols
    return _insert(conn, "xp_ledger", values)


def admin_action(conn: Conn, admin: Any | None = None) -> Any:
    return _insert(conn, "admin_actions", {
        "admin_user_id": admin or user(conn), "admin_role": "admin", "action_type": "NOTE",
        "action_details": Jsonb({"why": "test"}), "result": "ok"})


def _insert(conn: Conn, table: str, values: dict[str, Any]) -> Any:
    from psycopg import sql

    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)))
    row = conn.execute(query, list(values.values())).fetchone()
    assert row is not None
    return row["id"]


def task_in(conn: Conn, state: str, *, price: int = 4500) -> dict[str, Any]:
    """A task brought to `state` the legal way: ids of its poster, worker (None if it never left
    OPEN), escrow and, once one was submitted, its proof. The escrow stays where the task's own moves leave it (FUNDED,
    LOCKED_DISPUTE once DISPUTED) so a test can attempt the escrow's next move itself."""
    if state in ("OPEN", "EXPIRED"):
        poster = user(conn)
        task_id = task(conn, poster, price=price)
        escrow_id = escrow(conn, task_id)
        conn.execute("UPDATE escrows SET state = 'FUNDED', funded_at = now() WHERE id = %s", (escrow_id,))
        ids: dict[str, Any] = {"poster": poster, "worker": None, "task": task_id, "escrow": escrow_id}
        if state == "EXPIRED":
            _set_task(conn, task_id, "EXPIRED", "expired_at")
        return ids
    ids = accepted_task(conn, price=price)
    if state == "ACCEPTED":
        return ids
    if state == "CANCELLED":
        _set_task(conn, ids["task"], "CANCELLED", "cancelled_at")
        return ids
    ids["proof"] = proof(conn, ids["task"], ids["worker"], state="SUBMITTED")
    _set_task(conn, ids["task"], "PROOF_SUBMITTED", "proof_submitted_at")
    if state == "DISPUTED":
        _set_task(conn, ids["task"], "DISPUTED", None)
        conn.execute("UPDATE escrows SET state = 'LOCKED_DISPUTE' WHERE id = %s", (ids["escrow"],))
    elif state == "COMPLETED":
        conn.execute("UPDATE proofs SET state = 'ACCEPTED', reviewed_by = %s, reviewed_at = now() "
                     "WHERE id = %s", (ids["poster"], ids["proof"]))
        _set_task(conn, ids["task"], "COMPLETED", "completed_at")
    elif state != "PROOF_SUBMITTED":
        raise ValueError(f"unknown task state {state!r}")
    return ids


def escrow_in(conn: Conn, state: str, *, price: int = 4500) -> dict[str, Any]:
    """An escrow in `state` with its task in the matching state (task_in's ids). A split
    (REFUND_PARTIAL) releases half of the price, rounded down, and refunds the rest."""
    if state == "PENDING":
        poster = user(conn)
        task_id = task(conn, poster, price=price)
        return {"poster": poster, "worker": None, "task": task_id, "escrow": escrow(conn, task_id)}
    task_state = {"FUNDED": "ACCEPTED", "LOCKED_DISPUTE": "DISPUTED", "RELEASED": "COMPLETED",
                  "REFUNDED": "CANCELLED", "REFUND_PARTIAL": "DISPUTED"}[state]
    ids = task_in(conn, task_state, price=price)
    if state == "RELEASED":
        conn.execute("UPDATE escrows SET state = 'RELEASED', released_at = now() WHERE id = %s",
                     (ids["escrow"],))
    elif state == "REFUNDED":
        conn.execute("UPDATE escrows SET state = 'REFUNDED', refunded_at = now() WHERE id = %s",
                     (ids["escrow"],))
    elif state == "REFUND_PARTIAL":
        _set_task(conn, ids["task"], "CANCELLED", "cancelled_at")
        release = price // 2
        conn.execute("UPDATE escrows SET state = 'REFUND_PARTIAL', release_amount = %s, refund_amount = %s, "
                     "released_at = now(), refunded_at = now() WHERE id = %s",
                     (release, price - release, ids["escrow"]))
    return ids


def badge(conn: Conn, user_id: Any, badge_type: str = "first-task", **cols: Any) -> Any:
    return _insert(conn, "badges", {"user_id": user_id, "badge_type": badge_type, "badge_tier": 1} | cols)


def message(conn: Conn, task_id: Any, sender: Any, receiver: Any, **cols: Any) -> Any:
    values = {"task_id": task_id, "sender_id": sender, "receiver_id": receiver,
              "message_type": "TEXT", "content": "On my way"} | cols
    return _insert(conn, "task_messages", values)


def rating(conn: Conn, task_id: Any, rater: Any, ratee: Any, **cols: Any) -> Any:
    return _insert(conn, "task_ratings", {"task_id": task_id, "rater_id": rater, "ratee_id": ratee,
                                          "stars": 5} | cols)


def outbox(conn: Conn, escrow_id: Any, kind: str, amount: int, **cols: Any) -> Any:
    """A money_outbox row keyed the way services key them: <kind>:<escrow id>."""
    values = {"escrow_id": escrow_id, "kind": kind, "amount": amount,
              "idempotency_key": f"{kind.lower()}:{escrow_id}"} | cols
    return _insert(conn, "money_outbox", values)


def trust_change(conn: Conn, user_id: Any, tier: int) -> None:
    """Move a user's tier; the trust_tier_audit trigger writes the trust_ledger row."""
    conn.execute("UPDATE users SET trust_tier = %s WHERE id = %s", (tier, user_id))


def _set_task(conn: Conn, task_id: Any, state: str, stamp: str | None) -> None:
    from psycopg import sql

    stamp_sql = sql.SQL(", {} = now()").format(sql.Identifier(stamp)) if stamp else sql.SQL("")
    conn.execute(sql.SQL("UPDATE tasks SET state = %s{} WHERE id = %s").format(stamp_sql), (state, task_id))



def one(conn: Conn, query: Any, params: Any = ()) -> dict[str, Any]:
    """The single row a test query must find."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, "query found no row"
    return row


def confirmed_upload(conn: Conn, user_id: Any, task_id: Any, bucket: str = "messages", **cols: Any) -> str:
    """A CONFIRMED direct upload of `user_id` for the task (a photo message or dispute may name
    it); its storage key."""
    key = f"{bucket}/{task_id}/{uuid.uuid4().hex}.jpg"
    values = {"user_id": user_id, "task_id": task_id, "bucket": bucket, "storage_key": key,
              "content_type": "image/jpeg", "file_size_bytes": 1234, "state": "CONFIRMED",
              "checksum_sha256": "0" * 64, "confirmed_at": dt.datetime.now(dt.UTC),
              "expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(days=1)} | cols
    _insert(conn, "uploads", values)
    return key
