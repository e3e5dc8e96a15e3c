"""The caller's progress records under /api/users/me: XP history (keyset-paged), trust history,
badge animation confirmations and the first-XP celebration flag."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, PageQuerySchema, Schema, fields, respond, services, validate
from hustlexp.api.users import EarnedBadgeSchema, XPEntrySchema

blp = Blueprint("progress", __name__, url_prefix="/api/users/me", description="The caller's progress records")


class XPHistoryQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    before = fields.UUID(metadata={"description": "next_before of the previous page"})


class XPHistorySchema(Schema):
    entries = fields.List(fields.Nested(XPEntrySchema), required=True)
    total = fields.Integer(required=True)
    has_more = fields.Boolean(required=True)
    next_before = fields.UUID(allow_none=True, required=True)


class TrustEntrySchema(Schema):
    id = fields.UUID(required=True)
    old_tier = fields.Integer(required=True)
    new_tier = fields.Integer(required=True)
    reason = fields.String(required=True, metadata={"description": "PROMOTION, PENALTY, DECAY, ADMIN_OVERRIDE..."})
    reason_details = fields.Dict(allow_none=True)
    task_id = fields.UUID(allow_none=True)
    dispute_id = fields.UUID(allow_none=True)
    changed_by = fields.String(required=True)
    changed_at = fields.DateTime(required=True)


class TrustHistorySchema(Schema):
    entries = fields.List(fields.Nested(TrustEntrySchema), required=True)
    total = fields.Integer(required=True)
    has_more = fields.Boolean(required=True)


class CelebrationSchema(Schema):
    should_show = fields.Boolean(required=True)
    shown_at = fields.DateTime(allow_none=True, required=True)


@blp.route("/xp/history")
class XPHistory(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(XPHistoryQuerySchema, location="query")
    @blp.response(200, XPHistorySchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The XP ledger, newest first; pass next_before to read on (awards meanwhile shift nothing)."""
        return respond(services().xp.get_xp_ledger(current_user().id, **query))


@blp.route("/trust-history")
class TrustHistory(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, TrustHistorySchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Every change of the caller's trust tier with its reason, newest first."""
        return respond(services().trust.get_trust_history(current_user().id, **query))


@blp.route("/badges/<uuid:badge_id>/animation-shown")
class BadgeAnimationShown(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, EarnedBadgeSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such badge of the caller")
    def post(self, badge_id: UUID) -> Any:
        """Record that the app played the badge's unlock animation (badge row id); once."""
        return respond(services().badges.mark_animation_shown(current_user().id, badge_id))


@blp.route("/xp/first-celebration")
class FirstCelebration(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, CelebrationSchema)
    def get(self) -> Any:
        """Whether the app should play the first-XP celebration."""
        return respond(services().users.first_xp_celebration(current_user().id))

    @requires_user(allow_paused=True)
    @blp.response(200, CelebrationSchema)
    @blp.alt_response(409, response="CONFLICT", description="No XP yet")
    def post(self) -> Any:
        """Record that the app played it (the first time wins)."""
        return respond(services().users.first_xp_celebration(current_user().id, mark_shown=True))
