"""API test fixtures: the real app, on this test's own database, with real Firebase token
verification. Reuse them in every tests/api module.

- ``app``: ``create_app`` with the test database (``db_url``), WEBHOOK_SECRET, a PaymentsGateway
  talking to ``stripe_fake`` (the in-process FakeStripe), storage under tmp_path and Firebase
  project PROJECT_ID. Closed (pool, firebase app) after the test.
- ``client``: the Flask test client of ``app``.
- ``token_for(uid, email=None, **claims)``: a Firebase-shaped ID token signed with the tests'
  own RSA key. firebase_admin verifies it for real: only the public-certificate URL is pointed
  at a local HTTP server serving our certificate. Pass claims to override (``exp``, ``aud``,
  ``iss``...) and ``key=other_key`` to sign with a key Firebase does not know.
- ``register(client, uid=None, **fields)``: POST /api/users for a new identity; returns
  ``(user dict, auth headers)``. ``auth(uid)`` gives the headers for an existing identity.
- ``make_admin(user_id, role="admin", **flags)``: an admin_roles row (flags default false).
- ``conn``: a raw connection to the same database (from tests/conftest.py), for setup that
  has no API (task states, badges...) through tests/factories.py.
- ``services``: the app's own Services container: drive a task's life with
  tests.services.flows (e.g. ``flows.completed_task(services, stripe_fake, worker=user_id)``).
- ``error(response)`` / ``data(response)``: plain helpers (import them from this module) that
  assert the error / success envelope and return its error object / data.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import firebase_admin._token_gen
import jwt
import marshmallow as ma
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from hustlexp.api import base
from hustlexp.app import close_app, create_app
from hustlexp.services import Services
from hustlexp.services.payments import PaymentsGateway
from tests.fakes.stripe_fake import FakeStripe
from tests.services.conftest import WEBHOOK_SECRET as SERVICES_WEBHOOK_SECRET

PROJECT_ID = "hustlexp-test"
# The services' test secret, so tests.services.flows can drive the app's own Services.
WEBHOOK_SECRET = SERVICES_WEBHOOK_SECRET
KEY_ID = "hx-test-key-1"

TokenFor = Callable[..., str]
Headers = dict[str, str]


class SigningKey:
    """An RSA key and the self-signed certificate Firebase's cert endpoint would publish."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.private.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
                .sign(self.private, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey(KEY_ID)


# Every certificate fetch the local x509 endpoint answered (firebase-admin fetches them for
# each verification it does: the server sends no caching headers).
CERT_FETCHES: list[str] = []


@pytest.fixture(scope="session")
def cert_url(signing_key: SigningKey) -> Iterator[str]:
    """A local stand-in for Google's x509 endpoint, serving the tests' certificate."""
    body = json.dumps({signing_key.kid: signing_key.cert_pem}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            CERT_FETCHES.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/robot/v1/metadata/x509/securetoken"
    server.shutdown()
    server.server_close()


@pytest.fixture
def firebase_certs(monkeypatch: pytest.MonkeyPatch, cert_url: str) -> str:
    """Point firebase-admin's certificate fetch (and only that) at the local server, and make
    sure no emulator switch leaks in from the shell."""
    monkeypatch.setattr(firebase_admin._token_gen, "ID_TOKEN_CERT_URI", cert_url)
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    return cert_url


def firebase_claims(uid: str, email: str | None, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{PROJECT_ID}", "aud": PROJECT_ID,
        "auth_time": now - 60, "user_id": uid, "sub": uid, "iat": now - 60, "exp": now + 3600,
        "firebase": {"identities": {"email": [email] if email else []}, "sign_in_provider": "password"},
    }
    if email is not None:
        claims |= {"email": email, "email_verified": True}
    return claims | overrides


@pytest.fixture
def token_for(signing_key: SigningKey) -> TokenFor:
    def make(uid: str, email: str | None = None, *, key: SigningKey | None = None, **claims: Any) -> str:
        if email is None:
            email = f"{uid}@example.test"
        return (key or signing_key).sign(firebase_claims(uid, email, **claims))

    return make


def strictly(value: Any) -> Any:
    """`value` with every leaf tagged by its type (True == 1 == 1.0 in Python, not in JSON)."""
    if isinstance(value, dict):
        return {k: strictly(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strictly(v) for v in value]
    return (type(value).__name__, value)


@pytest.fixture(autouse=True)
def dumps_match_marshmallow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer the API tests get is dumped twice: by our planned dump (hustlexp.api.dumping)
    and by marshmallow's own; they must be equal, types included."""
    planned = base.Schema.dump

    def checked(self: base.Schema, obj: Any, *, many: bool | None = None) -> Any:
        ours = planned(self, obj, many=many)
        theirs = ma.Schema.dump(self, obj, many=many)
        assert strictly(ours) == strictly(theirs), f"{type(self).__name__} dumps differently"
        return ours

    monkeypatch.setattr(base.Schema, "dump", checked)


def api_settings(db_url: str, tmp_path: Any, **extra: str) -> dict[str, str]:
    return {"HUSTLEXP_ENV": "test", "DATABASE_URL": db_url, "FIREBASE_PROJECT_ID": PROJECT_ID,
            "STRIPE_SECRET_KEY": "sk_test_api", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "HUSTLEXP_STORAGE_DIR": str(tmp_path / "uploads")} | extra


@pytest.fixture
def app(db_url: str, tmp_path: Any, firebase_certs: str, stripe_fake: FakeStripe) -> Iterator[Flask]:
    gateway = PaymentsGateway("sk_test_api", http_client=stripe_fake.http_client(),
                              webhook_secret=WEBHOOK_SECRET)
    application = create_app(api_settings(db_url, tmp_path), payments=gateway)
    application.config["TESTING"] = True
    yield application
    close_app(application)


@pytest.fixture
def services(app: Flask) -> Services:
    services: Services = app.extensions["hustlexp"].services
    return services


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth(token_for: TokenFor) -> Callable[..., Headers]:
    def headers(uid: str, email: str | None = None, **claims: Any) -> Headers:
        return {"Authorization": f"Bearer {token_for(uid, email, **claims)}"}

    return headers


@pytest.fixture
def register(auth: Callable[..., Headers]) -> Callable[..., tuple[dict[str, Any], Headers]]:
    def do(client: FlaskClient, uid: str | None = None, *, email: str | None = None,
           **fields: Any) -> tuple[dict[str, Any], Headers]:
        uid = uid or f"uid-{uuid.uuid4().hex[:16]}"
        headers = auth(uid, email)
        body = {"full_name": f"Test {uid}"} | fields
        response = client.post("/api/users", json=body, headers=headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["data"], headers

    return do


@pytest.fixture
def make_admin(conn: Any) -> Callable[..., Any]:
    def make(user_id: Any, role: str = "admin", **flags: bool) -> Any:
        cols = {"user_id": user_id, "role": role} | flags
        names = ", ".join(cols)  # column names come from this test file, never from input
        marks = ", ".join(f"%({k})s" for k in cols)
        row = conn.execute(f"INSERT INTO admin_roles ({names}) VALUES ({marks}) RETURNING id", cols).fetchone()
        return row["id"]

    return make


def error(response: Any) -> dict[str, Any]:
    """The error object of an error envelope (asserting the envelope on the way)."""
    body = response.get_json()
    assert body is not None, response.data[:200]
    assert body["success"] is False
    assert isinstance(body["timestamp"], str)
    assert set(body) == {"success", "error", "timestamp"}
    err: dict[str, Any] = body["error"]
    return err


def data(response: Any) -> Any:
    """The data of a success envelope (asserting the envelope on the way)."""
    body = response.get_json()
    assert body is not None, response.data[:200]
    assert body["success"] is True, body
    assert set(body) == {"success", "data", "timestamp"}
    return body["data"]


@pytest.fixture
def world(client: FlaskClient, register: Any, conn: Any, stripe_fake: FakeStripe) -> Any:
    """Poster, worker and stranger, registered, with helpers to move a task along (world.py)."""
    from tests.api.world import World

    return World(client, register, conn, stripe_fake)
