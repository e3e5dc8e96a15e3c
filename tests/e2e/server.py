"""Launcher for the E2E server: the real `hustlexp serve` (gunicorn, forked workers, each
building its app with create_app from the environment), with one difference only:
firebase-admin fetches Google's public token certificates from the URL in
HUSTLEXP_E2E_CERT_URL, where the tests serve the certificate of their own signing key.

    python -m tests.e2e.server --host 127.0.0.1 --port 8123 --workers 2

Tokens are still verified by firebase_admin.auth.verify_id_token in full (signature,
audience, issuer, expiry); nothing else is patched. The constant is set in the gunicorn
master before any worker forks, so every worker inherits it."""

from __future__ import annotations

import os
import sys

import firebase_admin._token_gen

from hustlexp import cli

CERT_URL_VARIABLE = "HUSTLEXP_E2E_CERT_URL"


def main(argv: list[str]) -> int:
    cert_url = os.environ.get(CERT_URL_VARIABLE, "").strip()
    if not cert_url:
        print(f"{CERT_URL_VARIABLE} is not set", file=sys.stderr)
        return 2
    firebase_admin._token_gen.ID_TOKEN_CERT_URI = cert_url
    return cli.main(["serve", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
