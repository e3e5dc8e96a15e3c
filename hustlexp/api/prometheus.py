"""GET /metrics for Prometheus (plain Flask, outside the OpenAPI document: it is for the
scraper, not for API clients). With HUSTLEXP_METRICS_TOKEN set the scraper must send it as a
bearer token; without one it is open in development and test and absent (404) in production."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Flask, Response, current_app, request

from hustlexp.api.base import EXTENSION, error_response, services
from hustlexp.obs import metrics


def _snapshot() -> dict[str, Any]:
    snap: dict[str, Any] = services().readiness.snapshot().unwrap()
    return snap


def scrape() -> Any:
    settings = current_app.extensions[EXTENSION].settings
    token = settings.metrics_token
    if token is None and settings.production:
        return error_response(404, "NOT_FOUND", "No such resource.")
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return error_response(401, "AUTH_REQUIRED", "Send the metrics token as a bearer token.",
                                  headers={"WWW-Authenticate": "Bearer"})
    body, content_type = metrics.exposition(_snapshot)
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def init_metrics_route(app: Flask) -> None:
    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
