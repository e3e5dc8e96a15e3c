"""/api/admin: the admin console (its own section of the OpenAPI document).

Who may do what comes from admin_roles alone (DESIGN §7.10): each route names the right it
needs (None = any admin), and the service checks it again under its transaction. Every
mutation writes one admin_actions row (its id comes back as `action_id`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.api.auth import current_user, requires_admin
from hustlexp.api.base import Blueprint, MethodView, PageQuerySchema, Schema, fields, respond, services, validate
from hustlexp.api.schemas import TASK_STATES, DisputeSchema, EscrowSummarySchema

blp = Blueprint("admin", __name__, url_prefix="/api/admin",
                description="Admin console: disputes, users, moderation, metrics (admin_roles decide)")

ACCOUNT_STATES = ("ACTIVE", "PAUSED", "SUSPENDED", "CLOSED")


# -- schemas ---------------------------------------------------------------------

class PartySchema(Schema):
    id = fields.UUID(required=True)
    full_name = fields.String(required=True)
    email = fields.String(required=True)
    trust_tier = fields.Integer(required=True)
    account_status = fields.String(required=True)


class CaseTaskSchema(Schema):
    id = fields.UUID(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": list(TASK_STATES)})
    price = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    accepted_at = fields.DateTime(allow_none=True)
    proof_submitted_at = fields.DateTime(allow_none=True)


class CasePhotoSchema(Schema):
    id = fields.UUID(required=True)
    proof_id = fields.UUID(required=True)
    content_type = fields.String(required=True)
    sequence_number = fields.Integer(required=True)
    capture_time = fields.DateTime(allow_none=True)


class CaseProofSchema(Schema):
    id = fields.UUID(required=True)
    state = fields.String(required=True)
    description = fields.String(allow_none=True)
    submitted_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    photos = fields.List(fields.Nested(CasePhotoSchema), required=True)


class CaseMessageSchema(Schema):
    id = fields.UUID(required=True)
    sender_id = fields.UUID(required=True)
    message_type = fields.String(required=True)
    content = fields.String(allow_none=True)
    photo_keys = fields.List(fields.String(), allow_none=True)
    moderation_status = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class DisputeCaseSchema(DisputeSchema):
    evidence_requested_from = fields.UUID(allow_none=True)
    evidence_requested_at = fields.DateTime(allow_none=True)
    poster = fields.Nested(PartySchema, required=True)
    worker = fields.Nested(PartySchema, required=True)
    task = fields.Nested(CaseTaskSchema, required=True)
    escrow = fields.Nested(EscrowSummarySchema, required=True)
    proofs = fields.List(fields.Nested(CaseProofSchema), required=True)
    messages = fields.List(fields.Nested(CaseMessageSchema), required=True)


class DisputeQueueSchema(Schema):
    disputes = fields.List(fields.Nested(DisputeCaseSchema), required=True)
    total = fields.Integer(required=True)


class EvidenceRequestSchema(Schema):
    party = fields.String(required=True, validate=validate.OneOf(("poster", "worker")))
    note = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class EvidenceRequestedSchema(Schema):
    id = fields.UUID(required=True)
    state = fields.String(required=True)
    evidence_requested_from = fields.UUID(required=True)
    evidence_requested_at = fields.DateTime(required=True)
    action_id = fields.UUID(required=True)


class UserSearchQuerySchema(PageQuerySchema):
    q = fields.String(validate=validate.Length(max=255),
                      metadata={"description": "A user id, or part of an email, name or phone"})
    status = fields.String(validate=validate.OneOf(ACCOUNT_STATES))


class AdminUserSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True)
    full_name = fields.String(required=True)
    phone = fields.String(allow_none=True)
    account_status = fields.String(required=True, metadata={"enum": list(ACCOUNT_STATES)})
    trust_tier = fields.Integer(required=True)
    xp_total = fields.Integer(required=True)
    is_verified = fields.Boolean(required=True)
    suspended_at = fields.DateTime(allow_none=True)
    paused_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)


class UserSearchSchema(Schema):
    users = fields.List(fields.Nested(AdminUserSchema), required=True)
    total = fields.Integer(required=True)


class ReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class StatusChangeSchema(Schema):
    user_id = fields.UUID(required=True)
    previous_status = fields.String(required=True)
    new_status = fields.String(required=True)
    cancelled_task_ids = fields.List(fields.UUID(), required=True)
    review_task_ids = fields.List(fields.UUID(), required=True)
    action_id = fields.UUID(required=True)
    updated_at = fields.DateTime(required=True)


class TrustOverrideSchema(Schema):
    tier = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=4))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class TrustOverriddenSchema(Schema):
    old_tier = fields.Integer(required=True)
    new_tier = fields.Integer(required=True)
    changed = fields.Boolean(required=True)
    admin_action_id = fields.UUID(required=True)


class QuarantinedMessageSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    sender_id = fields.UUID(required=True)
    receiver_id = fields.UUID(required=True)
    message_type = fields.String(required=True)
    content = fields.String(allow_none=True)
    moderation_flags = fields.List(fields.String(), allow_none=True)
    created_at = fields.DateTime(required=True)


class ModerationQueueSchema(Schema):
    items = fields.List(fields.Nested(QuarantinedMessageSchema), required=True)
    total_pending = fields.Integer(required=True)


class ModerationNotesSchema(Schema):
    notes = fields.String(validate=validate.Length(max=1000))


class ModerationDecisionSchema(Schema):
    message_id = fields.UUID(required=True)
    decision = fields.String(required=True, metadata={"enum": ["release", "delete"]})
    moderation_status = fields.String(required=True)
    deleted_at = fields.DateTime(allow_none=True)
    action_id = fields.UUID(required=True)


class ReviewTaskSchema(Schema):
    id = fields.UUID(required=True)
    poster_id = fields.UUID(required=True)
    worker_id = fields.UUID(allow_none=True)
    title = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": list(TASK_STATES)})
    price = fields.Integer(required=True)
    review_requested_at = fields.DateTime(required=True)
    review_reason = fields.String(allow_none=True)


class ReviewQueueSchema(Schema):
    tasks = fields.List(fields.Nested(ReviewTaskSchema), required=True)
    total = fields.Integer(required=True)


class EscrowMoneySchema(Schema):
    count = fields.Integer(required=True)
    amount_cents = fields.Integer(required=True)


class OutboxSummarySchema(Schema):
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    backlog = fields.Integer(required=True)
    oldest_pending_age_seconds = fields.Integer(allow_none=True, required=True)


class DisputeCountsSchema(Schema):
    open = fields.Integer(required=True)
    evidence_requested = fields.Integer(required=True)


class MetricsSummarySchema(Schema):
    tasks_by_state = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    escrows_by_state = fields.Dict(keys=fields.String(), values=fields.Nested(EscrowMoneySchema), required=True)
    outbox = fields.Nested(OutboxSummarySchema, required=True)
    disputes = fields.Nested(DisputeCountsSchema, required=True)
    moderation_queue = fields.Integer(required=True)
    tasks_for_review = fields.Integer(required=True)
    users_by_status = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


# -- routes ----------------------------------------------------------------------

@blp.route("/disputes")
class DisputeQueue(MethodView):
    @requires_admin("can_resolve_disputes")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, DisputeQueueSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Unresolved disputes, oldest first, with both parties, proofs, messages and evidence."""
        return respond(services().disputes.queue(current_user().id, **query))


@blp.route("/disputes/<uuid:dispute_id>/request-evidence")
class DisputeEvidenceRequest(MethodView):
    @requires_admin("can_resolve_disputes")
    @blp.arguments(EvidenceRequestSchema)
    @blp.response(200, EvidenceRequestedSchema)
    @blp.alt_response(409, response="CONFLICT")
    def post(self, body: dict[str, Any], dispute_id: UUID) -> Any:
        """Ask the poster or the worker for more evidence: the dispute becomes EVIDENCE_REQUESTED."""
        return respond(services().disputes.request_evidence(dispute_id, current_user().id, **body))


@blp.route("/users")
class UserSearch(MethodView):
    @requires_admin(None)
    @blp.arguments(UserSearchQuerySchema, location="query")
    @blp.response(200, UserSearchSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Find users by id, email, name or phone, optionally by account status (any admin)."""
        return respond(services().users.search(current_user().id, query=query.get("q"),
                                               status=query.get("status"), limit=query["limit"],
                                               offset=query["offset"]))


@blp.route("/users/<uuid:user_id>/suspend")
class UserSuspend(MethodView):
    @requires_admin("can_ban_users")
    @blp.arguments(ReasonSchema)
    @blp.response(200, StatusChangeSchema)
    @blp.alt_response(409, response="CONFLICT")
    def post(self, body: dict[str, Any], user_id: UUID) -> Any:
        """Suspend a user: their token is refused (403 ACCOUNT_SUSPENDED), their OPEN tasks are
        cancelled and refunded, their ACCEPTED tasks wait for an admin's review."""
        return respond(services().accounts.suspend(current_user().id, user_id, reason=body["reason"]))


@blp.route("/users/<uuid:user_id>/unsuspend")
class UserUnsuspend(MethodView):
    @requires_admin("can_ban_users")
    @blp.arguments(ReasonSchema)
    @blp.response(200, StatusChangeSchema)
    @blp.alt_response(409, response="CONFLICT")
    def post(self, body: dict[str, Any], user_id: UUID) -> Any:
        """Lift a suspension: the account is ACTIVE again."""
        return respond(services().accounts.unsuspend(current_user().id, user_id, reason=body["reason"]))


@blp.route("/users/<uuid:user_id>/trust-tier")
class UserTrustTier(MethodView):
    @requires_admin("can_modify_trust")
    @blp.arguments(TrustOverrideSchema)
    @blp.response(200, TrustOverriddenSchema)
    def put(self, body: dict[str, Any], user_id: UUID) -> Any:
        """Set a user's trust tier with a reason (the trust_tier_audit trigger logs the change)."""
        return respond(services().trust.set_tier(current_user().id, user_id, body["tier"], body["reason"]))


@blp.route("/moderation/messages")
class ModerationQueue(MethodView):
    @requires_admin("can_ban_users")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, ModerationQueueSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Quarantined messages waiting for a decision, oldest first."""
        return respond(services().moderation.queue(current_user().id, **query))


@blp.route("/moderation/messages/<uuid:message_id>/release")
class ModerationRelease(MethodView):
    @requires_admin("can_ban_users")
    @blp.arguments(ModerationNotesSchema, required=False)
    @blp.response(200, ModerationDecisionSchema)
    @blp.alt_response(409, response="CONFLICT")
    def post(self, body: dict[str, Any], message_id: UUID) -> Any:
        """Deliver a quarantined message."""
        return respond(services().moderation.release(current_user().id, message_id, notes=body.get("notes")))


@blp.route("/moderation/messages/<uuid:message_id>")
class ModerationDelete(MethodView):
    @requires_admin("can_ban_users")
    @blp.response(200, ModerationDecisionSchema)
    @blp.alt_response(409, response="CONFLICT")
    def delete(self, message_id: UUID) -> Any:
        """Delete a quarantined message for good (it is never delivered)."""
        return respond(services().moderation.delete(current_user().id, message_id))


@blp.route("/tasks/review")
class TaskReviewQueue(MethodView):
    @requires_admin(None)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, ReviewQueueSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Live tasks waiting for an admin's review (e.g. a party was suspended), oldest first."""
        return respond(services().tasks.review_queue(current_user().id, **query))


@blp.route("/metrics")
class MetricsSummary(MethodView):
    @requires_admin("can_access_financials")
    @blp.response(200, MetricsSummarySchema)
    def get(self) -> Any:
        """Tasks by state, escrow money by state, outbox backlog, open disputes, queues."""
        return respond(services().summary.summary(current_user().id))


# --- identity verification (tier 2 needs it; the ID-verification provider is future work) ---

class AdminNoteSchema(Schema):
    """An admin's note on a check they made (identity verification, a Radar flag cleared)."""
    note = fields.String(validate=validate.Length(max=500), metadata={"description": "What was checked"})


class VerifyTrustChangeSchema(Schema):
    old_tier = fields.Integer(required=True)
    new_tier = fields.Integer(required=True)
    changed = fields.Boolean(required=True)


class VerifiedSchema(Schema):
    user_id = fields.UUID(required=True)
    is_verified = fields.Boolean(required=True)
    verified_at = fields.DateTime(allow_none=True, required=True)
    trust = fields.Nested(VerifyTrustChangeSchema, required=True)
    admin_action_id = fields.UUID(required=True)


@blp.route("/users/<uuid:user_id>/verify")
class VerifyUser(MethodView):
    @requires_admin("can_modify_trust")
    @blp.arguments(AdminNoteSchema, required=False)
    @blp.response(200, VerifiedSchema)
    def post(self, body: dict[str, Any], user_id: UUID) -> Any:
        """Mark the user's identity verified (repeating it changes nothing but is audited)."""
        return respond(services().trust.verify_identity(current_user().id, user_id, note=(body or {}).get("note")))


# --- the payout desk (issue 12): its routes live in their own module, on this blueprint ---
from hustlexp.api import admin_payouts  # noqa: E402,F401
