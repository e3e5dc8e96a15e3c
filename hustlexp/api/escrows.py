"""/api/escrows: releasing and refunding an escrow by hand (queue B033). Normally both happen
inside task completion, cancellation or a dispute ruling; these routes let the poster or an
admin with can_override_escrow finish what those started."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.api.schemas import EscrowSchema

blp = Blueprint("escrows", __name__, url_prefix="/api/escrows", description="Escrow release and refund")


class RefundSchema(Schema):
    reason = fields.String(validate=validate.Length(max=500))


@blp.route("/<uuid:escrow_id>")
class EscrowById(MethodView):
    @requires_user
    @blp.response(200, EscrowSchema)
    def get(self, escrow_id: UUID) -> Any:
        """One escrow (the task's poster, worker or an admin)."""
        return respond(services().escrows.get_by_id(escrow_id, current_user().id))


@blp.route("/<uuid:escrow_id>/release")
class EscrowRelease(MethodView):
    @requires_user
    @blp.response(200, EscrowSchema)
    def post(self, escrow_id: UUID) -> Any:
        """Release to the worker (85 %) once the task is COMPLETED; a released escrow is returned as is."""
        return respond(services().escrows.release(escrow_id, actor_id=current_user().id))


@blp.route("/<uuid:escrow_id>/refund")
class EscrowRefund(MethodView):
    @requires_user
    @blp.arguments(RefundSchema)
    @blp.response(200, EscrowSchema)
    def post(self, body: dict[str, Any], escrow_id: UUID) -> Any:
        """Refund the poster in full after a cancellation or expiry (admins also during a dispute)."""
        return respond(services().escrows.refund(escrow_id, actor_id=current_user().id,
                                                 reason=body.get("reason") or "manual_refund"))
