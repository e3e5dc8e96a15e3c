"""Contract test: schemathesis generates requests for every operation of our OpenAPI document
and sends them in process to the real app (real database, real token verification) as a
registered user. No answer may be a 5xx; every answer must match its documented schema,
status and content type; a 405 must name the allowed methods."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from hustlexp.app import close_app, create_app
from tests.api.conftest import PROJECT_ID

CHECKS = [checks.not_a_server_error, checks.response_schema_conformance, checks.content_type_conformance,
          checks.allow_header_conformance, checks.status_code_conformance]


def _openapi_document() -> dict[str, Any]:
    """The document as the app serves it. Building the app connects to nothing (the pool
    opens lazily), so an unreachable database address is fine here."""
    app = create_app({"HUSTLEXP_ENV": "test", "DATABASE_URL": "postgresql://contract@127.0.0.1:1/none",
                      "FIREBASE_PROJECT_ID": PROJECT_ID})
    try:
        document: dict[str, Any] = app.test_client().get("/openapi.json").get_json()
        return document
    finally:
        close_app(app)


schema = schemathesis.openapi.from_dict(_openapi_document())


@pytest.fixture
def caller(client: Any, register: Any) -> dict[str, str]:
    _, headers = register(client)
    return headers


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
def test_every_operation_honours_its_contract(case: Any, app: Any, caller: dict[str, str]) -> None:
    case.call_and_validate(app=app, headers=caller)
