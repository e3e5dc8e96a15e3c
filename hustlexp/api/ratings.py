"""Ratings: poster and worker rate each other after completion (RATING_SYSTEM_SPEC).

Ratings are blind until both parties rated or the 7-day window closed. Codes: 409 HX807 (task
not COMPLETED), 409 HX808 (window closed), 403 HX812 (caller is not the task's poster or
worker), 409 CONFLICT (already rated; ratings never change)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.api.auth import current_user, requires_user
from hustlexp.api.base import Blueprint, MethodView, Schema, fields, respond, services, validate
from hustlexp.services.rating import ALL_TAGS, MAX_COMMENT, MAX_TAGS

blp = Blueprint("ratings", __name__, url_prefix="/api", description="Ratings between poster and worker")


# -- schemas ---------------------------------------------------------------------

class RatingSubmitSchema(Schema):
    stars = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    comment = fields.String(allow_none=True, validate=validate.Length(max=MAX_COMMENT))
    tags = fields.List(fields.String(validate=validate.OneOf(sorted(ALL_TAGS))),
                       validate=validate.Length(max=MAX_TAGS), metadata={
                           "uniqueItems": True,
                           "description": "Worker tags when the poster rates, poster tags when the worker "
                                          "rates; negative tags only below 4 stars"})


class RaterSchema(Schema):
    id = fields.UUID(required=True)
    full_name = fields.String(required=True)
    avatar_url = fields.String(allow_none=True)


class RatingSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    rater_id = fields.UUID(required=True)
    ratee_id = fields.UUID(required=True)
    rater = fields.Nested(RaterSchema, required=True)
    stars = fields.Integer(required=True)
    comment = fields.String(allow_none=True)
    tags = fields.List(fields.String(), required=True)
    is_auto_rated = fields.Boolean(required=True)
    is_public = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class RatingSubmittedSchema(Schema):
    rating = fields.Nested(RatingSchema, required=True)
    both_rated = fields.Boolean(required=True)
    is_public = fields.Boolean(required=True)


class TaskRatingsSchema(Schema):
    task_id = fields.UUID(required=True)
    poster_rating = fields.Nested(RatingSchema, allow_none=True, required=True,
                                  metadata={"description": "The poster's rating of the worker, once public"})
    worker_rating = fields.Nested(RatingSchema, allow_none=True, required=True,
                                  metadata={"description": "The worker's rating of the poster, once public"})
    both_rated = fields.Boolean(required=True)
    window_closes_at = fields.DateTime(allow_none=True, required=True)
    can_rate = fields.Boolean(required=True)


class RatingSummarySchema(Schema):
    total_ratings = fields.Integer(required=True)
    average_rating = fields.Float(allow_none=True, required=True)
    star_distribution = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class MyRatingsQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class MyRatingsSchema(Schema):
    given = fields.List(fields.Nested(RatingSchema), required=True)
    received = fields.List(fields.Nested(RatingSchema), required=True)
    summary = fields.Nested(RatingSummarySchema, required=True)


class UserRatingsSchema(Schema):
    user_id = fields.UUID(required=True)
    summary = fields.Nested(RatingSummarySchema, required=True)
    recent = fields.List(fields.Nested(RatingSchema), required=True)


# -- routes ----------------------------------------------------------------------

@blp.route("/tasks/<uuid:task_id>/rating")
class TaskRating(MethodView):
    @requires_user
    @blp.arguments(RatingSubmitSchema)
    @blp.response(201, RatingSubmittedSchema)
    @blp.alt_response(409, response="CONFLICT", description="HX807 not completed, HX808 window closed, "
                                                            "or already rated")
    def post(self, body: dict[str, Any], task_id: UUID) -> Any:
        """Rate the other party of a completed task (once, within 7 days)."""
        return respond(services().ratings.submit(task_id, current_user().id, **body))


@blp.route("/tasks/<uuid:task_id>/ratings")
class TaskRatings(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, TaskRatingsSchema)
    def get(self, task_id: UUID) -> Any:
        """The task's ratings that are public (and the caller's own), for its poster, worker or an admin."""
        return respond(services().ratings.get_task_ratings(task_id, current_user().id))


@blp.route("/users/me/ratings")
class MyRatings(MethodView):
    @requires_user(allow_paused=True)
    @blp.arguments(MyRatingsQuerySchema, location="query")
    @blp.response(200, MyRatingsSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Ratings the caller gave (blind ones too) and public ones they received, newest first."""
        return respond(services().ratings.get_my_ratings(current_user().id, limit=query["limit"]))


@blp.route("/users/<uuid:user_id>/ratings")
class UserRatings(MethodView):
    @requires_user(allow_paused=True)
    @blp.response(200, UserRatingsSchema)
    def get(self, user_id: UUID) -> Any:
        """A user's public rating summary and last 10 public ratings (404 HX504 for an unknown user)."""
        return respond(services().ratings.get_user_ratings(user_id))
