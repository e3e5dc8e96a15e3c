"""Raw-SQL builders for schema-level tests. They write rows directly, the way a buggy
service or an operator at a psql prompt would, so kill tests can prove the database
refuses what it must whatever the code above does."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

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
        "action_details": psycopg.types.json.Jsonb({"why": "test"}), "result": "ok"})


def _insert(conn: Conn, table: str, values: dict[str, Any]) -> Any:
    from psycopg import sql

    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)))
    row = conn.execute(query, list(values.values())).fetchone()
    assert row is not None
    return row["id"]
