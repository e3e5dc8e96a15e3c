"""Firebase ID tokens verified by the real firebase_admin (only its certificate URL points at
the tests' local server); users and admin rights from the database."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.views import MethodView

from hustlexp.api.auth import VERIFIED_TOKENS_KEPT, TokenVerifier, current_admin, current_user, requires_admin
from hustlexp.api.base import Blueprint, Schema, fields
from hustlexp.app import close_app, create_app
from hustlexp.config import ConfigError, load
from hustlexp.errors import AuthInvalid
from tests.api.conftest import CERT_FETCHES, KEY_ID, PROJECT_ID, SigningKey, api_settings, data, error, firebase_claims

Register = Callable[..., tuple[dict[str, Any], dict[str, str]]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_invalid(response: Any) -> None:
    assert response.status_code == 401
    assert error(response)["code"] == "AUTH_INVALID"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- the token ----------------------------------------------------------------------------

def test_valid_token_of_registered_user_is_accepted(client: Any, register: Register) -> None:
    user, headers = register(client, "uid-valid", email="valid@example.test")
    response = client.get("/api/users/me", headers=headers)
    assert response.status_code == 200
    assert data(response)["id"] == user["id"]
    assert data(response)["email"] == "valid@example.test"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_missing_or_non_bearer_header_is_auth_required(client: Any, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = client.get("/api/users/me", headers=headers)
    assert response.status_code == 401
    assert error(response)["code"] == "AUTH_REQUIRED"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_expired_token_is_invalid(client: Any, register: Register, token_for: Any) -> None:
    register(client, "uid-expired")
    past = firebase_claims("uid-expired", "x@example.test")["iat"] - 7200
    assert_invalid(client.get("/api/users/me", headers=bearer(
        token_for("uid-expired", iat=past, auth_time=past, exp=past + 3600))))


def test_wrong_audience_is_invalid(client: Any, register: Register, token_for: Any) -> None:
    register(client, "uid-aud")
    assert_invalid(client.get("/api/users/me", headers=bearer(token_for("uid-aud", aud="another-project"))))


def test_wrong_issuer_is_invalid(client: Any, register: Register, token_for: Any) -> None:
    register(client, "uid-iss")
    token = token_for("uid-iss", iss="https://securetoken.google.com/another-project")
    assert_invalid(client.get("/api/users/me", headers=bearer(token)))


def test_tampered_token_is_invalid(client: Any, register: Register, token_for: Any) -> None:
    register(client, "uid-victim")
    register(client, "uid-attacker")
    header, payload, signature = token_for("uid-attacker").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims |= {"sub": "uid-victim", "user_id": "uid-victim"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_invalid(client.get("/api/users/me", headers=bearer(f"{header}.{forged}.{signature}")))


def test_token_signed_by_unknown_key_is_invalid(client: Any, register: Register, token_for: Any) -> None:
    register(client, "uid-key")
    impostor = SigningKey(KEY_ID)  # same key id, different key: the signature cannot verify
    assert_invalid(client.get("/api/users/me", headers=bearer(token_for("uid-key", key=impostor))))
    unknown_kid = SigningKey("kid-nobody-published")
    assert_invalid(client.get("/api/users/me", headers=bearer(token_for("uid-key", key=unknown_kid))))


def test_unsigned_or_garbage_token_is_invalid(client: Any, register: Register) -> None:
    register(client, "uid-none")
    unsigned = jwt.encode(firebase_claims("uid-none", "n@example.test"), None, algorithm="none")
    for token in (unsigned, "not-a-jwt", "a.b.c"):
        assert_invalid(client.get("/api/users/me", headers=bearer(token)))


def test_unregistered_identity_is_hx504_except_registration(client: Any, auth: Any) -> None:
    headers = auth("uid-newcomer")
    for method, path in (("get", "/api/users/me"), ("get", "/api/users/me/xp"),
                         ("get", "/api/notifications"), ("patch", "/api/users/me")):
        response = getattr(client, method)(path, headers=headers, json={"full_name": "X"}
                                           if method == "patch" else None)
        assert response.status_code == 404, path
        assert error(response)["code"] == "HX504", path
    created = client.post("/api/users", json={"full_name": "New Comer"}, headers=headers)
    assert created.status_code == 201
    assert client.get("/api/users/me", headers=headers).status_code == 200


# -- emulator mode ------------------------------------------------------------------------

def test_production_refuses_to_start_with_emulator_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(ConfigError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        create_app({"HUSTLEXP_ENV": "production", "DATABASE_URL": "postgresql://db.invalid/hx",
                    "STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_x",
                    "FIREBASE_PROJECT_ID": PROJECT_ID, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"})


def test_emulator_tokens_are_accepted_outside_production(db_url: str, tmp_path: Any, firebase_certs: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    app = create_app(api_settings(db_url, tmp_path, FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099"))
    try:
        client = app.test_client()
        # What the Auth emulator issues: alg "none", no signature, no key id.
        token = jwt.encode(firebase_claims("uid-emulated", "emu@example.test"), None, algorithm="none")
        created = client.post("/api/users", json={"full_name": "Emu Lated"}, headers=bearer(token))
        assert created.status_code == 201
        assert data(created)["email"] == "emu@example.test"
        # Audience is still checked in emulator mode.
        other = jwt.encode(firebase_claims("uid-emulated", "emu@example.test", aud="elsewhere"), None,
                           algorithm="none")
        assert_invalid(client.get("/api/users/me", headers=bearer(other)))
    finally:
        close_app(app)


# -- account status -----------------------------------------------------------------------

def test_paused_account_reads_but_cannot_change(client: Any, register: Register, conn: Any) -> None:
    user, headers = register(client, "uid-paused")
    conn.execute("UPDATE users SET account_status = 'PAUSED', paused_at = now() WHERE id = %s", (user["id"],))
    assert client.get("/api/users/me", headers=headers).status_code == 200
    refused = client.patch("/api/users/me", json={"full_name": "Still Me"}, headers=headers)
    assert refused.status_code == 403
    assert error(refused)["code"] == "HX602"
    # The payout account stays editable: a paused worker may still be owed money.
    payout = client.put("/api/users/me/payout-account", json={"stripe_connect_id": "acct_Paused1"},
                        headers=headers)
    assert payout.status_code == 200


def test_suspended_account_is_forbidden(client: Any, register: Register, conn: Any) -> None:
    user, headers = register(client, "uid-suspended")
    conn.execute("UPDATE users SET account_status = 'SUSPENDED' WHERE id = %s", (user["id"],))
    for method, path in (("get", "/api/users/me"), ("get", "/api/notifications")):
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 403, path
        assert error(response)["code"] == "ACCOUNT_SUSPENDED", path


# -- admin rights -------------------------------------------------------------------------

class _RoleSchema(Schema):
    user_id = fields.UUID(required=True)
    role = fields.String(required=True)


@pytest.fixture
def admin_client(app: Flask) -> Any:
    blp = Blueprint("admin_probe", __name__, url_prefix="/api/admin-probe")

    @blp.route("")
    class Probe(MethodView):
        @requires_admin("can_resolve_disputes")
        @blp.response(200, _RoleSchema)
        def post(self) -> Any:
            assert current_admin()["user_id"] == current_user().id
            return current_admin()

    app.extensions["flask-smorest"]["apis"][""]["ext_obj"].register_blueprint(blp)
    return app.test_client()


def test_admin_route_needs_the_flag_from_the_database(admin_client: Any, register: Register,
                                                      make_admin: Any, auth: Any) -> None:
    _, plain = register(admin_client, "uid-plain")
    # Claims cannot grant rights: only admin_roles does.
    claims = auth("uid-plain", admin=True, role="founder", can_resolve_disputes=True)
    for headers in (plain, claims):
        response = admin_client.post("/api/admin-probe", headers=headers)
        assert response.status_code == 403
        assert error(response)["code"] == "FORBIDDEN"

    support, support_headers = register(admin_client, "uid-support")
    make_admin(support["id"], role="support", can_ban_users=True)
    assert admin_client.post("/api/admin-probe", headers=support_headers).status_code == 403

    judge, judge_headers = register(admin_client, "uid-judge")
    make_admin(judge["id"], role="moderator", can_resolve_disputes=True)
    granted = admin_client.post("/api/admin-probe", headers=judge_headers)
    assert granted.status_code == 200
    assert data(granted) == {"user_id": judge["id"], "role": "moderator"}

    assert admin_client.post("/api/admin-probe").status_code == 401


def test_requires_admin_refuses_unknown_flags() -> None:
    with pytest.raises(ValueError, match="unknown admin flag"):
        requires_admin("can_do_anything")


def test_apps_do_not_share_firebase_state(db_url: str, tmp_path: Any, firebase_certs: str,
                                          token_for: Any) -> None:
    other = create_app(api_settings(db_url, tmp_path, FIREBASE_PROJECT_ID="another-project"))
    try:
        # A token for our test project is the wrong audience for the other app.
        response = other.test_client().get("/api/users/me", headers=bearer(token_for("uid-x")))
        assert_invalid(response)
    finally:
        close_app(other)


# -- verified tokens are reused ------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = float(firebase_claims("u", None)["iat"] + 60)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def verifier(db_url: str, tmp_path: Any, firebase_certs: str) -> Any:
    clock = _Clock()
    verifier = TokenVerifier(load(api_settings(db_url, tmp_path)), clock=clock)
    yield verifier, clock
    verifier.close()


def test_a_verified_token_is_not_verified_again(client: Any, register: Register, token_for: Any) -> None:
    register(client, "uid-again")
    signed_in = firebase_claims("u", None)["iat"] - 120  # a token other than registration's
    headers = bearer(token_for("uid-again", auth_time=signed_in))
    fetched = len(CERT_FETCHES)
    assert client.get("/api/users/me", headers=headers).status_code == 200
    assert len(CERT_FETCHES) == fetched + 1
    for _ in range(3):
        assert client.get("/api/users/me", headers=headers).status_code == 200
    assert len(CERT_FETCHES) == fetched + 1
    # Another token of the same user is a token of its own.
    assert client.get("/api/users/me", headers=bearer(token_for("uid-again", auth_time=signed_in - 1))
                      ).status_code == 200
    assert len(CERT_FETCHES) == fetched + 2


def test_a_reused_token_still_expires(verifier: Any, token_for: Any) -> None:
    tokens, clock = verifier
    token = token_for("uid-expiring", exp=int(clock.now) + 100)
    assert tokens.verify(token)["uid"] == "uid-expiring"
    clock.now += 100  # expired, within the 5 s of tolerated skew
    assert tokens.verify(token)["uid"] == "uid-expiring"
    clock.now += 6
    for _ in range(2):
        with pytest.raises(AuthInvalid):
            tokens.verify(token)
    assert not tokens._verified


def test_reused_claims_are_the_callers_own_copy(verifier: Any, token_for: Any) -> None:
    tokens, _ = verifier
    token = token_for("uid-copy")
    tokens.verify(token)["uid"] = "someone-else"
    assert tokens.verify(token)["uid"] == "uid-copy"


def test_refused_tokens_are_not_kept_and_the_cache_is_bounded(verifier: Any, token_for: Any,
                                                              signing_key: Any) -> None:
    tokens, _ = verifier
    for _ in range(2):
        with pytest.raises(AuthInvalid):
            tokens.verify(token_for("uid-bad", aud="elsewhere"))
    assert not tokens._verified
    body = firebase_claims("uid-many", "m@example.test")
    for n in range(VERIFIED_TOKENS_KEPT + 10):
        tokens._verified[f"token-{n}"] = (body, float("inf"))
    tokens.verify(token_for("uid-many"))
    assert len(tokens._verified) == VERIFIED_TOKENS_KEPT + 10  # one oldest out, one in
    assert "token-0" not in tokens._verified


# -- token times, checked by us in both modes ----------------------------------------------

def _bad_times() -> dict[str, dict[str, Any]]:
    now = firebase_claims("u", None)["iat"] + 60
    return {
        "expired": {"iat": now - 7200, "auth_time": now - 7200, "exp": now - 3600},
        "exp a string": {"exp": str(now + 3600)},
        "exp a boolean": {"exp": True},
        "iat in the future": {"iat": now + 600, "exp": now + 4200},
        "auth_time in the future": {"auth_time": now + 600},
        "auth_time a string": {"auth_time": "yesterday"},
        "iat missing": {"iat": None},
    }


@pytest.mark.parametrize("claims", _bad_times().values(), ids=_bad_times().keys())
def test_bad_token_times_are_invalid_with_real_verification(client: Any, register: Register, signing_key: Any,
                                                             claims: dict[str, Any]) -> None:
    register(client, "uid-times")
    body = {k: v for k, v in (firebase_claims("uid-times", "t@example.test") | claims).items() if v is not None}
    assert_invalid(client.get("/api/users/me", headers=bearer(signing_key.sign(body))))


@pytest.mark.parametrize("claims", _bad_times().values(), ids=_bad_times().keys())
def test_bad_token_times_are_invalid_in_emulator_mode(db_url: str, tmp_path: Any, firebase_certs: str,
                                                      monkeypatch: pytest.MonkeyPatch, claims: dict[str, Any]) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    app = create_app(api_settings(db_url, tmp_path, FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099"))
    try:
        client = app.test_client()
        good = jwt.encode(firebase_claims("uid-emu-times", "e@example.test"), None, algorithm="none")
        assert client.post("/api/users", json={"full_name": "Emu"}, headers=bearer(good)).status_code == 201
        body = {k: v for k, v in (firebase_claims("uid-emu-times", "e@example.test") | claims).items()
                if v is not None}
        token = jwt.encode(body, None, algorithm="none")
        assert_invalid(client.get("/api/users/me", headers=bearer(token)))
    finally:
        close_app(app)
