"""Admin rights (DESIGN §7.10): who holds which admin_roles row. Granting and revoking are
admin mutations like any other, so each writes one admin_actions row in the same transaction.

The very first grant has nobody to act for it: when no admin exists yet, the grantee is
recorded as granting themselves (action_details says it was the bootstrap). After that a
grant or revoke must name an acting admin whose role is admin or founder."""

from __future__ import annotations

from typing import Any

from hustlexp.domain import AdminRole
from hustlexp.errors import Conflict, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, one, returns_result

FLAGS = ("can_resolve_disputes", "can_override_escrow", "can_modify_trust", "can_ban_users",
         "can_access_financials")

# What each role may do by default. Support reads the admin console only; moderators rule
# on content and accounts; admins and founders hold every right (founders also manage admins).
ROLE_FLAGS: dict[str, frozenset[str]] = {
    AdminRole.SUPPORT: frozenset(),
    AdminRole.MODERATOR: frozenset({"can_resolve_disputes", "can_ban_users"}),
    AdminRole.ADMIN: frozenset(FLAGS),
    AdminRole.FOUNDER: frozenset(FLAGS),
}
# Roles allowed to grant and revoke.
MANAGERS = frozenset({AdminRole.ADMIN, AdminRole.FOUNDER})


def _user_by_email(conn: Any, email: Any, field: str) -> dict[str, Any]:
    if not isinstance(email, str) or not email.strip():
        raise ValidationError("an email is required", details={field: ["an email address"]})
    user = one(conn, "SELECT id, email, full_name FROM users WHERE email = %s", (email.strip().lower(),))
    if user is None:
        raise NotFound(f"No user with the email {email.strip().lower()}.", code="HX504",
                       details={field: ["no such user"]})
    return user


class AdminRoleService(Service):
    @returns_result
    def grant(self, email: str, role: str, *, by_email: str | None = None) -> dict[str, Any]:
        """Give the user `role` with its default rights (a current admin's role and rights are
        replaced). Returns the admin_roles row plus `action_id`."""
        if role not in ROLE_FLAGS:
            raise ValidationError(f"role must be one of {', '.join(ROLE_FLAGS)}",
                                  details={"role": list(ROLE_FLAGS)})
        flags = ROLE_FLAGS[role]
        with self.db.transaction() as conn:
            # Serialises grants, so two bootstraps at once cannot both find no admin.
            conn.execute("LOCK TABLE admin_roles IN SHARE ROW EXCLUSIVE MODE")
            target = _user_by_email(conn, email, "email")
            actor, bootstrap = self._actor(conn, by_email, target)
            previous = one(conn, "SELECT role FROM admin_roles WHERE user_id = %s", (target["id"],))
            values = {f: f in flags for f in FLAGS}
            row = one(conn, """
                INSERT INTO admin_roles (user_id, role, can_resolve_disputes, can_override_escrow,
                                         can_modify_trust, can_ban_users, can_access_financials, granted_by)
                VALUES (%(user)s, %(role)s, %(can_resolve_disputes)s, %(can_override_escrow)s,
                        %(can_modify_trust)s, %(can_ban_users)s, %(can_access_financials)s, %(by)s)
                ON CONFLICT (user_id) DO UPDATE SET role = EXCLUDED.role,
                    can_resolve_disputes = EXCLUDED.can_resolve_disputes,
                    can_override_escrow = EXCLUDED.can_override_escrow,
                    can_modify_trust = EXCLUDED.can_modify_trust, can_ban_users = EXCLUDED.can_ban_users,
                    can_access_financials = EXCLUDED.can_access_financials,
                    granted_at = now(), granted_by = EXCLUDED.granted_by
                RETURNING *""", {"user": target["id"], "role": role, "by": actor["user_id"], **values})
            assert row is not None
            if bootstrap:
                actor = row
            # admin_actions is append-only: it names people by id only, never by email, so
            # anonymising a user (scrubbing users) leaves nothing identifying behind here.
            action_id = audit.record(
                conn, actor, "ADMIN_ROLE_GRANT",
                {"role": role, "previous_role": previous and previous["role"],
                 "flags": sorted(flags), "bootstrap": bootstrap},
                user_id=target["id"])
            return {**row, "email": target["email"], "action_id": action_id}

    @returns_result
    def revoke(self, email: str, *, by_email: str | None = None) -> dict[str, Any]:
        """Take every admin right away from the user. Returns {user_id, email, role, action_id}."""
        with self.db.transaction() as conn:
            conn.execute("LOCK TABLE admin_roles IN SHARE ROW EXCLUSIVE MODE")
            target = _user_by_email(conn, email, "email")
            current = one(conn, "SELECT * FROM admin_roles WHERE user_id = %s", (target["id"],))
            if current is None:
                raise Conflict(f"{target['email']} is not an admin.")
            actor, _ = self._actor(conn, by_email, target)
            conn.execute("DELETE FROM admin_roles WHERE user_id = %s", (target["id"],))
            action_id = audit.record(conn, actor, "ADMIN_ROLE_REVOKE",
                                     {"role": current["role"]},
                                     user_id=target["id"])
            return {"user_id": target["id"], "email": target["email"], "role": current["role"],
                    "action_id": action_id}

    @returns_result
    def list(self) -> list[dict[str, Any]]:
        """Every admin: email, name, role, rights, when and by whom granted."""
        with self.db.transaction() as conn:
            rows: list[dict[str, Any]] = conn.execute("""
                SELECT r.user_id, u.email, u.full_name, r.role, r.can_resolve_disputes,
                       r.can_override_escrow, r.can_modify_trust, r.can_ban_users,
                       r.can_access_financials, r.granted_at, g.email AS granted_by_email
                  FROM admin_roles r JOIN users u ON u.id = r.user_id
                  LEFT JOIN users g ON g.id = r.granted_by
                 ORDER BY r.granted_at, u.email""").fetchall()
            return rows

    @staticmethod
    def _actor(conn: Any, by_email: str | None, target: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the acting admin's admin_roles row, bootstrap?). With no admin at all, the target
        grants themselves; otherwise an acting admin or founder must be named."""
        if by_email is None:
            if one(conn, "SELECT 1 FROM admin_roles LIMIT 1") is None:
                return {"user_id": target["id"], "role": "bootstrap"}, True
            raise ValidationError("admins exist already: name the admin acting (--by EMAIL)",
                                  details={"by": ["the acting admin's email"]})
        actor_user = _user_by_email(conn, by_email, "by")
        actor = audit.admin_role(conn, actor_user["id"])
        if actor is None or actor["role"] not in MANAGERS:
            raise Forbidden(f"{actor_user['email']} is not an admin or founder and cannot manage admins.")
        return actor, False
