"""/api/users: registration, the caller's profile, public profiles, XP, badges, trust tier, and
the owner's account rights: pause/resume (PRODUCT_SPEC §20), export and
deletion (§16)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import Response, stream_with_context

from hustlexp.api.auth import current_claims, current_user, requires_token, requires_user
from hustlexp.api.base import (
    Blueprint,
    MethodView,
    PatchSchema,
    Schema,
    StrictBoolean,
    fields,
    respond,
    services,
    validate,
)

blp = Blueprint("users", __name__, url_prefix="/api/users", description="Users: profile, XP, badges, trust")

MODES = ("worker", "poster")
# The shapes UserService accepts, so the OpenAPI document promises no more than it takes.
PHONE = r"^\+?[0-9][0-9 ().-]{5,18}[0-9]$"
AVATAR = r"^https?://[^\s\u0000]+$"
NAME = [validate.Length(min=1, max=255), validate.Regexp(r"^\s*[^\s\u0000][^\u0000]*$", error="must not be blank")]


# -- schemas ---------------------------------------------------------------------

class RegisterSchema(Schema):
    full_name = fields.String(required=True, validate=NAME)
    phone = fields.String(validate=[validate.Length(max=20), validate.Regexp(PHONE)])
    default_mode = fields.String(load_default="worker", validate=validate.OneOf(MODES))


class ProfileSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True)
    phone = fields.String(allow_none=True)
    full_name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True)
    default_mode = fields.String(required=True, metadata={"enum": list(MODES)})
    trust_tier = fields.Integer(required=True)
    xp_total = fields.Integer(required=True)
    current_level = fields.Integer(required=True)
    current_streak = fields.Integer(required=True)
    is_verified = fields.Boolean(required=True)
    verified_at = fields.DateTime(allow_none=True)
    account_status = fields.String(required=True, metadata={"enum": ["ACTIVE", "PAUSED", "SUSPENDED", "CLOSED"]})
    onboarding_completed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)


class ProfilePatchSchema(PatchSchema):
    full_name = fields.String(validate=NAME)
    avatar_url = fields.String(allow_none=True, validate=[validate.Length(max=500), validate.Regexp(AVATAR)],
                               metadata={"description": "An http(s) URL; null removes the avatar"})
    default_mode = fields.String(validate=validate.OneOf(MODES))
    phone = fields.String(allow_none=True, validate=[validate.Length(max=20), validate.Regexp(PHONE)])


class ProfileUpdatedSchema(Schema):
    id = fields.UUID(required=True)
    full_name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True)
    default_mode = fields.String(required=True)
    phone = fields.String(allow_none=True)
    updated_at = fields.DateTime(required=True)


class OnboardingSchema(Schema):
    version = fields.String(validate=validate.Length(min=1, max=20))
    role_confidence_worker = fields.Float(validate=validate.Range(min=0, max=1))
    role_confidence_poster = fields.Float(validate=validate.Range(min=0, max=1))
    overridden = StrictBoolean()


class XPQuerySchema(Schema):
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))


class LevelProgressSchema(Schema):
    current_threshold = fields.Integer(required=True)
    next_threshold = fields.Integer(allow_none=True, required=True)
    progress_percent = fields.Integer(required=True)


class XPEntrySchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    escrow_id = fields.UUID(required=True)
    amount = fields.Integer(required=True, metadata={"description": "Base XP"})
    effective_amount = fields.Integer(required=True, metadata={"description": "XP after multipliers"})
    balance_after = fields.Integer(required=True)
    streak_multiplier = fields.Float(required=True)
    trust_multiplier = fields.Float(required=True)
    decay_factor = fields.Float(required=True)
    reason = fields.String(required=True)
    level_after = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class XPSchema(Schema):
    total_xp = fields.Integer(required=True)
    current_level = fields.Integer(required=True)
    current_streak = fields.Integer(required=True)
    level_progress = fields.Nested(LevelProgressSchema, required=True)
    recent_entries = fields.List(fields.Nested(XPEntrySchema), required=True)


class BadgeDefinitionSchema(Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    condition = fields.String(required=True)
    tier = fields.Integer(required=True)
    category = fields.String(required=True)
    rarity = fields.String(required=True)
    icon_url = fields.String(required=True)


class EarnedBadgeSchema(BadgeDefinitionSchema):
    id = fields.UUID(required=True)
    badge_type = fields.String(required=True)
    awarded_at = fields.DateTime(required=True)
    awarded_for = fields.String(allow_none=True)
    task_id = fields.UUID(allow_none=True)
    animation_shown_at = fields.DateTime(allow_none=True)


class BadgesSchema(Schema):
    earned_badges = fields.List(fields.Nested(EarnedBadgeSchema), required=True)
    available_badges = fields.List(fields.Nested(BadgeDefinitionSchema), required=True)
    total_earned = fields.Integer(required=True)
    total_available = fields.Integer(required=True)


class CountRequirementSchema(Schema):
    required = fields.Integer(allow_none=True)
    current = fields.Integer(allow_none=True)


class NumberRequirementSchema(Schema):
    required = fields.Float(allow_none=True)
    current = fields.Float(allow_none=True)


class FlagRequirementSchema(Schema):
    required = fields.Boolean(allow_none=True)
    current = fields.Boolean(allow_none=True)


class TierRequirementsSchema(Schema):
    tasks_completed = fields.Nested(CountRequirementSchema)
    approval_rate = fields.Nested(NumberRequirementSchema, metadata={"description": "Percent"})
    id_verified = fields.Nested(FlagRequirementSchema)
    avg_rating = fields.Nested(NumberRequirementSchema)
    dispute_rate = fields.Nested(NumberRequirementSchema, metadata={"description": "Percent; must stay below"})


class TrustTierSchema(Schema):
    current_tier = fields.Integer(required=True)
    tier_name = fields.String(required=True)
    next_tier = fields.Integer(allow_none=True, required=True)
    next_tier_name = fields.String(allow_none=True)
    next_tier_admin_only = fields.Boolean(required=True)
    requirements_for_next = fields.Nested(TierRequirementsSchema, allow_none=True, required=True)
    tier_benefits = fields.List(fields.String(), required=True)
    promotion_held_until = fields.DateTime(allow_none=True, metadata={
        "description": "After a penalty no promotion happens until then"})


class PublicBadgeSchema(Schema):
    badge_type = fields.String(required=True)
    name = fields.String(allow_none=True)
    tier = fields.Integer(required=True)
    icon_url = fields.String(allow_none=True)
    awarded_at = fields.DateTime(required=True)


class PublicRatingSummarySchema(Schema):
    total_ratings = fields.Integer(required=True)
    average_rating = fields.Float(allow_none=True, required=True)
    star_distribution = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class PublicProfileSchema(Schema):
    """Never email, phone, location, Firebase uid or money."""

    id = fields.UUID(required=True)
    full_name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True)
    trust_tier = fields.Integer(required=True)
    tier_name = fields.String(required=True)
    is_verified = fields.Boolean(required=True)
    current_level = fields.Integer(required=True)
    badges = fields.List(fields.Nested(PublicBadgeSchema), required=True)
    rating = fields.Nested(PublicRatingSummarySchema, required=True)
    tasks_completed = fields.Integer(required=True, metadata={"description": "Completed as the worker"})
    tasks_posted_completed = fields.Integer(required=True, metadata={"description": "Posted and completed"})
    member_since = fields.DateTime(required=True)


class PauseSchema(Schema):
    reason = fields.String(validate=validate.Length(max=200))


class ClosedSchema(Schema):
    id = fields.UUID(required=True)
    account_status = fields.String(required=True, metadata={"enum": ["CLOSED"]})
    closed_at = fields.DateTime(required=True)
    anonymize_after = fields.DateTime(required=True, metadata={
        "description": "Until then POST /api/users/me/resume restores the account"})


# -- routes ----------------------------------------------------------------------

@blp.route("")
class Users(MethodView):
    @requires_token
    @blp.arguments(RegisterSchema)
    @blp.response(201, ProfileSchema)
    @blp.alt_response(409, response="CONFLICT")
    def post(self, body: dict[str, Any]) -> Any:
        """Register the caller (a verified Firebase identity with no account yet).

        The email comes from the token; 409 CONFLICT when already registered."""
        claims = current_claims()
        return respond(services().users.create(firebase_uid=claims["uid"], email=claims.get("email"), **body))


@blp.route("/me")
class Me(MethodView):
    @requires_user
    @blp.response(200, ProfileSchema)
    def get(self) -> Any:
        """The caller's profile."""
        return current_user()

    @requires_user
    @blp.arguments(ProfilePatchSchema)
    @blp.response(200, ProfileUpdatedSchema)
    def patch(self, body: dict[str, Any]) -> Any:
        """Change name, avatar, default mode or phone (null clears avatar and phone)."""
        return respond(services().users.update(current_user().id, **body))

    @requires_user(allow_paused=True)
    @blp.response(200, ClosedSchema)
    @blp.alt_response(409, response="CONFLICT")
    def delete(self) -> Any:
        """Delete the caller's account: refused (409, the live items in details) while a task,
        escrow or payout of theirs is live; otherwise CLOSED now and anonymised after 7 days
        (resume restores it until then). Money, XP and trust records stay, without identity."""
        return respond(services().accounts.close(current_user().id))


@blp.route("/me/pause")
class Pause(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(PauseSchema, required=False)
    @blp.response(200, ProfileSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Pause the account: read-only, no new tasks, no pushes; progress is kept (§20)."""
        return respond(services().users.pause(current_user().id, body.get("reason")))


@blp.route("/me/resume")
class Resume(MethodView):
    @requires_user(allow_paused=True, allow_closed=True)
    @blp.response(200, ProfileSchema)
    def post(self) -> Any:
        """Resume a paused account at once (streak and tier per the pause's length, §20.3), or
        restore a deleted one within its 7-day grace period."""
        return respond(services().users.resume(current_user().id))


@blp.route("/me/export")
class Export(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, content_type="application/json",
                  description="One JSON document: profile, tasks, escrows, proofs, messages, disputes, XP, "
                              "badges, trust history, notifications, payouts, ratings (streamed)")
    def get(self) -> Any:
        """Everything HustleXP holds about the caller, as one streamed JSON document (§16.3)."""
        chunks = services().accounts.export(current_user().id)
        return Response(stream_with_context(chunks), mimetype="application/json",
                        headers={"Content-Disposition": "attachment; filename=hustlexp-export.json",
                                 "Cache-Control": "no-store"})


@blp.route("/me/onboarding/complete")
class OnboardingComplete(MethodView):
    @requires_user
    @blp.arguments(OnboardingSchema, required=False)
    @blp.response(200, ProfileSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Finish onboarding; repeating it changes nothing."""
        return respond(services().users.complete_onboarding(current_user().id, **body))


@blp.route("/me/xp")
class MyXP(MethodView):
    @requires_user
    @blp.arguments(XPQuerySchema, location="query")
    @blp.response(200, XPSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """XP total, level progress and the latest ledger entries (limit 1-100, default 10)."""
        return respond(services().xp.get_user_xp(current_user().id, limit=query["limit"]))


@blp.route("/me/badges")
class MyBadges(MethodView):
    @requires_user
    @blp.response(200, BadgesSchema)
    def get(self) -> Any:
        """Badges earned and still available."""
        return respond(services().badges.get_user_badges(current_user().id))


@blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, PublicProfileSchema)
    def get(self, user_id: UUID) -> Any:
        """Anyone's public profile (404 HX504 for an unknown user)."""
        return respond(services().users.public_profile(user_id))


@blp.route("/<uuid:user_id>/badges")
class UserBadges(MethodView):
    @requires_user
    @blp.response(200, BadgesSchema)
    def get(self, user_id: UUID) -> Any:
        """Another user's badges (404 HX504 for an unknown user)."""
        return respond(services().badges.get_user_badges(user_id))


@blp.route("/me/trust-tier")
class MyTrustTier(MethodView):
    @requires_user
    @blp.response(200, TrustTierSchema)
    def get(self) -> Any:
        """Trust tier, what the next one needs, and the current tier's benefits."""
        return respond(services().trust.get_trust_tier_info(current_user().id))
