"""The moderation queue: messages the filter quarantined (never delivered) wait here for an
admin, oldest first. Releasing delivers the message; deleting hides it for good (the row stays
as the record of what was said, marked deleted). Both are audited."""

from __future__ import annotations

from typing import Any

from hustlexp.domain import ModerationStatus
from hustlexp.errors import Conflict, NotFound
from hustlexp.services import audit
from hustlexp.services.base import Service, one, page_params, returns_result

_QUEUE = "moderation_status = 'quarantined' AND deleted_at IS NULL"


class ModerationService(Service):
    @returns_result
    def queue(self, admin_id: Any, *, limit: int | None = 20, offset: int | None = 0) -> dict[str, Any]:
        """Quarantined messages, oldest first (admin with can_ban_users). {items, total_pending}."""
        limit, offset = page_params(limit, offset)
        with self.db.transaction() as conn:
            audit.require_admin(conn, admin_id, "can_ban_users")
            total = one(conn, "SELECT count(*) AS n FROM task_messages WHERE " + _QUEUE)
            items = conn.execute(
                "SELECT id, task_id, sender_id, receiver_id, message_type, content, moderation_flags, created_at "
                "FROM task_messages WHERE " + _QUEUE + " ORDER BY created_at, id LIMIT %s OFFSET %s",
                (limit, offset)).fetchall()
            return {"items": items, "total_pending": total["n"] if total else 0}

    @returns_result
    def release(self, admin_id: Any, message_id: Any, *, notes: str | None = None) -> dict[str, Any]:
        """Deliver a quarantined message after all."""
        return self._decide(admin_id, message_id, "release", notes)

    @returns_result
    def delete(self, admin_id: Any, message_id: Any, *, notes: str | None = None) -> dict[str, Any]:
        """Hide a quarantined message for good."""
        return self._decide(admin_id, message_id, "delete", notes)

    def _decide(self, admin_id: Any, message_id: Any, decision: str, notes: str | None) -> dict[str, Any]:
        with self.db.transaction() as conn:
            role = audit.require_admin(conn, admin_id, "can_ban_users")
            message = one(conn, "SELECT * FROM task_messages WHERE id = %s FOR UPDATE", (message_id,))
            if message is None:
                raise NotFound("message not found")
            if message["moderation_status"] != ModerationStatus.QUARANTINED or message["deleted_at"] is not None:
                raise Conflict("the message is not waiting for moderation")
            if decision == "release":
                message = one(conn, "UPDATE task_messages SET moderation_status = 'approved' WHERE id = %s "
                                    "RETURNING *", (message_id,))
            else:
                message = one(conn, "UPDATE task_messages SET deleted_at = %s WHERE id = %s RETURNING *",
                              (self.s.clock(), message_id))
            assert message is not None
            action_id = audit.record(conn, role, f"MESSAGE_{decision.upper()}", {"notes": notes},
                                     user_id=message["sender_id"], task_id=message["task_id"],
                                     result_details={"message_id": str(message_id)})
            return {"message_id": message_id, "decision": decision,
                    "moderation_status": message["moderation_status"], "deleted_at": message["deleted_at"],
                    "action_id": action_id}
