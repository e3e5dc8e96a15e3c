"""Request ids, the one-line JSON access log, GET /metrics and GET /health/ready."""

from __future__ import annotations

import json
import logging
import re

import psycopg
import pytest

from hustlexp.app import close_app, create_app
from hustlexp.jobs import run_pass
from hustlexp.jobs.cli import _ensure_queue_schema
from hustlexp.obs import context
from hustlexp.obs.logs import ACCESS_LOGGER, JsonFormatter
from tests import factories
from tests.api.conftest import api_settings
from tests.api.test_app import PRODUCTION
from tests.services import flows
from tests.services.conftest import Clock


def test_request_id_is_made_or_taken_and_returned(client):
    made = client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/health", headers={"X-Request-ID": "lb-1234.a"}).headers["X-Request-ID"] == "lb-1234.a"
    replaced = client.get("/health", headers={"X-Request-ID": "not ok; drop table"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert client.get("/api/users/me").headers["X-Request-ID"]  # errors carry it too


def test_one_json_access_line_per_request(client, register, caplog):
    user, headers = register(client)
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        caplog.clear()  # the logger may already be at INFO (an earlier test's app): drop register's line
        client.get("/api/users/me", headers=headers | {"X-Request-ID": "req-me-1"})
        client.get("/api/nowhere")
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 2
    me, missing = lines
    assert me["request_id"] == "req-me-1" and me["user_id"] == user["id"] and me["route"] == "/api/users/me"
    assert me["status"] == 200 and me["method"] == "GET" and me["duration_ms"] >= 0
    assert missing["status"] == 404 and missing["route"] == "(unmatched)" and missing["user_id"] is None


def test_metrics_count_requests_by_route(client):
    client.get("/health")
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and scraped.content_type.startswith("text/plain")
    body = scraped.get_data(as_text=True)
    assert re.search(r'hustlexp_http_request_duration_seconds_count\{method="GET",route="/health",status="200"\} '
                     r"[1-9]", body)
    assert 'hustlexp_outbox_rows' in body and "hustlexp_db_pool_max" in body
    assert "/metrics" not in client.get("/openapi.json").get_json()["paths"]


def test_metrics_token_and_production(db_url, tmp_path, firebase_certs):
    app = create_app(api_settings(db_url, tmp_path, HUSTLEXP_METRICS_TOKEN="s3cret"))
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    finally:
        close_app(app)
    prod = create_app(PRODUCTION)
    try:
        assert prod.test_client().get("/metrics").status_code == 404
    finally:
        close_app(prod)


def test_ready_reports_outbox_backlog_and_job_workers(client, conn, db_url):
    first = client.get("/health/ready")
    assert first.status_code == 200
    assert first.get_json()["checks"] == {"database": "ok", "outbox": "ok", "job_worker": "none"}
    assert first.get_json()["status"] == "degraded"
    _ensure_queue_schema(db_url)
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("INSERT INTO procrastinate_workers DEFAULT VALUES")
    ids = factories.escrow_in(conn, "RELEASED")
    factories.outbox(conn, ids["escrow"], "TRANSFER", 4500 * 85 // 100, next_attempt_at="2020-01-01T00:00:00Z")
    ready = client.get("/health/ready").get_json()
    assert ready["checks"] == {"database": "ok", "outbox": "backlogged", "job_worker": "ok"}
    assert ready["outbox_backlog"] == 1 and ready["oldest_pending_age_seconds"] > 3600
    assert ready["worker_heartbeat_age_seconds"] < 60 and ready["job_lag_seconds"] == 0
    assert set(client.get("/health").get_json()["checks"]) == {"database"}  # /health stays cheap


def test_request_id_reaches_the_outbox_and_stripe_metadata(world):
    task = world.funded(price=3000)
    cancelled = world.client.post(f"/api/tasks/{task['id']}/cancel", json={"reason": "changed plans"},
                                  headers=world.ph | {"X-Request-ID": "req-cancel-7"})
    assert cancelled.status_code == 200 and cancelled.headers["X-Request-ID"] == "req-cancel-7"
    row = world.conn.execute("SELECT request_id FROM money_outbox WHERE escrow_id = %s",
                             (task["escrow_id"],)).fetchone()
    assert row["request_id"] == "req-cancel-7"
    # Sent later by the dispatcher, outside the request: the id comes from the outbox row.
    assert world.send_money(task["escrow_id"]) == {"transferred": 0, "refunded": 3000}
    [refund] = [r for r in world.fake.refunds if r["metadata"]["escrow_id"] == task["escrow_id"]]
    assert refund["metadata"]["request_id"] == "req-cancel-7"


def test_a_retried_payout_carries_the_request_id_into_the_job_and_stripe(services, stripe_fake, caplog):
    ids = flows.submitted_task(services, stripe_fake)
    stripe_fake.fail_next("/v1/transfers", kind="rate_limit")
    with context.bound("req-accept-9"):
        services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert stripe_fake.transfers == []
    services.clock = Clock()
    assert run_pass("payouts", services)["failed"] == 1  # the first attempt is rate-limited
    services.clock.advance(minutes=6)
    with caplog.at_level(logging.INFO, logger="hustlexp.jobs"):
        assert run_pass("payouts", services)["succeeded"] == 1
    assert stripe_fake.transfers[0]["metadata"]["request_id"] == "req-accept-9"
    [job_line] = [r for r in caplog.records if r.name == "hustlexp.jobs"]
    assert job_line.request_id.startswith("job-payouts-")


def test_log_format_setting_is_checked():
    from hustlexp.config import ConfigError, load

    with pytest.raises(ConfigError, match="HUSTLEXP_LOG_FORMAT"):
        load({"HUSTLEXP_LOG_FORMAT": "yaml"})
    assert load({}).log_format == "text" and load(PRODUCTION).log_format == "json"
    assert load({"HUSTLEXP_LOG_FORMAT": "json"}).log_format == "json"
