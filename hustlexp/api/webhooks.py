"""POST /webhooks/stripe: Stripe's event deliveries. Public (Stripe signs the body instead).

The raw body goes to the handler untouched: the signature covers its exact bytes. A bad
signature answers 400 WEBHOOK_SIGNATURE_INVALID, a signed event whose fields the handlers
cannot use 400 VALIDATION_ERROR (EVENT below states which); any other failure answers its
error status (5xx for anything unexpected), and Stripe retries every non-2xx delivery."""

from __future__ import annotations

from typing import Any, ClassVar

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint as PlainBlueprint
from marshmallow import post_dump

from hustlexp.api.base import Schema, fields, respond, services
from hustlexp.obs import metrics
from hustlexp.services.stripe_webhooks import HANDLED_TYPES, MAX_CREATED, MAX_EVENT_ID, MONEY_EVENT_TYPES

blp = PlainBlueprint("webhooks", __name__, description="Stripe webhook (signed by Stripe)")


# What the handlers read of a Stripe event, and the rules services.stripe_webhooks.check_event_shape
# enforces on it (a correctly signed event breaking them is 400 VALIDATION_ERROR); everything
# else in Stripe's event passes untouched.
# null counts as absent for every optional field, as in the handlers.
_TEXT = {"type": "string", "pattern": fields.NO_NUL}
_ID = {**_TEXT, "minLength": 1}
_OPTIONAL_TEXT = {**_TEXT, "nullable": True}
_METADATA = {"type": "object", "additionalProperties": _TEXT, "nullable": True}
_CENTS = {"type": "integer", "nullable": True}
_FLAG = {"type": "boolean", "nullable": True}
EVENT: dict[str, Any] = {
    "type": "object",
    "description": "A Stripe event, signed by Stripe (Stripe-Signature header over the raw body; "
                   "a signature more than 5 minutes old or ahead is refused). The handled types "
                   f"({', '.join(HANDLED_TYPES)}) need data.object.id; account.updated needs created. "
                   "For the money events "
                   f"({', '.join(MONEY_EVENT_TYPES)}) data.object's charge, payment_intent, destination "
                   "(at most 255 characters), reason, failure_code (100) and status (50), and the event's "
                   "account (255), are text without NUL when present, and amount_reversed is integer cents; "
                   "for payment_intent.succeeded, latest_charge is a charge id (255) or a charge whose "
                   "outcome.risk_level is text of at most 20 characters. A Stripe failure while reading "
                   "the charge's Radar verdict that a retry may cure answers 502, so Stripe redelivers.",
    "required": ["id", "type", "data"],
    "properties": {
        "id": {**_ID, "maxLength": MAX_EVENT_ID},
        "type": {**_ID, "maxLength": 100},
        "created": {"type": "integer", "nullable": True, "minimum": 0, "maximum": MAX_CREATED,
                    "description": "Unix time the event happened"},
        "data": {"type": "object", "required": ["object"], "properties": {"object": {
            "type": "object",
            "properties": {
                "id": _ID, "amount": _CENTS, "amount_received": _CENTS, "transfer_group": _OPTIONAL_TEXT,
                "metadata": _METADATA,
                "last_payment_error": {"type": "object", "nullable": True,
                                       "properties": {"code": _OPTIONAL_TEXT, "message": _OPTIONAL_TEXT}},
                "refunds": {"type": "object", "nullable": True, "properties": {"data": {
                    "type": "array", "nullable": True, "items": {
                        "type": "object", "required": ["id"], "properties": {"id": _ID, "metadata": _METADATA}}}}},
                # A Connect account (account.updated).
                "details_submitted": _FLAG, "payouts_enabled": _FLAG, "charges_enabled": _FLAG,
                "requirements": {"type": "object", "nullable": True, "properties": {
                    "currently_due": {"type": "array", "nullable": True, "items": _TEXT},
                    "disabled_reason": {**_OPTIONAL_TEXT, "maxLength": 255}}},
            },
        }}},
    },
}


class WebhookAckSchema(Schema):
    """{"received": true} plus whatever the handler reports (event id, outcome...)."""

    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {"additionalProperties": True}

    received = fields.Boolean(required=True)
    event_id = fields.String()
    type = fields.String()
    result = fields.String(metadata={"description": "processed, ignored, skipped, duplicate..."})
    reason = fields.String(allow_none=True)

    @post_dump(pass_original=True)
    def _keep_handler_fields(self, data: dict[str, Any], original: Any, **_: Any) -> dict[str, Any]:
        return {**{k: v for k, v in original.items() if k not in data}, **data}


@blp.route("/webhooks/stripe")
class StripeWebhook(MethodView):
    @blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": EVENT}}})
    @blp.response(200, WebhookAckSchema)
    def post(self) -> Any:
        result = services().webhooks.handle(request.get_data(), request.headers.get("Stripe-Signature"))
        metrics.WEBHOOK_OUTCOMES.labels(
            result.error.code if result.error is not None else str((result.data or {}).get("result", "ok"))).inc()
        outcome: dict[str, Any] = respond(result) or {}
        return {"received": True, **outcome}
