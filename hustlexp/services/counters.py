"""The columns of user_counters as trust and badges name them (sql/schema.sql keeps the counters
by trigger, so reading them costs the same however long a user's history is).

COUNTS is a select list over `user_counters c`, LEFT JOINed on the user (no row: all zero);
read_user reads it with whatever else a caller needs of the user row `u`."""

from __future__ import annotations

from typing import Any

from hustlexp.services.base import one
from hustlexp.services.user import missing_user

_NAMES = {
    "taken": "tasks_taken", "completed": "tasks_completed", "cleaning": "completed_cleaning",
    "delivery": "completed_delivery", "moving": "completed_moving", "early": "completed_early",
    "accepted": "proofs_accepted", "rejected": "proofs_rejected", "disputes": "disputes",
}

COUNTS = ", ".join(f"coalesce(c.{column}, 0) AS {name}" for name, column in _NAMES.items())


def read_user(conn: Any, user_id: Any, columns: str, *, lock: bool = False) -> dict[str, Any]:
    """`columns` of the user `u` and its counters `c` (FOR UPDATE of the user row with `lock`);
    NotFound HX504 when there is no such user."""
    row = one(conn, f"SELECT {columns} FROM users u LEFT JOIN user_counters c ON c.user_id = u.id WHERE u.id = %s"
                    f"{' FOR UPDATE OF u' if lock else ''}", (user_id,))
    if row is None:
        raise missing_user()
    return row
