"""/api/proofs: the poster's review of a submitted proof (queue B034), and proof photos."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import Response

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.api.schemas import ProofReviewSchema

blp = Blueprint("proofs", __name__, url_prefix="/api/proofs", description="Proof review")


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=1000), fields.NOT_BLANK])


@blp.route("/<uuid:proof_id>/accept")
class ProofAccept(MethodView):
    @requires_user
    @blp.response(200, ProofReviewSchema)
    def post(self, proof_id: UUID) -> Any:
        """Approve (the task's poster): the task completes, the escrow pays the worker, XP is awarded."""
        return respond(services().proofs.accept(proof_id, current_user().id))


@blp.route("/<uuid:proof_id>/reject")
class ProofReject(MethodView):
    @requires_user
    @blp.arguments(RejectSchema)
    @blp.response(200, ProofReviewSchema)
    def post(self, body: dict[str, Any], proof_id: UUID) -> Any:
        """Reject with a reason (the task's poster): the task goes back to the worker."""
        return respond(services().proofs.reject(proof_id, current_user().id, body["reason"]))


@blp.route("/photos/<uuid:photo_id>")
class ProofPhoto(MethodView):
    @requires_user
    @blp.response(200, content_type="application/octet-stream",
                  description="The photo's bytes, with its content type")
    def get(self, photo_id: UUID) -> Any:
        """A proof photo (the task's poster, worker or an admin)."""
        data, content_type = respond(services().proofs.read_photo(photo_id, current_user().id))
        return Response(data, mimetype=content_type, headers={"Cache-Control": "private, max-age=3600"})
