"""GET /health: public, reports the schema version, 503 when the database is unreachable."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from hustlexp.app import close_app, create_app
from hustlexp.db import migrations
from tests.api.conftest import api_settings, error


def closed_port_url() -> str:
    """A connection string to a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"host=127.0.0.1 port={port} dbname=nothing user=nobody connect_timeout=1"


@pytest.fixture
def dead_db_app(tmp_path: Any, firebase_certs: str) -> Iterator[Flask]:
    app = create_app(api_settings(closed_port_url(), tmp_path, HUSTLEXP_DB_POOL_TIMEOUT="1"))
    yield app
    close_app(app)


def test_health_ok_reports_versions_without_auth(client: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "version": "1.0.0",
                                   "schema_version": migrations.head(),
                                   "checks": {"database": "ok"}}


def test_health_version_comes_from_app_version(db_url: str, tmp_path: Any, firebase_certs: str) -> None:
    app = create_app(api_settings(db_url, tmp_path, APP_VERSION="2.3.4"))
    try:
        assert app.test_client().get("/health").get_json()["version"] == "2.3.4"
    finally:
        close_app(app)


def test_health_database_down_is_503(dead_db_app: Flask) -> None:
    started = time.monotonic()
    response = dead_db_app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "version": "1.0.0", "schema_version": None,
                                   "checks": {"database": "unavailable"}}
    assert time.monotonic() - started < 5  # a probe must not hang on a dead database


def test_health_other_methods_are_405_with_allow(client: Any) -> None:
    response = client.post("/health")
    assert response.status_code == 405
    assert error(response)["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response.headers["Allow"]


def test_health_is_unsecured_in_openapi(client: Any) -> None:
    operation = client.get("/openapi.json").get_json()["paths"]["/health"]["get"]
    assert "security" not in operation
    assert set(operation["responses"]) >= {"200", "503"}
