"""admin_actions: every admin mutation leaves one append-only row (DESIGN §7.10)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from hustlexp.errors import Forbidden


def require_admin(conn: Any, user_id: Any, flag: str | None = None) -> dict[str, Any]:
    """The caller's admin_roles row, holding `flag` when one is named; Forbidden otherwise."""
    role: dict[str, Any] | None = conn.execute(
        "SELECT * FROM admin_roles WHERE user_id = %s", (user_id,)).fetchone()
    if role is None or (flag is not None and not role[flag]):
        need = f" with {flag}" if flag else ""
        raise Forbidden(f"this action needs an admin{need}")
    return role


def admin_role(conn: Any, user_id: Any) -> dict[str, Any] | None:
    """The user's admin_roles row, or None for everyone who is not an admin."""
    row: dict[str, Any] | None = conn.execute(
        "SELECT * FROM admin_roles WHERE user_id = %s", (user_id,)).fetchone()
    return row


def require_party_or_admin(conn: Any, parties: tuple[Any, ...], viewer_id: Any, message: str) -> None:
    """The viewer is one of `parties` (a task's poster and worker) or an admin; else Forbidden.
    A viewer of None is the system itself."""
    if viewer_id is None or viewer_id in parties:
        return
    if admin_role(conn, viewer_id) is None:
        raise Forbidden(message)


def record(conn: Any, role: dict[str, Any], action_type: str, details: dict[str, Any], *,
           result: str = "ok", result_details: dict[str, Any] | None = None, user_id: Any = None,
           task_id: Any = None, escrow_id: Any = None, dispute_id: Any = None) -> Any:
    row = conn.execute(
        """INSERT INTO admin_actions (admin_user_id, admin_role, action_type, action_details,
               target_user_id, target_task_id, target_escrow_id, target_dispute_id, result, result_details)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (role["user_id"], role["role"], action_type, Jsonb(details), user_id, task_id, escrow_id,
         dispute_id, result, Jsonb(result_details) if result_details is not None else None),
    ).fetchone()
    return row["id"]
