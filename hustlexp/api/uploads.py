"""/api/uploads: photos sent straight to object storage (STORAGE_SPEC §4; hustlexp.services.uploads).

`POST /api/uploads` announces a file and returns where to PUT it (a presigned URL binding its
content type and size, valid 15 minutes); `POST /api/uploads/{id}/confirm` has the server
check the stored object and attach it. With local storage the presigned URLs point at
`/storage/objects/...` (hustlexp.api.objects), which plays the object store.
`GET /api/uploads/url` hands a party a short-lived signed URL to read a private object
(avatars are public)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.api.schemas import PhotoSchema
from hustlexp.services.uploads import BUCKETS

blp = Blueprint("uploads", __name__, url_prefix="/api/uploads", description="Direct uploads to object storage")

MAX_BYTES = max(b.max_bytes for b in BUCKETS.values())
CONTENT_TYPES = sorted({t for b in BUCKETS.values() for t in b.content_types})


class UploadCreateSchema(Schema):
    bucket = fields.String(required=True, validate=validate.OneOf(sorted(BUCKETS)))
    content_type = fields.String(required=True, validate=validate.OneOf(CONTENT_TYPES), metadata={
        "description": "proofs, evidence: image/jpeg, image/png, image/heic; avatars, messages: "
                       "image/jpeg, image/png (400 VALIDATION_ERROR otherwise)"})
    size = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_BYTES), metadata={
        "description": "The file's exact length in bytes: at most 10 MB for proofs and evidence, "
                       "5 MB for avatars and messages (400 VALIDATION_ERROR otherwise)"})
    task_id = fields.UUID(metadata={"description": "The task the photo is for: required for every bucket "
                                                   "but avatars, refused for avatars (400 VALIDATION_ERROR)"})


class UploadSchema(Schema):
    id = fields.UUID(required=True)
    bucket = fields.String(required=True)
    task_id = fields.UUID(allow_none=True)
    storage_key = fields.String(required=True, metadata={
        "description": "Name it in photo_keys (messages) or evidence_urls (disputes) once confirmed"})
    content_type = fields.String(required=True)
    file_size_bytes = fields.Integer(required=True)
    state = fields.String(required=True, metadata={"description": "PENDING, CONFIRMED or ATTACHED"})
    expires_at = fields.DateTime(required=True, metadata={
        "description": "Until when it may be confirmed (PENDING) or used (CONFIRMED)"})
    checksum_sha256 = fields.String(allow_none=True)
    capture_time = fields.DateTime(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)
    attached_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)


class UploadTargetSchema(Schema):
    upload = fields.Nested(UploadSchema, required=True)
    upload_url = fields.String(required=True, metadata={"description": "PUT the file's bytes here"})
    method = fields.String(required=True)
    headers = fields.Dict(keys=fields.String(), values=fields.String(), required=True, metadata={
        "description": "Send exactly these headers with the PUT (they are part of its signature)"})
    expires_at = fields.DateTime(required=True, metadata={"description": "When upload_url stops working"})


class ConfirmSchema(Schema):
    capture_time = fields.AwareDateTime(metadata={"description": "Proofs: used when the image has no EXIF time"})


class UploadConfirmedSchema(Schema):
    upload = fields.Nested(UploadSchema, required=True)
    photo = fields.Nested(PhotoSchema, allow_none=True, metadata={"description": "proofs: the photo attached"})
    avatar_url = fields.String(allow_none=True, metadata={"description": "avatars: the new public address"})


class ReadQuerySchema(Schema):
    key = fields.String(required=True, validate=validate.Length(min=1, max=500))


class ReadUrlSchema(Schema):
    url = fields.String(required=True)
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "null: a public address"})


@blp.route("")
class Uploads(MethodView):
    @requires_user
    @blp.arguments(UploadCreateSchema)
    @blp.response(201, UploadTargetSchema)
    @blp.alt_response(409, response="CONFLICT", description="proofs: the task is not ACCEPTED")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Object storage is unreachable")
    def post(self, body: dict[str, Any]) -> Any:
        """Announce a photo (bucket proofs: the task's worker; messages, evidence: its poster or
        worker; avatars: your own) and get a presigned PUT for it, then confirm it."""
        return respond(services().uploads.create(current_user().id, **body))


@blp.route("/<uuid:upload_id>/confirm")
class UploadConfirm(MethodView):
    @requires_user
    @blp.arguments(ConfirmSchema)
    @blp.response(200, UploadConfirmedSchema)
    @blp.alt_response(409, response="CONFLICT", description="Nothing uploaded yet, or the upload expired")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Object storage is unreachable")
    def post(self, body: dict[str, Any], upload_id: UUID) -> Any:
        """The server fetches the uploaded object, checks its size and type against the
        announcement, decodes it as an image, hashes it and reads its EXIF, then attaches it
        (a proof photo, the avatar) or keeps it for a message or a dispute. A file that does
        not match is deleted: 400 VALIDATION_ERROR."""
        out = respond(services().uploads.confirm(upload_id, current_user().id, **body))
        if out["photo"] is not None:
            out["photo"] = {**out["photo"], "url": f"/api/proofs/photos/{out['photo']['id']}"}
        return out


@blp.route("/url")
class UploadReadUrl(MethodView):
    @requires_user
    @blp.arguments(ReadQuerySchema, location="query")
    @blp.response(200, ReadUrlSchema)
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Object storage is unreachable")
    def get(self, query: dict[str, Any]) -> Any:
        """A short-lived signed URL to read a stored photo (the task's poster, its worker or an
        admin); an avatar's public address."""
        return respond(services().uploads.read_url(query["key"], current_user().id))
