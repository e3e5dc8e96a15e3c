"""Settings, from the environment only (see .env.example). Fail fast: a production
process refuses to start with unsafe or missing settings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str | None = None
    stripe_secret_key: str = "sk_test_local"
    stripe_webhook_secret: str = "whsec_local"
    # Signing secret of a Connect webhook endpoint (events of connected accounts), if one is set up.
    stripe_connect_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    firebase_project_id: str = "hustlexp-local"
    firebase_auth_emulator_host: str | None = None
    firebase_admin_key: str | None = None
    storage_dir: Path = field(default_factory=lambda: Path("instance") / "uploads")
    # local (files under storage_dir, the embedded default) or s3 (any S3-compatible store:
    # every API host reads what another stored). Credentials: boto3's usual AWS_* variables.
    storage: str = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_public_url: str | None = None
    # Signs local storage's upload/download URLs; unset, a key kept under storage_dir is used.
    storage_secret: str | None = None
    app_url: str = "http://127.0.0.1:8000"
    app_version: str = "1.0.0"
    db_pool_max: int = 10
    db_pool_timeout: float = 10.0
    # Seconds a Stripe call waits for an answer, and the most one API request waits on Stripe in
    # all (below gunicorn's 30 s worker timeout); connecting waits at most 5 s of it.
    stripe_timeout: float = 20.0
    # How often the stripe library retries a dropped, timed-out or 409/5xx call (same idempotency key).
    stripe_max_network_retries: int = 2
    # json (one object per line) or text; production defaults to json.
    log_format: str = "text"
    # GET /metrics needs `Authorization: Bearer <token>` when set; in production it is
    # served only when set (otherwise 404: scrape it on a private network with a token).
    metrics_token: str | None = None
    # Request limits (hustlexp.services.limits); off only outside production (benchmarks).
    rate_limits: bool = True
    # Proxies (load balancers) in front of the API whose X-Forwarded-For is trusted: the
    # client address of per-IP limits is the one the nearest of them saw. 0: none.
    trusted_proxies: int = 0
    # Another FCM-compatible server for push delivery (a local fake in tests); development and
    # tests only. Pushes go out only with FIREBASE_ADMIN_KEY (a service account) set.
    fcm_api_base: str | None = None
    # The service account pushes are sent with (path or JSON); default FIREBASE_ADMIN_KEY.
    fcm_credentials: str | None = None
    # The mobile/web app's public URL (HUSTLEXP_APP_URL): Stripe sends a worker back to
    # <it>/settings/payments after Connect onboarding. Production needs an https one.
    client_app_url: str = "http://localhost:8081"
    # Whether a worker may set their payout account id by hand (PUT /api/users/me/payout-account,
    # HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS=1|0). Default: yes outside production, no in production,
    # where accounts come from Connect onboarding only.
    manual_payout_accounts: bool = True

    @property
    def production(self) -> bool:
        return self.env == "production"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    rate_limits = (get("HUSTLEXP_RATE_LIMITS") or "on").lower()
    if rate_limits not in ("on", "off"):
        raise ConfigError("HUSTLEXP_RATE_LIMITS must be on or off")
    settings = Settings(
        env=get("HUSTLEXP_ENV") or "development",
        database_url=get("DATABASE_URL"),
        stripe_secret_key=get("STRIPE_SECRET_KEY") or Settings.stripe_secret_key,
        stripe_webhook_secret=get("STRIPE_WEBHOOK_SECRET") or Settings.stripe_webhook_secret,
        stripe_api_base=get("STRIPE_API_BASE"),
        stripe_connect_webhook_secret=get("STRIPE_CONNECT_WEBHOOK_SECRET"),
        firebase_project_id=get("FIREBASE_PROJECT_ID") or Settings.firebase_project_id,
        firebase_auth_emulator_host=get("FIREBASE_AUTH_EMULATOR_HOST"),
        firebase_admin_key=get("FIREBASE_ADMIN_KEY"),
        storage_dir=Path(get("HUSTLEXP_STORAGE_DIR") or Path("instance") / "uploads"),
        storage=get("HUSTLEXP_STORAGE") or "local",
        s3_bucket=get("HUSTLEXP_S3_BUCKET"),
        s3_endpoint_url=get("HUSTLEXP_S3_ENDPOINT_URL"),
        s3_region=get("AWS_REGION") or get("AWS_DEFAULT_REGION"),
        s3_public_url=get("HUSTLEXP_S3_PUBLIC_URL"),
        storage_secret=get("HUSTLEXP_STORAGE_SECRET"),
        app_url=get("APP_URL") or Settings.app_url,
        app_version=get("APP_VERSION") or Settings.app_version,
        db_pool_max=int(get("HUSTLEXP_DB_POOL_MAX") or 10),
        db_pool_timeout=float(get("HUSTLEXP_DB_POOL_TIMEOUT") or 10.0),
        stripe_timeout=_number(get, "STRIPE_TIMEOUT_SECONDS", float, 20.0, 0.1, 20.0),
        stripe_max_network_retries=_number(get, "STRIPE_MAX_NETWORK_RETRIES", int, 2, 0, 5),
        log_format=get("HUSTLEXP_LOG_FORMAT") or ("json" if get("HUSTLEXP_ENV") == "production" else "text"),
        metrics_token=get("HUSTLEXP_METRICS_TOKEN"),
        rate_limits=rate_limits == "on",
        trusted_proxies=_number(get, "HUSTLEXP_TRUSTED_PROXIES", int, 0, 0, 5),
        fcm_api_base=get("FCM_API_BASE"),
        fcm_credentials=get("FCM_CREDENTIALS"),
        client_app_url=(get("HUSTLEXP_APP_URL") or Settings.client_app_url).rstrip("/"),
        manual_payout_accounts=_flag(get, "HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS",
                                     default=get("HUSTLEXP_ENV") != "production"),
    )
    if settings.log_format not in ("json", "text"):
        raise ConfigError(f"HUSTLEXP_LOG_FORMAT must be json or text, not {settings.log_format!r}")
    if settings.storage not in ("local", "s3"):
        raise ConfigError(f"HUSTLEXP_STORAGE must be local or s3, not {settings.storage!r}")
    if settings.storage == "s3" and not settings.s3_bucket:
        raise ConfigError("HUSTLEXP_STORAGE=s3 needs HUSTLEXP_S3_BUCKET")
    if settings.env not in ("development", "test", "production"):
        raise ConfigError(f"HUSTLEXP_ENV must be development, test or production, not {settings.env!r}")
    if settings.production:
        _check_production(env)
    return settings


# The code's own public defaults: anyone can sign a webhook with whsec_local. Production takes
# none of them, nor an empty value.
DEVELOPMENT_DEFAULTS = {
    "STRIPE_SECRET_KEY": Settings.stripe_secret_key,
    "STRIPE_WEBHOOK_SECRET": Settings.stripe_webhook_secret,
    "FIREBASE_PROJECT_ID": Settings.firebase_project_id,
}
REQUIRED_IN_PRODUCTION = ("DATABASE_URL", *DEVELOPMENT_DEFAULTS)
# Stripe test-mode keys move no real money; only a staging deployment says it wants them.
STRIPE_TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")
STRIPE_TEST_MODE = "HUSTLEXP_STRIPE_TEST_MODE"


def _number(get: Any, name: str, kind: Any, default: Any, low: float, high: float) -> Any:
    text = get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, not {text}")
    return value


def _flag(get: Any, name: str, *, default: bool) -> bool:
    text = get(name)
    if text is None:
        return default
    if text not in ("0", "1"):
        raise ConfigError(f"{name} must be 1 or 0, not {text!r}")
    return text == "1"


def _check_production(env: Mapping[str, str]) -> None:
    """Raise ConfigError (one line, naming each variable at fault) for an unsafe production setup."""
    problems = []
    if env.get("FIREBASE_AUTH_EMULATOR_HOST"):
        problems.append("FIREBASE_AUTH_EMULATOR_HOST is set: firebase-admin would accept unsigned tokens")
    for name in REQUIRED_IN_PRODUCTION:
        value = env.get(name, "").strip()
        if not value:
            problems.append(f"{name} is not set")
        elif value == DEVELOPMENT_DEFAULTS.get(name):
            problems.append(f"{name} is the public development default")
    key = env.get("STRIPE_SECRET_KEY", "").strip()
    if key.startswith(STRIPE_TEST_KEY_PREFIXES) and env.get(STRIPE_TEST_MODE, "").strip() != "1":
        problems.append(f"STRIPE_SECRET_KEY is a Stripe test key; set {STRIPE_TEST_MODE}=1 on a staging deployment")
    if env.get("STRIPE_CONNECT_WEBHOOK_SECRET", "").strip() == Settings.stripe_webhook_secret:
        problems.append("STRIPE_CONNECT_WEBHOOK_SECRET is the public development default")
    app_url = env.get("HUSTLEXP_APP_URL", "").strip()
    if not app_url.startswith("https://") or len(app_url) <= len("https://"):
        problems.append("HUSTLEXP_APP_URL must be the app's https:// URL (Connect onboarding returns there)")
    if env.get("STRIPE_API_BASE"):
        problems.append("STRIPE_API_BASE is set: production must talk to Stripe itself")
    if env.get("FCM_API_BASE", "").strip():
        problems.append("FCM_API_BASE is set: production must push through FCM itself")
    if env.get("HUSTLEXP_RATE_LIMITS", "").strip().lower() == "off":
        problems.append("HUSTLEXP_RATE_LIMITS is off: production keeps its request limits")
    if problems:
        raise ConfigError("refusing to start in production: " + "; ".join(problems))


def service_account(value: str) -> Any:
    """A Google service-account key setting (FIREBASE_ADMIN_KEY, FCM_CREDENTIALS): either a path
    to the JSON key file or the JSON itself."""
    return json.loads(value) if value.lstrip().startswith("{") else value
