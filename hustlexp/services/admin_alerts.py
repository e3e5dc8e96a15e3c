"""Alerts for the admins who can act on money (admin_roles.can_override_escrow), written in the
caller's transaction so an alert exists exactly when the event it announces was recorded."""

from __future__ import annotations

from typing import Any

from hustlexp.services.base import Service


def alert_admins(service: Service, conn: Any, category: str, *, task_id: Any = None,
                 metadata: dict[str, Any]) -> int:
    admins = conn.execute("SELECT user_id FROM admin_roles WHERE can_override_escrow ORDER BY user_id").fetchall()
    for admin in admins:
        service.s.notifications.record(conn, admin["user_id"], category, task_id=task_id, metadata=metadata)
    return len(admins)
