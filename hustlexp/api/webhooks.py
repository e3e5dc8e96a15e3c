"""POST /webhooks/stripe: Stripe's event deliveries. Public (Stripe signs the body instead).

The raw body goes to the handler untouched: the signature covers its exact bytes. A bad
signature answers 400 WEBHOOK_SIGNATURE_INVALID; any other failure answers its error status
(5xx for anything unexpected), and Stripe retries every non-2xx delivery."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint as PlainBlueprint
from marshmallow import post_dump

from hustlexp.api.base import Schema, fields, respond, services
from hustlexp.obs import metrics

blp = PlainBlueprint("webhooks", __name__, description="Stripe webhook (signed by Stripe)")


class WebhookAckSchema(Schema):
    """{"received": true} plus whatever the handler reports (event id, outcome...)."""

    received = fields.Boolean(required=True)

    @post_dump(pass_original=True)
    def _keep_handler_fields(self, data: dict[str, Any], original: Any, **_: Any) -> dict[str, Any]:
        return {**{k: v for k, v in original.items() if k not in data}, **data}


@blp.route("/webhooks/stripe")
class StripeWebhook(MethodView):
    @blp.doc(requestBody={
        "required": True,
        "content": {"application/json": {"schema": {"type": "object",
                                                    "description": "A Stripe event, signed"}}}})
    @blp.response(200, WebhookAckSchema)
    def post(self) -> Any:
        result = services().webhooks.handle(request.get_data(), request.headers.get("Stripe-Signature"))
        metrics.WEBHOOK_OUTCOMES.labels(
            result.error.code if result.error is not None else str((result.data or {}).get("result", "ok"))).inc()
        outcome: dict[str, Any] = respond(result) or {}
        return {"received": True, **outcome}
