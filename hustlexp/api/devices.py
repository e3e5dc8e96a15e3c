"""Push devices: the app registers its FCM registration token after sign-in and removes it
at sign-out (hustlexp.services.push sends to every device a user has)."""

from __future__ import annotations

from typing import Any

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.services.push import PLATFORMS, TOKEN_MAX

blp = Blueprint("devices", __name__, url_prefix="/api/users/me/devices",
                description="Devices that receive the caller's push notifications")


class DeviceSchema(Schema):
    token = fields.String(required=True, validate=[validate.Length(min=1, max=TOKEN_MAX), fields.NOT_BLANK],
                          metadata={"description": "The FCM registration token of this app install"})
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))


class DeviceResultSchema(Schema):
    token = fields.String(required=True)
    platform = fields.String(required=True, metadata={"enum": list(PLATFORMS)})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class DeviceRemovedSchema(Schema):
    removed = fields.Boolean(required=True)


@blp.route("")
class Devices(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(DeviceSchema)
    @blp.response(200, DeviceResultSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Register (or refresh) this install's token. A token registered by another user
        before moves to the caller: pushes follow whoever signed in last on the device."""
        return respond(services().pushes.register_device(current_user().id, body["token"], body["platform"]))


@blp.route("/<string:token>")
class DeviceByToken(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, DeviceRemovedSchema)
    def delete(self, token: str) -> Any:
        """Stop pushing to this install (sign-out)."""
        return respond(services().pushes.remove_device(current_user().id, token))
