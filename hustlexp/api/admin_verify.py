"""POST /api/admin/users/{user_id}/verify: an admin marks a user's identity verified (tier 2
needs it); audited, and promotion runs again. Kept apart so the admin router can adopt it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.api.auth import current_user, requires_admin
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate

blp = Blueprint("admin-verify", __name__, url_prefix="/api/admin", description="Admin: identity verification")


class VerifySchema(Schema):
    note = fields.String(validate=validate.Length(max=500), metadata={"description": "What was checked"})


class TrustChangeSchema(Schema):
    old_tier = fields.Integer(required=True)
    new_tier = fields.Integer(required=True)
    changed = fields.Boolean(required=True)


class VerifiedSchema(Schema):
    user_id = fields.UUID(required=True)
    is_verified = fields.Boolean(required=True)
    verified_at = fields.DateTime(allow_none=True, required=True)
    trust = fields.Nested(TrustChangeSchema, required=True)
    admin_action_id = fields.UUID(required=True)


@blp.route("/users/<uuid:user_id>/verify")
class VerifyUser(MethodView):
    @requires_admin("can_modify_trust")
    @blp.arguments(VerifySchema, required=False)
    @blp.response(200, VerifiedSchema)
    def post(self, body: dict[str, Any], user_id: UUID) -> Any:
        """Mark the user's identity verified (repeating it changes nothing but is audited)."""
        return respond(services().trust.verify_identity(current_user().id, user_id, note=(body or {}).get("note")))
