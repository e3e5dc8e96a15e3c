"""GET /health: the platform's probe. Public; answers 503 when the database is unreachable,
so a load balancer stops sending traffic to an instance that cannot serve it. It stays one
cheap query; GET /health/ready adds what flows behind the API (the money outbox backlog and
the job workers' heartbeat) for operators and deploy checks.

The body is the probe's own shape ({status, version, schema_version, checks}), not the API
envelope: platform health checkers read it as is."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint as PlainBlueprint
from psycopg_pool import PoolTimeout

from hustlexp.api.base import EXTENSION, Schema, fields, services
from hustlexp.db import migrations
from hustlexp.services.readiness import HEARTBEAT_STALE_SECONDS, OUTBOX_STALE_SECONDS

log = logging.getLogger("hustlexp.api.health")

# A probe must answer within 2 s; a pool that cannot hand out a (checked) connection in this
# time is down.
DB_CHECK_TIMEOUT_SECONDS = 0.5

blp = PlainBlueprint("health", __name__, description="Service health (public)")


class HealthChecksSchema(Schema):
    database = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})
    version = fields.String(required=True)
    schema_version = fields.String(allow_none=True, required=True)
    checks = fields.Nested(HealthChecksSchema, required=True)


def _schema_version() -> str | None:
    """The newest schema_versions row, read on a pooled connection (raises when the
    database cannot be reached)."""
    with services().db.pool.connection(timeout=DB_CHECK_TIMEOUT_SECONDS) as conn:
        return migrations.installed_version(conn)


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="The database is unreachable")
    def get(self) -> Any:
        version = current_app.extensions[EXTENSION].settings.app_version
        try:
            schema_version = _schema_version()
        except (PoolTimeout, psycopg.Error) as exc:
            log.warning("health check: database unavailable: %s", exc)
            return {"status": "unavailable", "version": version, "schema_version": None,
                    "checks": {"database": "unavailable"}}, 503
        return {"status": "ok", "version": version, "schema_version": schema_version,
                "checks": {"database": "ok"}}


class ReadyChecksSchema(Schema):
    database = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})
    outbox = fields.String(required=True, metadata={"enum": ["ok", "backlogged", "unknown"]})
    job_worker = fields.String(required=True, metadata={"enum": ["ok", "stale", "none", "unknown"]})


class ReadySchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ok", "degraded", "unavailable"]})
    version = fields.String(required=True)
    checks = fields.Nested(ReadyChecksSchema, required=True)
    outbox_backlog = fields.Integer(allow_none=True, required=True)
    oldest_pending_age_seconds = fields.Float(allow_none=True, required=True)
    job_lag_seconds = fields.Float(allow_none=True, required=True)
    worker_heartbeat_age_seconds = fields.Float(allow_none=True, required=True)


@blp.route("/health/ready")
class Ready(MethodView):
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ReadySchema, description="The database is unreachable")
    def get(self) -> Any:
        """Readiness with the money outbox backlog and the job workers' heartbeat: 503 only when
        the database is down; a backlog or a silent job worker reads "degraded" (the API itself
        still serves)."""
        version = current_app.extensions[EXTENSION].settings.app_version
        try:
            result = services().readiness.snapshot()
        except (PoolTimeout, psycopg.Error) as exc:
            log.warning("readiness check: database unavailable: %s", exc)
            result = None
        if result is None or result.error is not None or result.data is None:
            return {"status": "unavailable", "version": version,
                    "checks": {"database": "unavailable", "outbox": "unknown", "job_worker": "unknown"},
                    "outbox_backlog": None, "oldest_pending_age_seconds": None, "job_lag_seconds": None,
                    "worker_heartbeat_age_seconds": None}, 503
        snap = result.data
        oldest, beat = snap["oldest_pending_age_seconds"], snap["worker_heartbeat_age_seconds"]
        outbox = "backlogged" if oldest is not None and oldest > OUTBOX_STALE_SECONDS else "ok"
        worker = "none" if beat is None else ("stale" if beat > HEARTBEAT_STALE_SECONDS else "ok")
        status = "ok" if outbox == "ok" and worker == "ok" else "degraded"
        return {"status": status, "version": version,
                "checks": {"database": "ok", "outbox": outbox, "job_worker": worker},
                **{k: snap[k] for k in ("outbox_backlog", "oldest_pending_age_seconds", "job_lag_seconds",
                                        "worker_heartbeat_age_seconds")}}
