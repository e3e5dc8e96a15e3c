"""`hustlexp dev-token UID [--email E]`: an ID token for local work against the Firebase Auth
emulator. With FIREBASE_AUTH_EMULATOR_HOST set, firebase-admin accepts the emulator's unsigned
tokens; this prints one, so curl can act as any user without a cloud project. It refuses
whenever the emulator switch is off (and production refuses to start with it on)."""

from __future__ import annotations

import argparse
import base64
import json
import time
from typing import Any

from hustlexp import config


def register(sub: Any) -> None:
    token = sub.add_parser("dev-token", help="print a Firebase-emulator ID token for local curl work",
                           description=__doc__)
    token.add_argument("uid", help="the Firebase user id to act as")
    token.add_argument("--email", help="email claim (default <uid>@example.test)")
    token.add_argument("--hours", type=int, default=12, help="lifetime (default 12)")
    token.set_defaults(func=cmd_dev_token)


def emulator_token(uid: str, email: str, project_id: str, *, hours: int = 12) -> str:
    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{project_id}", "aud": project_id, "sub": uid,
              "user_id": uid, "email": email, "email_verified": True, "iat": now, "auth_time": now,
              "exp": now + hours * 3600,
              "firebase": {"identities": {"email": [email]}, "sign_in_provider": "password"}}
    return ".".join(_b64(part) for part in ({"alg": "none", "typ": "JWT"}, claims)) + "."


def cmd_dev_token(args: argparse.Namespace, settings: config.Settings) -> int:
    from hustlexp.cli import CliError

    if not settings.firebase_auth_emulator_host or settings.production:
        raise CliError("dev-token needs FIREBASE_AUTH_EMULATOR_HOST set (development only): "
                       "the API accepts unsigned tokens only in emulator mode")
    print(emulator_token(args.uid, args.email or f"{args.uid}@example.test", settings.firebase_project_id,
                         hours=args.hours))
    return 0


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part, separators=(",", ":")).encode()).rstrip(b"=").decode()
