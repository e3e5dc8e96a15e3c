"""/api/tasks/{id}/messages: the one thread of a task between its poster and worker.

Message-specific limits keep their own codes: text over 500 characters is 400 HX804 and a
photo message outside 1-3 photos is 400 HX803 (the service decides, so the schema below
only checks shapes); sending outside ACCEPTED/PROOF_SUBMITTED/DISPUTED is 409 HX801, a
non-participant gets 403 HX802, and rate limits answer 429 with Retry-After."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.domain import MessageType
from hustlexp.services.messaging import MAX_PHOTOS, MAX_TEXT, TEMPLATES

blp = Blueprint("messages", __name__, url_prefix="/api/tasks", description="Task messaging")

MAX_IDS = 500
STATUSES = ("sent", "pending_moderation", "blocked")


# -- schemas ---------------------------------------------------------------------

class ThreadQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    before = fields.UUID(metadata={"description": "Id of the oldest message already shown"})


class LocationSchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    lng = fields.Float(required=True, validate=validate.Range(min=-180, max=180))


class SharedLocationSchema(LocationSchema):
    expires_at = fields.DateTime(allow_none=True)


_NO_NUL_TEXT = {"type": "string", "pattern": fields.NO_NUL}
_BLANKABLE = {**_NO_NUL_TEXT, "maxLength": MAX_TEXT}
_TEXT = {"type": "string", "pattern": fields.NOT_BLANK.regex.pattern, "minLength": 1, "maxLength": MAX_TEXT}
PHOTO_KEY = r"^[^\s\u0000]([^\u0000]*[^\s\u0000])?$"  # no surrounding whitespace


def _branch(kind: MessageType, required: str, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["message_type", required],
            "properties": {"message_type": {"type": "string", "enum": [kind.value]}, **properties}}


class MessageSendSchema(Schema):
    # Which fields each message type takes (the service's rules, stated for clients).
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {"oneOf": [
        _branch(MessageType.TEXT, "content", content=_TEXT),
        _branch(MessageType.AUTO, "auto_message_template", content=_BLANKABLE,
                auto_message_template={"type": "string", "enum": sorted(TEMPLATES)}),
        _branch(MessageType.PHOTO, "photo_keys", photo_keys={
            "type": "array", "minItems": 1, "maxItems": MAX_PHOTOS,
            "items": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": PHOTO_KEY}}),
        _branch(MessageType.LOCATION, "location", location={"$ref": "#/components/schemas/Location"}),
    ]}

    message_type = fields.String(required=True, validate=validate.OneOf([t.value for t in MessageType]))
    content = fields.String(metadata={"maxLength": MAX_TEXT, "description": "TEXT or AUTO only (HX804 if longer)"})
    auto_message_template = fields.String(validate=validate.OneOf(sorted(TEMPLATES)))
    photo_keys = fields.List(fields.String(), metadata={
        "minItems": 1, "maxItems": MAX_PHOTOS, "description": "PHOTO only: 1-3 storage keys (HX803 otherwise), each of "
                       "your confirmed `messages` uploads for this task (POST /api/uploads; 400 otherwise)"})
    location = fields.Nested(LocationSchema, metadata={"description": "LOCATION only, while ACCEPTED"})


class MessageSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    sender_id = fields.UUID(required=True)
    receiver_id = fields.UUID(required=True)
    message_type = fields.String(required=True, metadata={"enum": [t.value for t in MessageType]})
    content = fields.String(allow_none=True)
    auto_message_template = fields.String(allow_none=True)
    photo_keys = fields.List(fields.String(), required=True)
    photo_urls = fields.List(fields.String(), metadata={
        "description": "The photos, each through a URL signed for an hour (thread and send answers)"})
    photo_count = fields.Integer(required=True)
    location = fields.Nested(SharedLocationSchema, allow_none=True)
    read_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})


class ThreadSchema(Schema):
    messages = fields.List(fields.Nested(MessageSchema), required=True)
    has_more = fields.Boolean(required=True)
    task_state = fields.String(required=True)
    can_send = fields.Boolean(required=True)


class MessageReadSchema(Schema):
    message_ids = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1, max=MAX_IDS))


class MessagesMarkedSchema(Schema):
    marked_count = fields.Integer(required=True)


# -- routes ----------------------------------------------------------------------

@blp.route("/<uuid:task_id>/messages")
class TaskMessages(MethodView):
    @requires_user
    @blp.arguments(ThreadQuerySchema, location="query")
    @blp.response(200, ThreadSchema)
    def get(self, query: dict[str, Any], task_id: UUID) -> Any:
        """The thread, newest first (limit 1-100, default 50; `before` pages back)."""
        return respond(services().messaging.get_thread(task_id, current_user().id, **query))

    @requires_user
    @blp.arguments(MessageSendSchema)
    @blp.response(201, MessageSchema)
    @blp.alt_response(409, response="CONFLICT", description="HX801: the task is not in progress")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS", description="Rate limited; see Retry-After")
    def post(self, body: dict[str, Any], task_id: UUID) -> Any:
        """Send a message to the task's other participant."""
        return respond(services().messaging.send(task_id, current_user().id, **body))


@blp.route("/<uuid:task_id>/messages/read")
class TaskMessagesRead(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(MessageReadSchema)
    @blp.response(200, MessagesMarkedSchema)
    def post(self, body: dict[str, Any], task_id: UUID) -> Any:
        """Mark messages the caller received as read."""
        return respond(services().messaging.mark_read(task_id, current_user().id, body["message_ids"]))
