"""The admin payout desk, on the admin blueprint (/api/admin): money movements by desk status
(services/payout_desk.py says how they map onto the outbox), retrying one, chargebacks, and
clearing a payment Radar flagged. Lists are keyset-paged: pass the previous page's cursor."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.api.admin import AdminNoteSchema, blp
from hustlexp.api.auth import current_user, requires_admin
from hustlexp.api.base import MethodView, Schema, fields, respond, services, validate
from hustlexp.domain import MoneyKind, MoneyStatus
from hustlexp.services.payout_desk import DESK_STATUSES

MONEY_KINDS = [kind.value for kind in MoneyKind]
OUTBOX_STATUSES = [status.value for status in MoneyStatus]
CHARGEBACK_STATUSES = ("OPEN", "WON", "LOST")
HOLDS = ("CHARGEBACK", "CHARGEBACK_LOST")


class PayoutQuerySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(DESK_STATUSES))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    after = fields.UUID(metadata={"description": "next_after of the previous page"})


class DeskPayoutSchema(Schema):
    id = fields.UUID(required=True, metadata={"description": "The money_outbox id"})
    escrow_id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    kind = fields.String(required=True, metadata={"enum": list(MONEY_KINDS)})
    amount = fields.Integer(required=True, metadata={"description": "Cents"})
    recipient_id = fields.UUID(allow_none=True, required=True)
    status = fields.String(required=True, metadata={"enum": list(OUTBOX_STATUSES)})
    desk_status = fields.String(required=True, metadata={"enum": list(DESK_STATUSES)})
    attempt_count = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(required=True)
    last_attempt_at = fields.DateTime(allow_none=True, required=True)
    last_error = fields.String(allow_none=True, required=True)
    stripe_object_id = fields.String(allow_none=True, required=True)
    chargeback_hold = fields.String(allow_none=True, required=True, metadata={"enum": [*HOLDS, None]})
    created_at = fields.DateTime(required=True)


class DeskPayoutPageSchema(Schema):
    payouts = fields.List(fields.Nested(DeskPayoutSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_after = fields.UUID(allow_none=True, required=True)


class PayoutRetriedSchema(Schema):
    id = fields.UUID(required=True)
    previous_status = fields.String(required=True, metadata={"enum": ["PENDING", "FAILED_PERMANENT"]})
    status = fields.String(required=True, metadata={"enum": ["PENDING"]})
    next_attempt_at = fields.DateTime(required=True)
    action_id = fields.UUID(required=True)


class ChargebackQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(CHARGEBACK_STATUSES))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    before = fields.UUID(metadata={"description": "next_before of the previous page"})


class ChargebackSchema(Schema):
    id = fields.UUID(required=True)
    stripe_dispute_id = fields.String(required=True)
    escrow_id = fields.UUID(allow_none=True, required=True)
    task_id = fields.UUID(allow_none=True, required=True)
    stripe_charge_id = fields.String(allow_none=True, required=True)
    stripe_payment_intent_id = fields.String(allow_none=True, required=True)
    amount = fields.Integer(required=True, metadata={"description": "Cents the bank disputed"})
    reason = fields.String(allow_none=True, required=True)
    status = fields.String(required=True, metadata={"enum": list(CHARGEBACK_STATUSES)})
    stripe_status = fields.String(allow_none=True, required=True)
    money_held = fields.Boolean(required=True, metadata={
        "description": "The escrow still held the money when the dispute opened, so it was held"})
    loss_amount = fields.Integer(required=True, metadata={
        "description": "Cents the platform is out (the money had already left and the dispute is not won)"})
    escrow_state = fields.String(allow_none=True, required=True)
    chargeback_hold = fields.String(allow_none=True, required=True, metadata={"enum": [*HOLDS, None]})
    opened_at = fields.DateTime(required=True)
    closed_at = fields.DateTime(allow_none=True, required=True)


class ChargebackPageSchema(Schema):
    chargebacks = fields.List(fields.Nested(ChargebackSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_before = fields.UUID(allow_none=True, required=True)


class RiskClearedSchema(Schema):
    escrow_id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    payment_risk_level = fields.String(required=True)
    risk_cleared_at = fields.DateTime(required=True)
    risk_cleared_by = fields.UUID(required=True)
    action_id = fields.UUID(required=True)


@blp.route("/payouts")
class PayoutDesk(MethodView):
    @requires_admin("can_access_financials")
    @blp.arguments(PayoutQuerySchema, location="query")
    @blp.response(200, DeskPayoutPageSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Money movements in one desk status, oldest first: PENDING (due or backing off),
        WAITING_FOR_ACCOUNT (the worker cannot be paid yet: no account, or payouts off), FAILED_PERMANENT (needs an
        admin), LOCKED (a chargeback holds the escrow)."""
        return respond(services().payout_desk.payouts(current_user().id, **query))


@blp.route("/payouts/<uuid:outbox_id>/retry")
class PayoutRetry(MethodView):
    @requires_admin("can_override_escrow")
    @blp.response(200, PayoutRetriedSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such money movement")
    @blp.alt_response(409, response="CONFLICT",
                      description="Not PENDING or FAILED_PERMANENT, or a chargeback holds its escrow (HX204)")
    def post(self, outbox_id: UUID) -> Any:
        """Back to PENDING and due now (the dispatcher sends it within moments); audited."""
        return respond(services().payout_desk.retry(current_user().id, outbox_id))


@blp.route("/chargebacks")
class Chargebacks(MethodView):
    @requires_admin("can_access_financials")
    @blp.arguments(ChargebackQuerySchema, location="query")
    @blp.response(200, ChargebackPageSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Chargebacks (Stripe disputes of a poster's charge), newest first."""
        return respond(services().chargebacks.page(current_user().id, **query))


@blp.route("/escrows/<uuid:escrow_id>/clear-risk")
class RiskClear(MethodView):
    @requires_admin("can_override_escrow")
    @blp.arguments(AdminNoteSchema, required=False)
    @blp.response(200, RiskClearedSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="No such escrow")
    @blp.alt_response(409, response="CONFLICT", description="Not flagged by Radar, or already cleared")
    def post(self, body: dict[str, Any], escrow_id: UUID) -> Any:
        """Clear a payment Radar scored elevated or highest: a `highest` task may be accepted again."""
        return respond(services().payment_risk.clear(current_user().id, escrow_id,
                                                     note=(body or {}).get("note")))
