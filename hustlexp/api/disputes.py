"""/api/disputes: reading a dispute, and the admin's ruling (queue B036)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from marshmallow import ValidationError, validates_schema

from hustlexp.api.auth import current_user, requires_admin, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.api.schemas import DisputeCoreSchema, DisputeSchema, EscrowSchema, TaskStateSchema, XPAwardSchema

blp = Blueprint("disputes", __name__, url_prefix="/api/disputes", description="Disputes")


class ResolveSchema(Schema):
    resolution = fields.String(required=True, validate=validate.OneOf(("HUSTLER_WINS", "CLIENT_WINS", "SPLIT")))
    split_percent = fields.Integer(strict=True, validate=validate.Range(min=1, max=99),
                                   metadata={"description": "The worker's share, only for SPLIT"})
    notes = fields.String(required=True, validate=[validate.Length(min=1, max=5000), fields.NOT_BLANK])

    @validates_schema
    def _split_needs_percent(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("resolution") == "SPLIT") != ("split_percent" in data):
            raise ValidationError({"split_percent": ["required for SPLIT, not allowed otherwise"]})


class ResolvedSchema(Schema):
    dispute = fields.Nested(DisputeCoreSchema, required=True)
    task = fields.Nested(TaskStateSchema, required=True)
    escrow = fields.Nested(EscrowSchema, required=True)
    xp_awarded = fields.Nested(XPAwardSchema, allow_none=True)


@blp.route("/<uuid:dispute_id>")
class DisputeById(MethodView):
    @requires_user
    @blp.response(200, DisputeSchema)
    def get(self, dispute_id: UUID) -> Any:
        """One dispute (its poster, worker or an admin)."""
        return respond(services().disputes.get_by_id(dispute_id, current_user().id))


@blp.route("/<uuid:dispute_id>/resolve")
class DisputeResolve(MethodView):
    @requires_admin("can_resolve_disputes")
    @blp.arguments(ResolveSchema)
    @blp.response(200, ResolvedSchema)
    def post(self, body: dict[str, Any], dispute_id: UUID) -> Any:
        """Rule on a dispute (admin with can_resolve_disputes): HUSTLER_WINS, CLIENT_WINS or SPLIT."""
        return respond(services().disputes.resolve(dispute_id, current_user().id, resolution=body["resolution"],
                                                   notes=body["notes"], split_percent=body.get("split_percent")))
