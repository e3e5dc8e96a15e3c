"""/api/notifications: the caller's inbox and notification preferences.

Inbox housekeeping (marking read, preferences) stays open to PAUSED accounts: it changes
nothing in the marketplace."""

from __future__ import annotations

import zoneinfo
from typing import Any

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import (
    Blueprint,
    MethodView,
    PageQuerySchema,
    PatchSchema,
    Schema,
    StrictBoolean,
    fields,
    respond,
    services,
    validate,
)
from hustlexp.domain import NotificationPriority

blp = Blueprint("notifications", __name__, url_prefix="/api/notifications",
                description="The caller's notifications and preferences")

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# The IANA zones this host knows (the tzdata package guarantees the list), so the OpenAPI
# document lists exactly what the server takes.
TIMEZONES = sorted(zoneinfo.available_timezones())
MAX_IDS = 500


# -- schemas ---------------------------------------------------------------------

class NotificationQuerySchema(PageQuerySchema):
    unread_only = fields.Boolean(load_default=False)


class NotificationSchema(Schema):
    id = fields.UUID(required=True)
    user_id = fields.UUID(required=True)
    type = fields.String(required=True, metadata={"description": "The notification category"})
    title = fields.String(required=True)
    body = fields.String(required=True)
    priority = fields.String(required=True, metadata={"enum": [p.value for p in NotificationPriority]})
    task_id = fields.UUID(allow_none=True)
    deep_link = fields.String(required=True)
    read = fields.Boolean(required=True)
    read_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)
    metadata = fields.Dict(keys=fields.String())
    channels = fields.List(fields.String())
    group_id = fields.UUID(allow_none=True)
    group_position = fields.Integer(allow_none=True)


class NotificationListSchema(Schema):
    notifications = fields.List(fields.Nested(NotificationSchema), required=True)
    unread_count = fields.Integer(required=True)
    total = fields.Integer(required=True)
    has_more = fields.Boolean(required=True)


class MarkReadSchema(Schema):
    notification_ids = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1, max=MAX_IDS))


class MarkedSchema(Schema):
    marked_count = fields.Integer(required=True)


class QuietHoursSchema(Schema):
    enabled = fields.Boolean(required=True)
    start = fields.String(required=True, metadata={"example": "22:00"})
    end = fields.String(required=True, metadata={"example": "07:00"})
    timezone = fields.String(required=True, metadata={"example": "America/New_York"})


class CategoriesSchema(Schema):
    task_updates = fields.Boolean(required=True)
    messages = fields.Boolean(required=True)
    xp_badges = fields.Boolean(required=True)
    marketing = fields.Boolean(required=True)


class PreferencesSchema(Schema):
    push_enabled = fields.Boolean(required=True)
    email_enabled = fields.Boolean(required=True)
    sms_enabled = fields.Boolean(required=True)
    quiet_hours = fields.Nested(QuietHoursSchema, required=True)
    categories = fields.Nested(CategoriesSchema, required=True)
    read_receipts = fields.Boolean(required=True)


class QuietHoursPatchSchema(Schema):
    enabled = StrictBoolean()
    start = fields.String(validate=validate.Regexp(HHMM, error="must be HH:MM, 00:00 to 23:59"))
    end = fields.String(validate=validate.Regexp(HHMM, error="must be HH:MM, 00:00 to 23:59"))
    timezone = fields.String(validate=validate.OneOf(TIMEZONES, error="Must be an IANA time zone such as "
                                                                      "America/New_York."),
                             metadata={"description": "An IANA time zone such as America/New_York"})


class CategoriesPatchSchema(Schema):
    task_updates = StrictBoolean()
    messages = StrictBoolean()
    xp_badges = StrictBoolean()
    marketing = StrictBoolean()


class PreferencesPatchSchema(PatchSchema):
    push_enabled = StrictBoolean()
    email_enabled = StrictBoolean()
    sms_enabled = StrictBoolean()
    quiet_hours = fields.Nested(QuietHoursPatchSchema)
    categories = fields.Nested(CategoriesPatchSchema)
    read_receipts = StrictBoolean()


# -- routes ----------------------------------------------------------------------

@blp.route("")
class Notifications(MethodView):
    @requires_user
    @blp.arguments(NotificationQuerySchema, location="query")
    @blp.response(200, NotificationListSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The caller's notifications, newest first (limit 1-100, default 20)."""
        return respond(services().notifications.list(current_user().id, **query))


@blp.route("/read")
class MarkRead(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(MarkReadSchema)
    @blp.response(200, MarkedSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Mark some of the caller's notifications read; others' ids are ignored."""
        return respond(services().notifications.mark_read(current_user().id, body["notification_ids"]))


@blp.route("/read-all")
class MarkAllRead(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, MarkedSchema)
    def post(self) -> Any:
        """Mark every unread notification of the caller read."""
        return respond(services().notifications.mark_all_read(current_user().id))


@blp.route("/preferences")
class Preferences(MethodView):
    @requires_user
    @blp.response(200, PreferencesSchema)
    def get(self) -> Any:
        """Channels, quiet hours, categories and read receipts (defaults until changed)."""
        return respond(services().notifications.get_preferences(current_user().id))

    @requires_user(allow_paused=True)
    @blp.arguments(PreferencesPatchSchema)
    @blp.response(200, PreferencesSchema)
    def patch(self, body: dict[str, Any]) -> Any:
        """Change some preferences; answers the whole preference object."""
        return respond(services().notifications.update_preferences(current_user().id, body))
