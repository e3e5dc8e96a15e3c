"""The messages inbox: GET /api/conversations (one per task the caller is party to, newest
activity first, cursor-paged) and GET /api/messages/unread-count."""

from __future__ import annotations

from typing import Any

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, CursorPageQuerySchema, MethodView, Schema, fields, respond, services
from hustlexp.api.messages import MessageSchema
from hustlexp.api.ratings import RaterSchema

blp = Blueprint("inbox", __name__, url_prefix="/api", description="Messages inbox")


class OtherUserSchema(RaterSchema):
    trust_tier = fields.Integer(required=True)
    is_verified = fields.Boolean(required=True)


class LastMessageSchema(MessageSchema):
    is_from_me = fields.Boolean(required=True)


class ConversationSchema(Schema):
    task_id = fields.UUID(required=True)
    task_title = fields.String(required=True)
    task_state = fields.String(required=True)
    is_active = fields.Boolean(required=True, metadata={"description": "false: the thread is closed"})
    other_user = fields.Nested(OtherUserSchema, required=True)
    last_message = fields.Nested(LastMessageSchema, allow_none=True, required=True)
    unread_count = fields.Integer(required=True)
    last_activity_at = fields.DateTime(required=True)


class ConversationsSchema(Schema):
    conversations = fields.List(fields.Nested(ConversationSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    has_more = fields.Boolean(required=True)


class UnreadCountSchema(Schema):
    unread_count = fields.Integer(required=True)
    conversations_with_unread = fields.Integer(required=True)


@blp.route("/conversations")
class Conversations(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(CursorPageQuerySchema, location="query")
    @blp.response(200, ConversationsSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The caller's conversations: the other party, the last message, unread count."""
        return respond(services().inbox.conversations(current_user().id, **query))


@blp.route("/messages/unread-count")
class UnreadCount(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, UnreadCountSchema)
    def get(self) -> Any:
        """How many received messages the caller has not read, and in how many conversations."""
        return respond(services().inbox.unread_count(current_user().id))
