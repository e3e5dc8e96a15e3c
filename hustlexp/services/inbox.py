"""The messages inbox (MESSAGING_UI_SPEC §2): one conversation per task the caller is party to
(a task with a worker), with the other party, the last message the caller can see and how many
they have not read; and the caller's total of unread messages.

A participant sees what they sent and the approved messages they received (the rule of
messaging.get_thread, VISIBLE_SQL below); unread counts only those."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hustlexp.services.base import (
    Service,
    decode_cursor,
    encode_cursor,
    page_params,
    returning,
    returns_result,
    trim_page,
)
from hustlexp.services.messaging import OPEN_FOR_MESSAGES, message_item
from hustlexp.services.user import require_user

# Messages of task `t` the viewer %(me)s can see (alias m).
VISIBLE_SQL = ("m.task_id = t.id AND m.deleted_at IS NULL "
               "AND (m.sender_id = %(me)s OR (m.receiver_id = %(me)s AND m.moderation_status = 'approved'))")
UNREAD_SQL = ("m.receiver_id = %(me)s AND m.read_at IS NULL AND m.deleted_at IS NULL "
              "AND m.moderation_status = 'approved'")


class InboxService(Service):
    @returns_result
    def conversations(self, user_id: Any, *, limit: int | None = 20, cursor: str | None = None) -> dict[str, Any]:
        """{conversations, next_cursor, has_more}, newest activity first (the last message, or the
        acceptance while nobody has written). A conversation: {task_id, task_title, task_state,
        is_active, other_user {id, full_name, avatar_url, trust_tier, is_verified}, last_message
        (None before the first), unread_count, last_activity_at}."""
        limit, _ = page_params(limit, 0)
        after = decode_cursor(cursor) if cursor else None
        now = self.s.clock()
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            # VISIBLE_SQL and UNREAD_SQL are constants of this module; values are parameters.
            rows = conn.execute(f"""
                SELECT * FROM (
                    SELECT t.id AS task_id, t.title, t.state, o.id AS other_id, o.full_name, o.avatar_url,
                           o.trust_tier, o.is_verified, lm.message,
                           coalesce((lm.message ->> 'created_at')::timestamptz, t.accepted_at, t.created_at)
                               AS activity_at,
                           (SELECT count(*) FROM task_messages m WHERE m.task_id = t.id AND {UNREAD_SQL}) AS unread
                      FROM tasks t
                      JOIN users o ON o.id = CASE WHEN t.poster_id = %(me)s THEN t.worker_id ELSE t.poster_id END
                      LEFT JOIN LATERAL (
                          SELECT to_jsonb(m) AS message FROM task_messages m WHERE {VISIBLE_SQL}
                           ORDER BY m.created_at DESC, m.id DESC LIMIT 1) lm ON true
                     WHERE (t.poster_id = %(me)s OR t.worker_id = %(me)s) AND t.worker_id IS NOT NULL) c
                 WHERE %(after_at)s::timestamptz IS NULL
                    OR (c.activity_at, c.task_id) < (%(after_at)s, %(after_id)s::uuid)
                 ORDER BY c.activity_at DESC, c.task_id DESC
                 LIMIT %(limit)s""", {"me": user_id, "limit": limit + 1,
                                      "after_at": after[0] if after else None,
                                      "after_id": after[1] if after else None}).fetchall()
        rows, has_more = trim_page(rows, limit)
        return {"conversations": [self._item(r, user_id, now) for r in rows], "has_more": has_more,
                "next_cursor": encode_cursor(rows[-1]["activity_at"], rows[-1]["task_id"]) if has_more else None}

    @returns_result
    def unread_count(self, user_id: Any) -> dict[str, int]:
        """{unread_count, conversations_with_unread} over every task the caller is party to."""
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            row = returning(conn, f"""SELECT count(*) AS n, count(DISTINCT m.task_id) AS threads
                                        FROM task_messages m WHERE {UNREAD_SQL}""", {"me": user_id})
        return {"unread_count": row["n"], "conversations_with_unread": row["threads"]}

    @staticmethod
    def _item(row: dict[str, Any], me: Any, now: datetime) -> dict[str, Any]:
        last = None
        if row["message"] is not None:
            m = row["message"]
            for key in ("created_at", "read_at", "location_expires_at"):
                if m.get(key) is not None:
                    m[key] = datetime.fromisoformat(m[key])
            last = message_item(m, now) | {"is_from_me": str(m["sender_id"]) == str(me)}
        return {"task_id": row["task_id"], "task_title": row["title"], "task_state": row["state"],
                "is_active": row["state"] in OPEN_FOR_MESSAGES,
                "other_user": {"id": row["other_id"], "full_name": row["full_name"], "avatar_url": row["avatar_url"],
                               "trust_tier": row["trust_tier"], "is_verified": row["is_verified"]},
                "last_message": last, "unread_count": row["unread"], "last_activity_at": row["activity_at"]}

