"""A local Firebase Cloud Messaging, over real HTTP, for the REAL firebase-admin client: the
OAuth token endpoint a service account's `token_uri` names (the client signs a JWT assertion
with its key and gets an access token), and FCM HTTP v1's
`POST /v1/projects/{project}/messages:send`, which answers like FCM does:
- a known-bad token: 404 NOT_FOUND with FcmError UNREGISTERED, or 400 INVALID_ARGUMENT;
- `fail_next(token, n)`: the next n sends to it answer 429 QUOTA_EXCEEDED (transient; the
  client's own quick retries cover only 500/503, so each of these reaches the caller);
- a send without the access token it issued: 401.
Every accepted message is recorded (`messages`), with the project it was sent for."""

from __future__ import annotations

import functools
import json
import secrets
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.served import LocalServer

PROJECT = "hustlexp-push-test"


class FakeFCM:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.unregistered: set[str] = set()
        self.invalid: set[str] = set()
        self.failures: Counter[str] = Counter()
        self.access_token = secrets.token_urlsafe(16)
        self.tokens_issued = 0
        self.private_pem = _private_pem()
        self._server: LocalServer | None = None

    # -- control -------------------------------------------------------------------

    def fail_next(self, token: str, times: int = 1) -> None:
        with self.lock:
            self.failures[token] += times

    def sent_to(self, token: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["token"] == token]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def service_account(self) -> dict[str, Any]:
        """A service-account key whose token_uri is this server."""
        return {"type": "service_account", "project_id": PROJECT, "private_key_id": "fake-key-1",
                "private_key": self.private_pem, "client_email": f"push@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1", "token_uri": f"{self.url}/token"}

    # -- server --------------------------------------------------------------------

    def serve(self) -> FakeFCM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, body = fake._answer(self.path, self.headers.get("Authorization", ""), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = LocalServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeFCM:
        return self.serve()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self, path: str, authorization: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        if path == "/token":
            form = parse_qs(raw.decode())
            if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or not form.get("assertion"):
                return 400, {"error": "invalid_grant"}
            with self.lock:
                self.tokens_issued += 1
            return 200, {"access_token": self.access_token, "expires_in": 3600, "token_type": "Bearer"}
        prefix, suffix = "/v1/projects/", "/messages:send"
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return 404, {"error": {"code": 404, "message": "no such method", "status": "NOT_FOUND"}}
        if authorization != f"Bearer {self.access_token}":
            return 401, _error(401, "UNAUTHENTICATED", None)
        message = json.loads(raw)["message"]
        token = message.get("token", "")
        with self.lock:
            if self.failures[token] > 0:
                self.failures[token] -= 1
                self.refused.append(message)
                return 429, _error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
            if token in self.unregistered:
                self.refused.append(message)
                return 404, _error(404, "NOT_FOUND", "UNREGISTERED")
            if token in self.invalid:
                self.refused.append(message)
                return 400, _error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
            self.messages.append({**message, "project": path[len(prefix):-len(suffix)]})
            return 200, {"name": f"projects/{PROJECT}/messages/{secrets.token_hex(8)}"}


@functools.cache
def _private_pem() -> str:
    """One service-account key per test process (making one costs a noticeable moment)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _error(code: int, status: str, fcm_code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": f"fake FCM: {status}", "status": status}
    if fcm_code is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                             "errorCode": fcm_code}]
    return {"error": error}
