"""Production refuses to start with a guessable or missing secret, or a Stripe test key
without an explicit staging switch: exit 2 and one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from hustlexp import config
from hustlexp.config import ConfigError

SAFE = {"HUSTLEXP_ENV": "production", "DATABASE_URL": "postgresql://db.invalid/hx",
        "STRIPE_SECRET_KEY": "sk_live_51Prod", "STRIPE_WEBHOOK_SECRET": "whsec_prodsecret",
        "FIREBASE_PROJECT_ID": "hustlexp-prod", "HUSTLEXP_APP_URL": "https://app.hustlexp.test"}


def test_production_accepts_real_looking_settings() -> None:
    assert config.load(SAFE).production


@pytest.mark.parametrize(("name", "value"), [
    ("STRIPE_WEBHOOK_SECRET", "whsec_local"), ("STRIPE_SECRET_KEY", "sk_test_local"),
    ("FIREBASE_PROJECT_ID", "hustlexp-local"), ("STRIPE_WEBHOOK_SECRET", ""), ("STRIPE_SECRET_KEY", "  "),
    ("DATABASE_URL", ""),
])
def test_production_refuses_a_development_default_or_empty_secret(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        config.load(SAFE | {name: value})


@pytest.mark.parametrize("key", ["sk_test_51abc", "rk_test_51abc"])
def test_production_refuses_stripe_test_keys_unless_staging_says_so(key: str) -> None:
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY"):
        config.load(SAFE | {"STRIPE_SECRET_KEY": key})
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY"):
        config.load(SAFE | {"STRIPE_SECRET_KEY": key, "HUSTLEXP_STRIPE_TEST_MODE": "yes"})
    assert config.load(SAFE | {"STRIPE_SECRET_KEY": key, "HUSTLEXP_STRIPE_TEST_MODE": "1"}).production
    # Development and tests take test keys without any switch.
    assert not config.load({"STRIPE_SECRET_KEY": key}).production


def run_serve(env: dict[str, str], tmp_path: Any) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SAFE and not k.startswith(("STRIPE_", "FIREBASE_"))}
    return subprocess.run([sys.executable, "-m", "hustlexp.cli", "serve", "--port", "1"],
                          env=clean | {"HUSTLEXP_PGDATA": str(tmp_path / "pg")} | env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_serve_in_production_with_the_public_webhook_secret_exits_2_in_one_line(tmp_path: Any) -> None:
    done = run_serve(SAFE | {"STRIPE_WEBHOOK_SECRET": "whsec_local"}, tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "STRIPE_WEBHOOK_SECRET" in lines[0], done.stderr
    assert not (tmp_path / "pg").exists()  # refused before anything started


@pytest.mark.parametrize("app_url", ["", "http://app.hustlexp.test", "https://", "hustlexp://settings"])
def test_production_needs_the_apps_https_url_for_onboarding(app_url: str) -> None:
    with pytest.raises(ConfigError, match="HUSTLEXP_APP_URL"):
        config.load(SAFE | {"HUSTLEXP_APP_URL": app_url})
    assert config.load(SAFE).client_app_url == "https://app.hustlexp.test"
    assert config.load({"HUSTLEXP_APP_URL": "http://127.0.0.1:19006/"}).client_app_url == "http://127.0.0.1:19006"


def test_hand_set_payout_accounts_are_off_in_production_unless_switched_on() -> None:
    assert config.load(SAFE).manual_payout_accounts is False
    assert config.load(SAFE | {"HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS": "1"}).manual_payout_accounts is True
    assert config.load({}).manual_payout_accounts is True
    assert config.load({"HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS": "0"}).manual_payout_accounts is False
    with pytest.raises(ConfigError, match="HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS"):
        config.load({"HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS": "yes"})


def test_production_refuses_the_public_secret_for_the_connect_endpoint() -> None:
    with pytest.raises(ConfigError, match="STRIPE_CONNECT_WEBHOOK_SECRET"):
        config.load(SAFE | {"STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_local"})
    assert config.load(SAFE | {"STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_connectprod"}).stripe_connect_webhook_secret \
        == "whsec_connectprod"


def test_storage_is_local_by_default_and_s3_needs_a_bucket() -> None:
    assert config.load({}).storage == "local"
    settings = config.load({"HUSTLEXP_STORAGE": "s3", "HUSTLEXP_S3_BUCKET": "hx-prod", "AWS_REGION": "eu-west-1",
                            "HUSTLEXP_S3_ENDPOINT_URL": "https://r2.example.test"})
    assert (settings.storage, settings.s3_bucket, settings.s3_region, settings.s3_endpoint_url) == (
        "s3", "hx-prod", "eu-west-1", "https://r2.example.test")
    with pytest.raises(ConfigError, match="HUSTLEXP_S3_BUCKET"):
        config.load({"HUSTLEXP_STORAGE": "s3"})
    with pytest.raises(ConfigError, match="HUSTLEXP_STORAGE"):
        config.load({"HUSTLEXP_STORAGE": "ftp"})


@pytest.mark.parametrize(("name", "value"), [("FCM_API_BASE", "http://127.0.0.1:9"), ("HUSTLEXP_RATE_LIMITS", "off")])
def test_production_refuses_a_fake_fcm_or_no_request_limits(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        config.load(SAFE | {name: value})


@pytest.mark.parametrize(("name", "value"), [("HUSTLEXP_RATE_LIMITS", "maybe"), ("HUSTLEXP_TRUSTED_PROXIES", "9")])
def test_limit_settings_out_of_range_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        config.load({name: value})
