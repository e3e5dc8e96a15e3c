"""/api/tasks: posting, browsing and moving a task through its life, plus the escrow, proof
and dispute of one task (queue B032-B036). Each view checks who is calling, calls one
service, and shapes the answer; the services hold the rules."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

import marshmallow as ma

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import (
    MAX_OFFSET,
    Blueprint,
    MethodView,
    PageQuerySchema,
    Schema,
    StrictBoolean,
    fields,
    respond,
    services,
    validate,
)
from hustlexp.api.schemas import (
    TASK_STATES,
    DisputeCoreSchema,
    DisputeSchema,
    EscrowSchema,
    EscrowStateSchema,
    PhotoSchema,
    ProofSchema,
    TaskDetailSchema,
    TaskSchema,
    TaskStateSchema,
    UserSummarySchema,
    XPAwardSchema,
)
from hustlexp.services.dispute import REASONS
from hustlexp.services.task import CATEGORIES, LIVE_MIN_PRICE

blp = Blueprint("tasks", __name__, url_prefix="/api/tasks", description="Tasks, their escrow, proof and dispute")


# -- schemas ---------------------------------------------------------------------

class TaskCreateSchema(Schema):
    # A LIVE task costs at least 1500 cents (the service checks it; stated here for clients).
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {"anyOf": [
        {"properties": {"mode": {"enum": ["STANDARD"]}}},
        {"properties": {"price": {"minimum": LIVE_MIN_PRICE}}},
    ]}

    title = fields.String(required=True, validate=[validate.Length(min=1, max=255), fields.NOT_BLANK])
    description = fields.String(required=True, validate=[validate.Length(min=1, max=5000), fields.NOT_BLANK])
    requirements = fields.String(validate=validate.Length(max=2000))
    location = fields.String(required=True, validate=validate.Length(min=1, max=255))
    location_lat = fields.Float(validate=validate.Range(min=-90, max=90), allow_nan=False)
    location_lng = fields.Float(validate=validate.Range(min=-180, max=180), allow_nan=False)
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    price = fields.Integer(required=True, strict=True, validate=validate.Range(min=500, max=10_000_000))
    mode = fields.String(load_default="STANDARD", validate=validate.OneOf(("STANDARD", "LIVE")))
    deadline = fields.AwareDateTime(required=True, metadata={
        "description": "When the task must be done: a time with its offset, in the future (400 otherwise)"})
    requires_proof = StrictBoolean(load_default=True)
    proof_instructions = fields.String(validate=validate.Length(max=2000))
    required_trust_tier = fields.Integer(strict=True, validate=validate.Range(min=0, max=4))
    risk_level = fields.String(validate=validate.OneOf(("low", "medium", "high", "critical")))


class IdempotencyHeaderSchema(ma.Schema):
    """Only this header is read; every other header passes through untouched."""

    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = fields.String(data_key="Idempotency-Key",
                                    validate=[validate.Length(min=1, max=100), validate.Regexp(r"^[\x21-\x7e]+$")])


class TaskCreatedSchema(Schema):
    id = fields.UUID(required=True)
    poster_id = fields.UUID(required=True)
    state = fields.String(required=True)
    price = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    escrow_id = fields.UUID(required=True)
    payment_intent_id = fields.String(allow_none=True)
    client_secret = fields.String(allow_none=True)
    replayed = fields.Boolean(metadata={"description": "True when an Idempotency-Key retry found this task"})


class TaskListQuerySchema(PageQuerySchema):
    state = fields.List(fields.String(validate=validate.OneOf(TASK_STATES)))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    mode = fields.String(validate=validate.OneOf(("STANDARD", "LIVE")))
    poster_id = fields.UUID()
    worker_id = fields.UUID()
    min_price = fields.Integer(validate=validate.Range(min=0))
    max_price = fields.Integer(validate=validate.Range(min=0))
    sort = fields.String(load_default="created_at", validate=validate.OneOf(("created_at", "price", "deadline")))
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))
    offset = fields.Integer(validate=validate.Range(min=0, max=MAX_OFFSET), metadata={
        "description": "Skip this many rows and count `total` (older clients); prefer `cursor`"})
    cursor = fields.String(validate=validate.Length(min=1, max=500), metadata={
        "description": "`next_cursor` of the previous page, exactly as received (keyset paging); "
                       "not with `offset`"})


class TaskListItemSchema(Schema):
    id = fields.UUID(required=True)
    title = fields.String(required=True)
    category = fields.String(allow_none=True)
    price = fields.Integer(required=True)
    state = fields.String(required=True)
    mode = fields.String(required=True)
    location = fields.String(allow_none=True)
    deadline = fields.DateTime(allow_none=True)
    poster_id = fields.UUID(required=True)
    worker_id = fields.UUID(allow_none=True)
    poster = fields.Nested(UserSummarySchema, required=True)
    created_at = fields.DateTime(required=True)


class TaskListSchema(Schema):
    tasks = fields.List(fields.Nested(TaskListItemSchema), required=True)
    total = fields.Integer(required=True, allow_none=True,
                           metadata={"description": "Counted only when paging by offset; else null"})
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(required=True, allow_none=True,
                                metadata={"description": "Pass as `cursor` for the next page; null on the last"})
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class AcceptedSchema(Schema):
    id = fields.UUID(required=True)
    state = fields.String(required=True)
    worker_id = fields.UUID(required=True)
    accepted_at = fields.DateTime(required=True)


class ProofSubmitSchema(Schema):
    description = fields.String(required=True, validate=[validate.Length(min=1, max=2000), fields.NOT_BLANK])
    photo_keys = fields.List(fields.String(validate=validate.Length(min=1, max=500)),
                             validate=validate.Length(min=1, max=5),
                             metadata={"description": "Storage keys of the uploaded photos the proof keeps; "
                                                      "the others are deleted. Omit to keep every photo."})


class ProofSubmittedSchema(Schema):
    task = fields.Nested(TaskStateSchema, required=True)
    proof = fields.Nested(ProofSchema, required=True)


class CompletionSchema(Schema):
    task = fields.Nested(TaskSchema, required=True)
    escrow = fields.Nested(EscrowStateSchema, required=True)
    xp_awarded = fields.Nested(XPAwardSchema, allow_none=True)


class CancelSchema(Schema):
    reason = fields.String(validate=validate.Length(max=1000))


class CancelledSchema(Schema):
    task = fields.Nested(TaskStateSchema, required=True)
    escrow = fields.Nested(EscrowStateSchema, required=True)


class PaymentIntentSchema(Schema):
    escrow_id = fields.UUID(required=True)
    payment_intent_id = fields.String(required=True)
    client_secret = fields.String(allow_none=True)
    amount = fields.Integer(required=True)
    status = fields.String()


class DisputeCreateSchema(Schema):
    reason = fields.String(required=True, validate=validate.OneOf(REASONS))
    description = fields.String(required=True, validate=[validate.Length(min=1, max=2000), fields.NOT_BLANK])
    evidence_urls = fields.List(
        fields.String(validate=validate.Length(min=1, max=500)), validate=validate.Length(max=10),
        metadata={"description": "storage_key of each of your confirmed `evidence` uploads for this task "
                                 "(POST /api/uploads); anything else is 400 VALIDATION_ERROR"})


class DisputeOpenedSchema(Schema):
    dispute = fields.Nested(DisputeCoreSchema, required=True)
    task = fields.Nested(TaskStateSchema, required=True)
    escrow = fields.Nested(EscrowStateSchema, required=True)


class PhotoUploadSchema(Schema):
    capture_time = fields.AwareDateTime()


class PhotoDeletedSchema(Schema):
    id = fields.UUID(required=True)
    deleted = fields.Boolean(required=True)


class ProofPhotoFileSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


# -- views -----------------------------------------------------------------------

@blp.route("")
class Tasks(MethodView):
    @requires_user
    @blp.arguments(TaskCreateSchema)
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.response(201, TaskCreatedSchema)
    def post(self, body: dict[str, Any], headers: dict[str, Any]) -> Any:
        """Post a task: OPEN, with a PENDING escrow of its price and the PaymentIntent to pay it.
        Send an Idempotency-Key header to make retries safe: the same key returns the same task."""
        return respond(services().tasks.create(current_user().id, idempotency_key=headers.get("idempotency_key"),
                                               **body))

    @requires_user
    @blp.arguments(TaskListQuerySchema, location="query")
    @blp.response(200, TaskListSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Browse: OPEN tasks and your own (admins see all), filtered, sorted, paged."""
        query["states"] = query.pop("state", None)
        return respond(services().tasks.list(current_user().id, **query))


@blp.route("/<uuid:task_id>")
class TaskById(MethodView):
    @requires_user
    @blp.response(200, TaskDetailSchema)
    def get(self, task_id: UUID) -> Any:
        """One task with its poster, worker, escrow and latest proof."""
        return respond(services().tasks.get_by_id(task_id, current_user().id))


@blp.route("/<uuid:task_id>/accept")
class TaskAccept(MethodView):
    @requires_user
    @blp.response(200, AcceptedSchema)
    def post(self, task_id: UUID) -> Any:
        """Take the task (not your own; escrow funded; trust tier and risk allowed)."""
        return respond(services().tasks.accept(task_id, current_user().id))


@blp.route("/<uuid:task_id>/proof")
class TaskProof(MethodView):
    @requires_user
    @blp.arguments(ProofSubmitSchema)
    @blp.response(200, ProofSubmittedSchema)
    def post(self, body: dict[str, Any], task_id: UUID) -> Any:
        """Submit the proof (its 1-5 photos uploaded first); the poster has 48 h to review.
        `photo_keys` keeps only the photos it names and deletes the rest; a refused submission
        changes nothing."""
        out = respond(services().tasks.submit_proof(task_id, current_user().id, description=body["description"],
                                                    photo_keys=body.get("photo_keys")))
        return {"task": out["task"], "proof": _with_urls(out["proof"])}

    @requires_user
    @blp.response(200, ProofSchema)
    def get(self, task_id: UUID) -> Any:
        """The task's latest proof with its photos."""
        return _with_urls(respond(services().proofs.get_by_task_id(task_id, current_user().id)))


@blp.route("/<uuid:task_id>/proof/photos")
class TaskProofPhotos(MethodView):
    @requires_user
    @blp.arguments(PhotoUploadSchema, location="form")
    @blp.arguments(ProofPhotoFileSchema, location="files")
    @blp.response(201, PhotoSchema)
    def post(self, form: dict[str, Any], files: dict[str, Any], task_id: UUID) -> Any:
        """Upload one proof photo (multipart field `file`: a JPEG, PNG or HEIC image that decodes, at
        most 10 MB; larger is 413 PAYLOAD_TOO_LARGE). Capture time, GPS position and camera are read
        from its EXIF; `capture_time` is used only when the image carries none."""
        data = files["file"].read()
        photo = respond(services().proofs.upload_photo(task_id, current_user().id, data,
                                                       capture_time=form.get("capture_time")))
        return _photo_url(photo)


@blp.route("/<uuid:task_id>/proof/photos/<uuid:photo_id>")
class TaskProofPhoto(MethodView):
    @requires_user
    @blp.response(200, PhotoDeletedSchema)
    def delete(self, task_id: UUID, photo_id: UUID) -> Any:
        """Take an uploaded photo off the task's proof while it is not yet submitted (the worker);
        the file is deleted too."""
        return respond(services().proofs.delete_photo(task_id, photo_id, current_user().id))


@blp.route("/<uuid:task_id>/complete")
class TaskComplete(MethodView):
    @requires_user
    @blp.response(200, CompletionSchema)
    def post(self, task_id: UUID) -> Any:
        """Complete the task (the poster, after accepting its proof): escrow released, XP awarded.
        Completing a completed task returns it unchanged."""
        return respond(services().tasks.complete(task_id, current_user().id))


@blp.route("/<uuid:task_id>/cancel")
class TaskCancel(MethodView):
    @requires_user
    @blp.arguments(CancelSchema)
    @blp.response(200, CancelledSchema)
    def post(self, body: dict[str, Any], task_id: UUID) -> Any:
        """Cancel an OPEN or ACCEPTED task (its poster or an admin); the poster is refunded in full."""
        return respond(services().tasks.cancel(task_id, current_user().id, reason=body.get("reason")))


@blp.route("/<uuid:task_id>/escrow")
class TaskEscrow(MethodView):
    @requires_user
    @blp.response(200, EscrowSchema)
    def get(self, task_id: UUID) -> Any:
        """The task's escrow (its poster, worker or an admin)."""
        return respond(services().escrows.get_by_task_id(task_id, current_user().id))


@blp.route("/<uuid:task_id>/escrow/payment-intent")
class TaskPaymentIntent(MethodView):
    @requires_user
    @blp.response(200, PaymentIntentSchema)
    def post(self, task_id: UUID) -> Any:
        """The PaymentIntent that funds the escrow (the poster; reuses a live one)."""
        svc = services()
        escrow = respond(svc.escrows.get_by_task_id(task_id, current_user().id))
        return respond(svc.escrows.create_payment_intent(escrow["id"], actor_id=current_user().id))


@blp.route("/<uuid:task_id>/dispute")
class TaskDispute(MethodView):
    @requires_user
    @blp.arguments(DisputeCreateSchema)
    @blp.response(201, DisputeOpenedSchema)
    def post(self, body: dict[str, Any], task_id: UUID) -> Any:
        """Open a dispute (poster or worker) on a submitted proof or right after a rejection."""
        return respond(services().disputes.create(task_id, current_user().id, reason=body["reason"],
                                                  description=body["description"],
                                                  evidence_keys=body.get("evidence_urls")))

    @requires_user
    @blp.response(200, DisputeSchema)
    def get(self, task_id: UUID) -> Any:
        """The task's dispute (its poster, worker or an admin)."""
        return respond(services().disputes.get_by_task_id(task_id, current_user().id))


def _photo_url(photo: dict[str, Any]) -> dict[str, Any]:
    return {**photo, "url": f"/api/proofs/photos/{photo['id']}"}


def _with_urls(proof: dict[str, Any]) -> dict[str, Any]:
    return {**proof, "photos": [_photo_url(p) for p in proof.get("photos", [])]}

