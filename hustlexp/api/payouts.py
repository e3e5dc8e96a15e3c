"""The caller's money: the payout account (Stripe Connect Express onboarding), a worker's
earnings and a poster's payments (WALLET_UI_SPEC). Under /api/users/me, next to the profile."""

from __future__ import annotations

from typing import Any

from flask import current_app

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import (
    EXTENSION,
    Blueprint,
    CursorPageQuerySchema,
    MethodView,
    Schema,
    fields,
    respond,
    services,
    validate,
)
from hustlexp.errors import Forbidden
from hustlexp.services.wallet import EARNING_STATUSES

blp = Blueprint("payouts", __name__, url_prefix="/api/users",
                description="The caller's money: payout account, earnings, payments")

CENTS = {"description": "Integer cents"}


# -- schemas ---------------------------------------------------------------------

class PayoutAccountSchema(Schema):
    stripe_connect_id = fields.String(required=True, validate=validate.Regexp(r"^acct_[A-Za-z0-9]{1,250}$"))


class PayoutAccountResultSchema(Schema):
    id = fields.UUID(required=True)
    stripe_connect_id = fields.String(required=True)


class OnboardingLinkSchema(Schema):
    stripe_account_id = fields.String(required=True, metadata={"description": "The caller's Express account"})
    url = fields.String(required=True, metadata={"description": "Open once, in a browser, before expires_at"})
    expires_at = fields.DateTime(required=True)


class PayoutAccountStatusSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["NOT_STARTED", "INCOMPLETE", "COMPLETE"]})
    stripe_account_id = fields.String(allow_none=True, required=True)
    payouts_enabled = fields.Boolean(required=True, metadata={
        "description": "Transfers to the caller go out now; false: they wait, never fail"})
    details_submitted = fields.Boolean(required=True)
    charges_enabled = fields.Boolean(required=True)
    currently_due = fields.List(fields.String(), required=True, metadata={
        "description": "What Stripe still needs from the caller"})
    disabled_reason = fields.String(allow_none=True, required=True)
    synced_at = fields.DateTime(allow_none=True, required=True, metadata={
        "description": "When this was last read from Stripe (null: never)"})


class EarningsTotalsSchema(Schema):
    paid = fields.Integer(required=True, metadata=CENTS)
    on_the_way = fields.Integer(required=True, metadata=CENTS)
    waiting_for_payout_account = fields.Integer(required=True, metadata=CENTS)
    failed = fields.Integer(required=True, metadata=CENTS)


class PayoutSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    task_title = fields.String(required=True)
    escrow_id = fields.UUID(required=True)
    amount = fields.Integer(required=True, metadata={"description": "What the worker receives, in cents"})
    fee_kept = fields.Integer(required=True, metadata={"description": "What the platform kept, in cents"})
    status = fields.String(required=True, metadata={"enum": [*EARNING_STATUSES, "CANCELLED"]})
    stripe_transfer_id = fields.String(allow_none=True, required=True)
    released_at = fields.DateTime(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    paid_at = fields.DateTime(allow_none=True, required=True)


class EarningsSchema(Schema):
    totals = fields.Nested(EarningsTotalsSchema, required=True)
    payouts = fields.List(fields.Nested(PayoutSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    has_more = fields.Boolean(required=True)


class PaymentsTotalsSchema(Schema):
    charged = fields.Integer(required=True, metadata=CENTS)
    held = fields.Integer(required=True, metadata=CENTS)
    released = fields.Integer(required=True, metadata=CENTS)
    refunded = fields.Integer(required=True, metadata=CENTS)


class PaymentSchema(Schema):
    task_id = fields.UUID(required=True)
    task_title = fields.String(required=True)
    task_state = fields.String(required=True)
    escrow_id = fields.UUID(required=True)
    escrow_state = fields.String(required=True)
    price = fields.Integer(required=True, metadata=CENTS)
    charged = fields.Integer(required=True, metadata={"description": "Cents taken from the card"})
    held = fields.Integer(required=True, metadata={"description": "Cents still in escrow"})
    released = fields.Integer(required=True, metadata={"description": "Cents released to the worker, fee included"})
    refunded = fields.Integer(required=True, metadata={"description": "Cents given back (see refund_status)"})
    refund_status = fields.String(allow_none=True, required=True, metadata={
        "enum": ["PENDING", "PROCESSING", "SUCCEEDED", "FAILED_PERMANENT", None],
        "description": "SUCCEEDED: Stripe made the refund; null: nothing to refund"})
    stripe_refund_id = fields.String(allow_none=True, required=True)
    funded_at = fields.DateTime(allow_none=True, required=True)
    released_at = fields.DateTime(allow_none=True, required=True)
    refunded_at = fields.DateTime(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


class PaymentsSchema(Schema):
    totals = fields.Nested(PaymentsTotalsSchema, required=True)
    payments = fields.List(fields.Nested(PaymentSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    has_more = fields.Boolean(required=True)


# -- routes ----------------------------------------------------------------------

@blp.route("/me/payout-account/onboarding")
class PayoutOnboarding(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, OnboardingLinkSchema)
    @blp.alt_response(502, response="BAD_GATEWAY", description="Stripe refused or could not be reached")
    def post(self) -> Any:
        """Start or continue Stripe Connect onboarding: the caller's Express account (made once)
        and a fresh one-time link into Stripe's forms. Stripe sends the caller back to the app's
        /settings/payments (?success=true, or ?refresh=true for a new link)."""
        return respond(services().connect.start_onboarding(current_user().id))


@blp.route("/me/payout-account")
class PayoutAccount(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, PayoutAccountStatusSchema)
    def get(self) -> Any:
        """The caller's payout account: NOT_STARTED, INCOMPLETE or COMPLETE, whether payouts go
        out, and what Stripe still wants. Refreshed from Stripe when our copy is stale."""
        return respond(services().connect.status(current_user().id))

    @requires_user(allow_paused=True)
    @blp.arguments(PayoutAccountSchema)
    @blp.response(200, PayoutAccountResultSchema)
    def put(self, body: dict[str, Any]) -> Any:
        """Set the caller's payout account id by hand (acct_...), for accounts made outside
        onboarding. Only where HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS allows it (not in production by
        default): 403 FORBIDDEN otherwise. Transfers that waited for an account become due."""
        if not current_app.extensions[EXTENSION].settings.manual_payout_accounts:
            raise Forbidden("Payout accounts are set up through onboarding "
                            "(POST /api/users/me/payout-account/onboarding).")
        return respond(services().users.set_connect_account(current_user().id, body["stripe_connect_id"]))


@blp.route("/me/earnings")
class Earnings(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(CursorPageQuerySchema, location="query")
    @blp.response(200, EarningsSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The caller's earnings as a worker: totals (paid, on the way, waiting for a payout
        account, failed) and one payout per task, newest first (cursor-paged)."""
        return respond(services().wallet.earnings(current_user().id, **query))


@blp.route("/me/payments")
class Payments(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(CursorPageQuerySchema, location="query")
    @blp.response(200, PaymentsSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The caller's payments as a poster: per task what was charged, is held in escrow, was
        released and refunded, newest first (cursor-paged), with totals."""
        return respond(services().wallet.payments(current_user().id, **query))
