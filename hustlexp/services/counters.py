"""The columns of user_counters as trust and badges name them (sql/schema.sql keeps the counters
by trigger, so reading them costs the same however long a user's history is).

COUNTS is a select list over `user_counters c`, LEFT JOINed on the user (no row: all zero)."""

from __future__ import annotations

_NAMES = {
    "taken": "tasks_taken", "completed": "tasks_completed", "cleaning": "completed_cleaning",
    "delivery": "completed_delivery", "moving": "completed_moving", "early": "completed_early",
    "accepted": "proofs_accepted", "rejected": "proofs_rejected", "disputes": "disputes",
}

COUNTS = ", ".join(f"coalesce(c.{column}, 0) AS {name}" for name, column in _NAMES.items())
