"""GET /health: the platform's probe. Public; answers 503 when the database is unreachable,
so a load balancer stops sending traffic to an instance that cannot serve it.

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

log = logging.getLogger("hustlexp.api.health")

# A probe must answer quickly; a pool that cannot hand out a connection in this time is down.
DB_CHECK_TIMEOUT_SECONDS = 2.0

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
