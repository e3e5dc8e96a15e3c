"""Response and request schemas shared by the task, escrow, proof and dispute routers."""

from __future__ import annotations

from hustlexp.api.base import Schema, fields, validate

TASK_STATES = ("OPEN", "ACCEPTED", "PROOF_SUBMITTED", "DISPUTED", "COMPLETED", "CANCELLED", "EXPIRED")


class UserSummarySchema(Schema):
    id = fields.UUID(required=True)
    full_name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True)
    trust_tier = fields.Integer(required=True)
    is_verified = fields.Boolean(required=True)


class EscrowSummarySchema(Schema):
    id = fields.UUID(required=True)
    amount = fields.Integer(required=True)
    state = fields.String(required=True)


class ProofSummarySchema(Schema):
    id = fields.UUID(required=True)
    state = fields.String(required=True)
    submitted_at = fields.DateTime(allow_none=True)


class EscrowSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    amount = fields.Integer(required=True)
    state = fields.String(required=True)
    refund_amount = fields.Integer(allow_none=True)
    release_amount = fields.Integer(allow_none=True)
    stripe_payment_intent_id = fields.String(allow_none=True)
    stripe_transfer_id = fields.String(allow_none=True)
    stripe_refund_id = fields.String(allow_none=True)
    transfer_id = fields.String(attribute="stripe_transfer_id", dump_only=True, allow_none=True)
    refund_id = fields.String(attribute="stripe_refund_id", dump_only=True, allow_none=True)
    funded_at = fields.DateTime(allow_none=True)
    released_at = fields.DateTime(allow_none=True)
    refunded_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    chargeback_hold = fields.String(allow_none=True, metadata={
        "enum": ["CHARGEBACK", "CHARGEBACK_LOST", None],
        "description": "CHARGEBACK while a chargeback of the poster's payment holds the money (neither "
                       "released nor refunded until it closes); CHARGEBACK_LOST once it was lost for good"})


class TaskSchema(Schema):
    id = fields.UUID(required=True)
    poster_id = fields.UUID(required=True)
    worker_id = fields.UUID(allow_none=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    requirements = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    location_lat = fields.Float(allow_none=True)
    location_lng = fields.Float(allow_none=True)
    category = fields.String(allow_none=True)
    price = fields.Integer(required=True)
    state = fields.String(required=True, validate=validate.OneOf(TASK_STATES))
    mode = fields.String(required=True)
    deadline = fields.DateTime(allow_none=True)
    requires_proof = fields.Boolean(required=True)
    proof_instructions = fields.String(allow_none=True)
    required_trust_tier = fields.Integer(allow_none=True)
    risk_level = fields.String(required=True)
    accepted_at = fields.DateTime(allow_none=True)
    proof_submitted_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    expired_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class TaskDetailSchema(TaskSchema):
    poster = fields.Nested(UserSummarySchema, allow_none=True)
    worker = fields.Nested(UserSummarySchema, allow_none=True)
    escrow = fields.Nested(EscrowSummarySchema, allow_none=True)
    proof = fields.Nested(ProofSummarySchema, allow_none=True)


class TaskStateSchema(Schema):
    id = fields.UUID(required=True)
    state = fields.String(required=True)
    proof_submitted_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)


class EscrowStateSchema(Schema):
    id = fields.UUID(required=True)
    state = fields.String(required=True)
    amount = fields.Integer()
    released_at = fields.DateTime(allow_none=True)
    refunded_at = fields.DateTime(allow_none=True)
    stripe_transfer_id = fields.String(allow_none=True)
    stripe_refund_id = fields.String(allow_none=True)


class XPAwardSchema(Schema):
    id = fields.UUID()
    base_xp = fields.Integer(required=True)
    streak_multiplier = fields.Decimal(as_string=True, required=True)
    trust_multiplier = fields.Decimal(as_string=True)
    effective_xp = fields.Integer(required=True)
    user_xp_after = fields.Integer()
    user_level_before = fields.Integer()
    user_level_after = fields.Integer()


class PhotoSchema(Schema):
    id = fields.UUID(required=True)
    storage_key = fields.String(required=True)
    content_type = fields.String(required=True)
    file_size_bytes = fields.Integer(required=True)
    checksum_sha256 = fields.String(required=True)
    sequence_number = fields.Integer(required=True)
    capture_time = fields.DateTime(allow_none=True)
    location_lat = fields.Float(allow_none=True, metadata={"description": "From the photo's EXIF GPS"})
    location_lng = fields.Float(allow_none=True, metadata={"description": "From the photo's EXIF GPS"})
    camera_make = fields.String(allow_none=True)
    camera_model = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    url = fields.String(metadata={"description": "Where the participant's app fetches the photo"})


class ProofSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    submitter_id = fields.UUID(required=True)
    state = fields.String(required=True)
    description = fields.String(allow_none=True)
    photos = fields.List(fields.Nested(PhotoSchema))
    submitted_at = fields.DateTime(allow_none=True)
    review_deadline = fields.DateTime(allow_none=True)
    reviewed_by = fields.UUID(allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)


class ProofReviewSchema(Schema):
    id = fields.UUID(required=True)
    state = fields.String(required=True)
    reviewed_by = fields.UUID(allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    task = fields.Nested(TaskStateSchema)
    escrow = fields.Nested(EscrowStateSchema, allow_none=True)
    xp_awarded = fields.Nested(XPAwardSchema, allow_none=True)


class EvidenceSchema(Schema):
    id = fields.UUID(required=True)
    submitted_by = fields.UUID(allow_none=True)
    evidence_type = fields.String(required=True)
    storage_key = fields.String(required=True)
    description = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)


class DisputeCoreSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    escrow_id = fields.UUID(required=True)
    opened_by = fields.UUID(required=True)
    poster_id = fields.UUID(required=True)
    worker_id = fields.UUID(required=True)
    reason = fields.String(required=True)
    description = fields.String(required=True)
    state = fields.String(required=True)
    resolution = fields.String(allow_none=True)
    resolution_notes = fields.String(allow_none=True)
    resolved_by = fields.UUID(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    outcome_escrow_action = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)


class DisputeSchema(DisputeCoreSchema):
    evidence = fields.List(fields.Nested(EvidenceSchema))
