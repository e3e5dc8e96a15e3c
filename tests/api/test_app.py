"""The app factory and the API defaults every router inherits (hustlexp.api.base): config
refusals, error envelopes, validation as 400, OpenAPI, and the Stripe webhook route."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.views import MethodView

from hustlexp.api.base import Blueprint, PageQuerySchema, Schema, fields, respond, validate
from hustlexp.app import close_app, create_app
from hustlexp.config import ConfigError
from hustlexp.domain import ServiceResult
from hustlexp.errors import Conflict, RateLimited
from tests.api.conftest import WEBHOOK_SECRET, api_settings, data, error
from tests.fakes.stripe_fake import FakeStripe

PRODUCTION = {"HUSTLEXP_ENV": "production", "DATABASE_URL": "postgresql://db.invalid/hx",
              "STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_x",
              "FIREBASE_PROJECT_ID": "hustlexp-prod", "HUSTLEXP_APP_URL": "https://app.hustlexp.test"}


# -- configuration -----------------------------------------------------------------------

def test_production_refuses_emulator_variable(firebase_certs: str) -> None:
    with pytest.raises(ConfigError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        create_app(PRODUCTION | {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"})


def test_production_refuses_emulator_in_process_environment(firebase_certs: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # firebase-admin reads the process environment, whatever config the app was given.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(ConfigError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        create_app(PRODUCTION)


@pytest.mark.parametrize("missing", ["DATABASE_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
                                     "FIREBASE_PROJECT_ID"])
def test_production_refuses_missing_setting(firebase_certs: str, missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        create_app({k: v for k, v in PRODUCTION.items() if k != missing})


def test_emulator_setting_must_match_process_environment(db_url: str, tmp_path: Any,
                                                         firebase_certs: str) -> None:
    with pytest.raises(ConfigError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        create_app(api_settings(db_url, tmp_path, FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099"))


def test_services_live_in_app_extensions(app: Flask) -> None:
    state = app.extensions["hustlexp"]
    assert state.settings.firebase_project_id == "hustlexp-test"
    assert state.services.db is state.db
    assert state.services.payments.webhook_secret == WEBHOOK_SECRET


# -- error envelopes ----------------------------------------------------------------------

class _Body(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=5))
    count = fields.Integer(strict=True)


def _probe_app(app: Flask) -> Flask:
    """Routes that exercise the base defaults directly, registered like any router."""
    blp = Blueprint("probe", __name__, url_prefix="/api/probe")

    @blp.route("/echo")
    class Echo(MethodView):
        @blp.arguments(_Body)
        @blp.response(201, _Body)
        def post(self, body: dict[str, Any]) -> Any:
            return respond(ServiceResult.success(body))

    @blp.route("/page")
    class Page(MethodView):
        @blp.arguments(PageQuerySchema, location="query")
        @blp.response(200, PageQuerySchema)
        def get(self, query: dict[str, Any]) -> Any:
            return query

    @blp.route("/conflict")
    class Fail(MethodView):
        @blp.response(200, _Body)
        def get(self) -> Any:
            return respond(ServiceResult.failure(Conflict("busy", code="HX001", details={"x": 1})))

    @blp.route("/slow-down")
    class Limited(MethodView):
        @blp.response(200, _Body)
        def get(self) -> Any:
            return respond(ServiceResult.failure(RateLimited("wait", retry_after=120)))

    @blp.route("/boom")
    class Boom(MethodView):
        @blp.response(200, _Body)
        def get(self) -> Any:
            raise RuntimeError("an unexpected fault")

    app.extensions["flask-smorest"]["apis"][""]["ext_obj"].register_blueprint(blp)
    return app


@pytest.fixture
def probe(app: Flask) -> Any:
    return _probe_app(app).test_client()


def test_success_envelope_wraps_data(probe: Any) -> None:
    response = probe.post("/api/probe/echo", json={"name": "abc", "count": 2})
    assert response.status_code == 201
    assert data(response) == {"name": "abc", "count": 2}


def test_invalid_body_is_400_with_field_details(probe: Any) -> None:
    response = probe.post("/api/probe/echo", json={"name": "", "count": "2"})
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR"
    assert set(err["details"]) == {"name", "count"}


def test_unknown_body_field_is_400(probe: Any) -> None:
    response = probe.post("/api/probe/echo", json={"name": "abc", "admin": True})
    assert response.status_code == 400
    assert set(error(response)["details"]) == {"admin"}


def test_missing_required_field_is_400(probe: Any) -> None:
    response = probe.post("/api/probe/echo", json={})
    assert response.status_code == 400
    assert set(error(response)["details"]) == {"name"}


def test_malformed_json_is_400(probe: Any) -> None:
    response = probe.post("/api/probe/echo", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert error(response)["code"] == "VALIDATION_ERROR"


def test_query_limits_and_unknown_parameters_are_400(probe: Any) -> None:
    assert data(probe.get("/api/probe/page")) == {"limit": 20, "offset": 0}
    assert data(probe.get("/api/probe/page?limit=100&offset=3")) == {"limit": 100, "offset": 3}
    for query, field in (("limit=101", "limit"), ("limit=0", "limit"), ("offset=-1", "offset"),
                         ("offset=3975618464133631852677169152", "offset"),
                         ("limit=abc", "limit"), ("sort=name", "sort")):
        response = probe.get(f"/api/probe/page?{query}")
        assert response.status_code == 400, query
        assert set(error(response)["details"]) == {field}, query


def test_service_failure_keeps_its_code_and_status(probe: Any) -> None:
    response = probe.get("/api/probe/conflict")
    assert response.status_code == 409
    assert error(response) == {"code": "HX001", "message": "busy", "details": {"x": 1}}


def test_rate_limited_carries_retry_after(probe: Any) -> None:
    response = probe.get("/api/probe/slow-down")
    assert response.status_code == 429
    assert error(response)["code"] == "RATE_LIMITED"
    assert response.headers["Retry-After"] == "120"


def test_unexpected_exception_is_500_envelope_and_logged(probe: Any, caplog: pytest.LogCaptureFixture) -> None:
    response = probe.get("/api/probe/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert error(response)["code"] == "INTERNAL_ERROR"
    assert "an unexpected fault" not in response.get_data(as_text=True)
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


def test_unknown_route_is_404_envelope(client: Any) -> None:
    for path in ("/nope", "/api/nope", "/api/users/me/nope"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert error(response)["code"] == "NOT_FOUND"


def test_wrong_method_is_405_with_allow(client: Any) -> None:
    response = client.delete("/webhooks/stripe")
    assert response.status_code == 405
    assert error(response)["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in response.headers["Allow"]


# -- OpenAPI --------------------------------------------------------------------------------

def test_openapi_document_and_docs_page(client: Any) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    doc = spec.get_json()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A Firebase ID token"}
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.data


def test_openapi_secures_every_api_route_and_only_those(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    methods = {"get", "post", "put", "patch", "delete"}
    api_ops = [(p, m, op) for p, item in paths.items() for m, op in item.items()
               if p.startswith("/api/") and m in methods]
    assert len(api_ops) >= 15
    for path, method, op in api_ops:
        assert op.get("security") == [{"bearerAuth": []}], (path, method)
        assert "401" in op["responses"], (path, method)
        success = [c for c in op["responses"] if c.startswith("2")]
        assert success, (path, method)
    # Public: Stripe signs its deliveries, and a local storage URL is signed by the API itself.
    for path in ("/health", "/webhooks/stripe", "/storage/objects/{key}"):
        operations = {m: op for m, op in paths[path].items() if m != "parameters"}  # {key} is path-wide
        assert operations
        for method, op in operations.items():
            assert method in methods
            assert "security" not in op


def test_openapi_documents_envelopes_and_400(client: Any) -> None:
    doc = client.get("/openapi.json").get_json()
    me = doc["paths"]["/api/users/me"]
    ok = me["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    envelope = doc["components"]["schemas"][ok.rsplit("/", 1)[1]]
    assert set(envelope["properties"]) == {"success", "data", "timestamp"}
    assert "400" in me["patch"]["responses"]
    assert "422" not in me["patch"]["responses"]
    body = me["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    patch = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert patch["minProperties"] == 1  # PatchSchema: an empty body is refused
    assert patch["additionalProperties"] is False


# -- Stripe webhook route -------------------------------------------------------------------

def test_webhook_signed_event_is_received(client: Any, stripe_fake: FakeStripe) -> None:
    event = stripe_fake.event("customer.created", {"id": "cus_1", "object": "customer"})
    body, signature = FakeStripe.sign(event, WEBHOOK_SECRET)
    response = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": signature},
                           content_type="application/json")
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["received"] is True
    assert answer["event_id"] == event["id"]
    assert answer["result"] == "ignored"
    again = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": signature},
                        content_type="application/json")
    assert again.status_code == 200
    assert again.get_json()["result"] == "duplicate"


def test_webhook_bad_or_missing_signature_is_400(client: Any, stripe_fake: FakeStripe) -> None:
    event = stripe_fake.event("customer.created", {"id": "cus_1", "object": "customer"})
    body, _ = FakeStripe.sign(event, "whsec_someone_else")
    _, signature = FakeStripe.sign(event, WEBHOOK_SECRET)
    for headers in ({"Stripe-Signature": FakeStripe.sign(event, "whsec_someone_else")[1]}, {}):
        response = client.post("/webhooks/stripe", data=body, headers=headers, content_type="application/json")
        assert response.status_code == 400
        assert error(response)["code"] == "WEBHOOK_SIGNATURE_INVALID"
    # The signature covers the exact bytes: re-serialised JSON no longer matches.
    tampered = json.dumps(json.loads(body), indent=2).encode()
    response = client.post("/webhooks/stripe", data=tampered, headers={"Stripe-Signature": signature},
                           content_type="application/json")
    assert response.status_code == 400


def test_webhook_database_down_is_503(tmp_path: Any, firebase_certs: str) -> None:
    from tests.api.test_health import closed_port_url

    app = create_app(api_settings(closed_port_url(), tmp_path, HUSTLEXP_DB_POOL_TIMEOUT="1"))
    try:
        event = {"id": "evt_db_down", "object": "event", "type": "customer.created", "data": {"object": {}}}
        body, signature = FakeStripe.sign(event, WEBHOOK_SECRET)
        response = app.test_client().post("/webhooks/stripe", data=body, headers={"Stripe-Signature": signature},
                                          content_type="application/json")
        assert response.status_code == 503
        assert error(response)["code"] == "SERVICE_UNAVAILABLE"
        assert response.headers["Retry-After"]
    finally:
        close_app(app)
