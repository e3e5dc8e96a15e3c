"""The application factory: ``create_app()`` builds a configured Flask app from the
environment. Nothing happens at import time; each step is one init_* call."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask

from hustlexp import config as config_mod
from hustlexp.api import register_routers
from hustlexp.api.auth import TokenVerifier
from hustlexp.api.base import EXTENSION, init_api
from hustlexp.api.limits import init_limits
from hustlexp.db import Database, embedded
from hustlexp.services import Services
from hustlexp.services.storage import build_storage

if TYPE_CHECKING:
    from hustlexp.services.payments import PaymentsGateway
    from hustlexp.services.push import PushGateway

log = logging.getLogger("hustlexp.app")

# Up to 5 proof photos of 10 MB each, plus the multipart overhead.
MAX_REQUEST_BYTES = 55 * 1024 * 1024


@dataclass
class AppState:
    """What create_app wired, kept in ``app.extensions["hustlexp"]``."""

    settings: config_mod.Settings
    db: Database
    services: Services
    verifier: TokenVerifier
    embedded_server: Any = None


def create_app(config: config_mod.Settings | Mapping[str, str] | None = None, *,
               payments: PaymentsGateway | None = None) -> Flask:
    """Build the app.

    config: None reads the process environment; a mapping is read as if it were the
    environment (tests); a Settings object is used as given (build it with hustlexp.config.load).
    payments: a ready gateway (tests pass one backed by their fake Stripe); by default one
    is built from the Stripe settings.
    Raises hustlexp.config.ConfigError on unsafe or missing settings (production refuses to start)."""
    settings = config if isinstance(config, config_mod.Settings) else config_mod.load(config)
    app = Flask("hustlexp")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    verifier = TokenVerifier(settings)
    try:
        db, server = init_db(settings)
        services = Services(db, payments=payments or init_payments(settings),
                            webhook_secret=settings.stripe_webhook_secret,
                            storage=build_storage(settings), app_url=settings.client_app_url)
    except BaseException:
        verifier.close()
        raise
    app.extensions[EXTENSION] = AppState(settings, db, services, verifier, server)
    api = init_api(app, title="HustleXP API", version=settings.app_version)
    register_routers(api)
    init_observability(app, db)
    init_limits(app)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    init_stripe_budget(app, settings.stripe_timeout)
    return app


def init_observability(app: Flask, db: Database) -> None:
    """Request ids, the access log line and latency per request; GET /metrics."""
    from hustlexp.api.prometheus import init_metrics_route
    from hustlexp.obs import metrics
    from hustlexp.obs.access import init_request_log

    init_request_log(app, db.pool)
    init_metrics_route(app)
    metrics.worker_started()


def init_stripe_budget(app: Flask, seconds: float) -> None:
    """Each request waits on Stripe at most `seconds` in all, so it always answers before
    gunicorn's worker timeout: a change that committed is answered as a success, and what
    Stripe did not finish stays in the outbox for the retry job."""
    from hustlexp.services.stripe_http import stripe_budget

    inner = app.wsgi_app

    def wsgi_app(environ: Any, start_response: Any) -> Any:
        with stripe_budget(seconds):
            return inner(environ, start_response)

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]


def init_db(settings: config_mod.Settings) -> tuple[Database, Any]:
    """The pool, opened without waiting: a worker starts even while the database is down
    (GET /health then reports it) and connects as soon as it can."""
    if settings.production and not settings.database_url:
        raise config_mod.ConfigError("refusing to start in production: DATABASE_URL is not set")
    url, server = embedded.resolve_url(settings.database_url)
    db = Database(url, min_size=1, max_size=settings.db_pool_max, timeout=settings.db_pool_timeout)
    return db.open(wait=False), server


def init_payments(settings: config_mod.Settings) -> PaymentsGateway:
    from hustlexp.services.payments import PaymentsGateway

    return PaymentsGateway(settings.stripe_secret_key, api_base=settings.stripe_api_base,
                           webhook_secret=settings.stripe_webhook_secret,
                           connect_webhook_secret=settings.stripe_connect_webhook_secret,
                           read_timeout=settings.stripe_timeout,
                           max_network_retries=settings.stripe_max_network_retries)


def init_push(settings: config_mod.Settings) -> PushGateway | None:
    """FCM for push delivery, when a service account is configured (FCM_CREDENTIALS, else
    FIREBASE_ADMIN_KEY); None leaves pushes waiting in the notifications."""
    key = settings.fcm_credentials or settings.firebase_admin_key
    if not key:
        return None
    from hustlexp.services.push import PushGateway

    return PushGateway(config_mod.service_account(key), api_base=settings.fcm_api_base)


def close_app(app: Flask) -> None:
    """Release what create_app opened (pool, firebase app). Tests and workers call it."""
    state: AppState = app.extensions[EXTENSION]
    state.db.close()
    state.verifier.close()
