"""GET /api/tasks/feed: the OPEN tasks the caller can accept right now (the same rules accept
checks), searchable, near a position, ranked, cursor-paged."""

from __future__ import annotations

from typing import Any

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.services.feed import DEFAULT_LIMIT, MAX_LIMIT, MAX_RADIUS_KM, SORTS
from hustlexp.services.task import CATEGORIES

blp = Blueprint("feed", __name__, url_prefix="/api/tasks", description="The worker's task feed")


class FeedQuerySchema(Schema):
    lat = fields.Float(validate=validate.Range(min=-90, max=90), metadata={"description": "With lng"})
    lng = fields.Float(validate=validate.Range(min=-180, max=180), metadata={"description": "With lat"})
    radius_km = fields.Float(validate=validate.Range(min=0.1, max=MAX_RADIUS_KM),
                             metadata={"description": "With lat and lng; default 40"})
    q = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "Full-text search"})
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    min_price = fields.Integer(validate=validate.Range(min=0, max=2**31 - 1), metadata={"description": "Cents"})
    max_price = fields.Integer(validate=validate.Range(min=0, max=2**31 - 1),
                               metadata={"description": "Cents; at least min_price"})
    sort = fields.String(load_default="relevance", validate=validate.OneOf(SORTS),
                         metadata={"description": "distance needs lat and lng"})
    cursor = fields.String(validate=validate.Length(min=1, max=500),
                           metadata={"description": "next_cursor of the previous page, same sort"})
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))


class FeedPosterSchema(Schema):
    id = fields.UUID(required=True)
    full_name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True)
    trust_tier = fields.Integer(required=True)
    is_verified = fields.Boolean(required=True)
    average_rating = fields.Float(allow_none=True, required=True)


class FeedItemSchema(Schema):
    id = fields.UUID(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    category = fields.String(allow_none=True)
    price = fields.Integer(required=True)
    mode = fields.String(required=True)
    location = fields.String(allow_none=True)
    location_lat = fields.Float(allow_none=True)
    location_lng = fields.Float(allow_none=True)
    deadline = fields.DateTime(allow_none=True)
    risk_level = fields.String(required=True)
    required_trust_tier = fields.Integer(allow_none=True)
    created_at = fields.DateTime(required=True)
    distance_km = fields.Float(allow_none=True, required=True, metadata={"description": "None without lat/lng"})
    relevance_score = fields.Float(required=True, metadata={"description": "0..1"})
    poster = fields.Nested(FeedPosterSchema, required=True)


class FeedSchema(Schema):
    items = fields.List(fields.Nested(FeedItemSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
    has_more = fields.Boolean(required=True)


@blp.route("/feed")
class Feed(MethodView):
    @requires_user
    @blp.arguments(FeedQuerySchema, location="query")
    @blp.response(200, FeedSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Tasks the caller can accept now: OPEN, escrow FUNDED, not their own, within their tier's
        risk clearance. Distance in km when lat/lng are given (radius_km, default 40, filters);
        q searches title and description."""
        return respond(services().feed.feed(current_user().id, **query))
