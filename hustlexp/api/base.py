"""The one home of the REST API's defaults. Every router builds on what is here.

How a router is written (see users.py for a full one)::

    from hustlexp.api.auth import current_user, requires_user
    from hustlexp.api.base import Blueprint, MethodView, Schema, respond, services

    blp = Blueprint("widgets", __name__, url_prefix="/api/widgets", description="Widgets")

    @blp.route("/<uuid:widget_id>")
    class WidgetById(MethodView):
        @requires_user                          # 401/403/404 HX504 handled for you
        @blp.arguments(WidgetPatchSchema)       # invalid input -> 400 VALIDATION_ERROR + details
        @blp.response(200, WidgetSchema)        # data schema; the success envelope is added
        def patch(self, body, widget_id):
            return respond(services().widgets.update(current_user().id, widget_id, **body))

Pieces:
- ``Blueprint``: flask-smorest's, with two changes. ``@blp.response(status, DataSchema)``
  dumps the view's return value with DataSchema and wraps it as
  ``{"success": true, "data": ..., "timestamp": ...}``; the OpenAPI document shows the
  envelope (``<Name>Envelope``). ``@blp.arguments`` answers invalid input with 400
  VALIDATION_ERROR (webargs' default is 422) and refuses unknown query parameters as well
  as unknown body fields (marshmallow's RAISE).
- ``Schema``: base class for every input and output schema (unknown fields raise).
  ``StrictBoolean`` for booleans in JSON bodies; ``fields.Integer(strict=True)`` for ints.
  ``fields`` is hustlexp.api.fields: marshmallow's, except that ``fields.String`` refuses
  NUL characters and lone surrogates (400 naming the field) and documents it as its
  pattern; ``fields.NOT_BLANK`` validates (and documents) text that must not be blank.
- A JSON body nested too deeply for the parser is a 400 like any invalid JSON.
- ``respond(result)``: the data of a successful ServiceResult; a failure raises its
  DomainError, which the error handlers render. Routes never build error bodies.
- ``services()``: the app's ``Services`` container (built once in create_app).
- ``PageQuerySchema`` (limit 1..100, default 20; offset 0..2^31-1): subclass it to change limits.
- ``PatchSchema``: base of partial-update bodies (an empty body is 400; minProperties: 1).
  Any schema may set ``OPENAPI_EXTRA = {...}`` to add JSON-schema keywords to its document.
- Path ids use Flask's ``<uuid:...>`` converter: a malformed id never matches, so it is 404.
- Errors (``init_errors``): DomainError -> its status and code (429 and 503 add Retry-After,
  401s add ``WWW-Authenticate: Bearer``; the database away is 503 SERVICE_UNAVAILABLE);
  werkzeug HTTP errors (404 unknown route, 405 with Allow, ...) and webargs validation failures -> the error envelope;
  anything else -> 500 INTERNAL_ERROR, logged, never an HTML page.
- Auth decorators live in hustlexp.api.auth: ``@requires_user`` (or
  ``@requires_user(allow_paused=True)``), ``@requires_token`` (registration only),
  ``@requires_admin("can_resolve_disputes")``, ``current_user()``, ``current_claims()``,
  ``current_admin()``. They also mark the operation with the bearer security scheme in the
  OpenAPI document and list its 401/403/404 answers.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import marshmallow as ma
from apispec import BasePlugin
from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from flask.views import MethodView
from flask_smorest import Api as _Api
from flask_smorest import Blueprint as _Blueprint
from marshmallow import validate, validates_schema
from webargs.flaskparser import FlaskParser, abort
from werkzeug.exceptions import HTTPException

from hustlexp.api import dumping, fields
from hustlexp.api.json_provider import OrjsonProvider
from hustlexp.db.errors import unavailable
from hustlexp.domain import ServiceResult
from hustlexp.errors import AuthInvalid, AuthRequired, DomainError, RateLimited, Unavailable

if TYPE_CHECKING:
    from hustlexp.services import Services

__all__ = [
    "BEARER_SCHEME",
    "EXTENSION",
    "MUTATING",
    "Api",
    "Blueprint",
    "ErrorEnvelopeSchema",
    "MethodView",
    "PageQuerySchema",
    "PatchSchema",
    "Schema",
    "StrictBoolean",
    "envelope_schema",
    "error_code",
    "error_response",
    "fields",
    "init_api",
    "init_errors",
    "now_iso",
    "respond",
    "services",
    "validate",
]

log = logging.getLogger("hustlexp.api")

EXTENSION = "hustlexp"
# The methods that change something (writes, for PAUSED accounts and the `writes` limit).
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BEARER_SCHEME = "bearerAuth"
T = TypeVar("T")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------

class Schema(ma.Schema):
    """Base schema: unknown fields are an error (marshmallow's RAISE), dates are ISO-8601.
    Dumps run a plan made once per schema instance (hustlexp.api.dumping): the same output
    as marshmallow's dump, without its per-value calls."""

    class Meta:
        unknown = ma.RAISE

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        steps = self.__dict__.get("_hx_dump_plan", _UNPLANNED)
        if steps is _UNPLANNED:
            steps = self._hx_dump_plan = dumping.plan(self)
        many = self.many if many is None else bool(many)
        if steps is None or obj is None:
            return super().dump(obj, many=many)
        if many:
            return [dumping.dump_with(steps, each, self.get_attribute) for each in obj]
        return dumping.dump_with(steps, obj, self.get_attribute)


_UNPLANNED = object()


class StrictBoolean(fields.Boolean):
    """For JSON bodies: true or false only (marshmallow's Boolean also takes "yes", 1, "on"...).
    Query strings keep fields.Boolean, which reads "true"/"false"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class PatchSchema(Schema):
    """Base of partial-update bodies: every field optional, but an empty body is a 400 (and
    the OpenAPI document says so with minProperties)."""

    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {"minProperties": 1}

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Send at least one field to change.")


# Offsets beyond PostgreSQL's int4 are nonsense for a UI and would overflow in SQL casts.
MAX_OFFSET = 2**31 - 1


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


class CursorPageQuerySchema(Schema):
    """A keyset page: `cursor` is the previous page's next_cursor (opaque; at most 500 characters)."""
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(min=1, max=500),
                           metadata={"description": "next_cursor of the previous page"})


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "Machine-readable error code"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "Field errors or extra context"})


class ErrorEnvelopeSchema(Schema):
    success = fields.Boolean(required=True, metadata={"enum": [False]})
    error = fields.Nested(ErrorBodySchema, required=True)
    timestamp = fields.DateTime(required=True)


_envelopes: dict[tuple[type[ma.Schema], bool], type[ma.Schema]] = {}


def envelope_schema(schema: ma.Schema) -> type[ma.Schema]:
    """The documented success envelope around `schema` (one class per data schema)."""
    key = (type(schema), bool(schema.many))
    if key not in _envelopes:
        base = type(schema).__name__.removesuffix("Schema")
        name = f"{base}{'List' if schema.many else ''}Envelope"
        _envelopes[key] = type(name, (Schema,), {
            "success": fields.Boolean(required=True, metadata={"enum": [True]}),
            "data": fields.Nested(type(schema), many=schema.many, required=True),
            "timestamp": fields.DateTime(required=True),
        })
    return _envelopes[key]


# ---------------------------------------------------------------------------
# Api and Blueprint
# ---------------------------------------------------------------------------

class _Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400
    # Unknown query parameters are refused like unknown body fields.
    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {  # noqa: RUF012 (webargs' own attribute)
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": ma.RAISE, "querystring": ma.RAISE}

    def _raw_load_json(self, req: Any) -> Any:
        # json.loads recurses once per nesting level: a small body nested a thousand deep
        # exhausts the stack. That is bad input, not a server fault.
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            abort(400, messages={"json": ["The JSON body is nested too deeply."]})


class Blueprint(_Blueprint):
    ARGUMENTS_PARSER = _Parser()

    def arguments(self, schema: Any, **kwargs: Any) -> Any:
        # webargs builds a new instance of a schema class on every request (copying every
        # field); one instance per route is built here instead. Loading keeps no state on
        # the instance, so threads share it.
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)

    @staticmethod
    def _make_doc_response_schema(schema: Any) -> Any:
        if schema is None:
            return None
        return envelope_schema(schema)

    @staticmethod
    def _prepare_response_content(data: Any) -> Any:
        return {"success": True, "data": data, "timestamp": now_iso()}


class _SchemaExtrasPlugin(BasePlugin):
    """Merges a schema class's OPENAPI_EXTRA (e.g. minProperties) into its OpenAPI definition,
    for rules marshmallow fields cannot express."""

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        schema = kwargs.get("schema")
        cls = schema if isinstance(schema, type) else type(schema)
        extra: dict[str, Any] | None = getattr(cls, "OPENAPI_EXTRA", None)
        return dict(extra) if extra else None


class Api(_Api):
    ERROR_SCHEMA = ErrorEnvelopeSchema

    def handle_http_exception(self, error: HTTPException) -> ResponseReturnValue:
        return http_error_response(error)


def init_api(app: Flask, *, title: str, version: str) -> Api:
    app.json = OrjsonProvider(app)
    app.config.update(
        API_TITLE=title,
        API_VERSION=version,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
    )
    api = Api(app, spec_kwargs={"extra_plugins": [_SchemaExtrasPlugin()]})
    api.spec.components.security_scheme(
        BEARER_SCHEME, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                        "description": "A Firebase ID token"})
    init_errors(app)
    return api


# ---------------------------------------------------------------------------
# Service access and results
# ---------------------------------------------------------------------------

def services() -> Services:
    """The Services container of the current app."""
    services: Services = current_app.extensions[EXTENSION].services
    return services


def respond(result: ServiceResult[T]) -> T:
    """The data of a successful result; a failure raises its DomainError (rendered by
    the error handler with the error's own code and status)."""
    if result.error is not None:
        raise result.error
    return result.data  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: Mapping[str, str] | None = None) -> ResponseReturnValue:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    body = jsonify({"success": False, "error": error, "timestamp": now_iso()})
    return body, status, dict(headers or {})


def domain_error_response(err: DomainError) -> ResponseReturnValue:
    headers: dict[str, str] = {}
    if isinstance(err, RateLimited | Unavailable):
        headers["Retry-After"] = str(max(1, int(err.retry_after)))
    if isinstance(err, RateLimited) and err.limit is not None:
        headers.update({"RateLimit-Limit": str(err.limit), "RateLimit-Remaining": "0",
                        "RateLimit-Reset": headers["Retry-After"]})
        if err.window is not None:
            headers["RateLimit-Policy"] = f"{err.limit};w={err.window}"
    if isinstance(err, AuthInvalid):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif isinstance(err, AuthRequired):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(err, Unavailable):
        log.warning("request refused, retry later: %s", err.reason)
    elif err.status >= 500:
        log.error("request failed: %r", err, exc_info=err)
    return error_response(err.status, err.code, err.message, err.details, headers)


_HTTP_CODES = {400: "VALIDATION_ERROR", 401: "AUTH_REQUIRED", 403: "FORBIDDEN", 404: "NOT_FOUND",
               409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE", 422: "VALIDATION_ERROR", 429: "RATE_LIMITED",
               500: "INTERNAL_ERROR"}


def error_code(status: int) -> str:
    """The envelope's code for an HTTP status that no DomainError chose (e.g. URI_TOO_LONG)."""
    return _HTTP_CODES.get(status) or http.HTTPStatus(status).name


def http_error_response(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages") if isinstance(data, Mapping) else None
    if messages is not None:
        return error_response(400, "VALIDATION_ERROR", "The request is invalid.",
                              _field_errors(messages))
    code = error_code(status)
    # Keep werkzeug's own headers (Allow on 405, Retry-After on 503...), not its content type.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    if isinstance(data, Mapping) and "headers" in data:
        headers.update(data["headers"])
    message = {404: "No such resource.", 405: "Method not allowed on this resource."}.get(
        status, error.description or http.HTTPStatus(status).phrase)
    return error_response(status, code, message, headers=headers)


def _field_errors(messages: Mapping[str, Any]) -> dict[str, Any]:
    """webargs groups errors by location ({"json": {"field": [...]}}): clients want fields."""
    details: dict[str, Any] = {}
    for location, errors in messages.items():
        if isinstance(errors, Mapping):
            details.update(errors)
        else:
            details[location] = errors
    return details


def _unexpected(exc: Exception) -> ResponseReturnValue:
    if isinstance(exc, HTTPException):
        return http_error_response(exc)
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    away = unavailable(exc)
    if away is not None:  # a database call outside Database.transaction()
        return domain_error_response(away)
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "INTERNAL_ERROR", "Something went wrong on our side.")


def init_errors(app: Flask) -> None:
    app.register_error_handler(DomainError, domain_error_response)
    # Registered for Exception (not only InternalServerError) so that the envelope is
    # rendered in TESTING too, where Flask would otherwise re-raise.
    app.register_error_handler(Exception, _unexpected)

