"""Who is calling: Firebase ID tokens verified by firebase-admin, users and admin rights
read from our database (never from token claims).

- ``@requires_token``: a verified token is enough (only POST /api/users, registration).
- ``@requires_user``: a verified token whose uid has a users row; SUSPENDED accounts are
  refused (403 ACCOUNT_SUSPENDED), CLOSED ones too (403 ACCOUNT_CLOSED) unless the route says
  ``allow_closed=True`` (resume, within the deletion grace period), PAUSED accounts may read
  but not change anything (403 HX602) unless the route says ``@requires_user(allow_paused=True)``.
- ``@requires_admin("can_resolve_disputes")``: ``requires_user`` plus that admin_roles flag.
- ``current_user()`` (a domain.User), ``current_claims()`` (the verified token's claims) and
  ``current_admin()`` (the admin_roles row) inside a decorated view.

Failures: no/non-Bearer Authorization header -> 401 AUTH_REQUIRED; a token that fails
verification (bad signature, expired, wrong audience or issuer, revoked) -> 401
AUTH_INVALID with ``WWW-Authenticate: Bearer``; verified but unregistered -> 404 HX504.

Each Flask app gets its own named firebase_admin App (project id from settings). No
credentials file is needed to verify tokens: Google's public certificates suffice. A
service-account key (FIREBASE_ADMIN_KEY) additionally enables the revocation check. Each
worker process keeps the tokens it verified (TokenVerifier.verify) and reuses them until they
expire, or for at most REVOCATION_RECHECK_SECONDS when the revocation check is on. With
FIREBASE_AUTH_EMULATOR_HOST set (refused in production), firebase-admin accepts the
emulator's unsigned tokens.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

import firebase_admin
from firebase_admin import auth as fb_auth
from firebase_admin import credentials as fb_credentials
from flask import current_app, g, request
from google.auth.credentials import AnonymousCredentials

from hustlexp.api import limits
from hustlexp.api.base import BEARER_SCHEME, EXTENSION, MUTATING, services
from hustlexp.config import ConfigError, Settings, service_account
from hustlexp.domain import AccountStatus, User
from hustlexp.errors import (
    AccountClosed,
    AccountSuspended,
    AuthInvalid,
    AuthRequired,
    DomainError,
    Forbidden,
    Unavailable,
)

log = logging.getLogger("hustlexp.auth")

F = TypeVar("F", bound=Callable[..., Any])

EMULATOR_VARIABLE = "FIREBASE_AUTH_EMULATOR_HOST"
ADMIN_FLAGS = frozenset({"can_resolve_disputes", "can_override_escrow", "can_modify_trust",
                         "can_ban_users", "can_access_financials"})
# Tolerated difference between Firebase's clock and ours (at most 60 s, as Firebase allows).
_CLOCK_SKEW_SECONDS = 5
# Verified tokens kept per worker process (a few MB at most), and how long one is reused
# without asking Firebase again whether it was revoked (when the revocation check is on).
VERIFIED_TOKENS_KEPT = 4096
REVOCATION_RECHECK_SECONDS = 30


class AccountPaused(DomainError):
    code, status = "HX602", 403


class TokenVerifier:
    """Verifies Firebase ID tokens for one Flask app through its own firebase_admin App."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        emulator = os.environ.get(EMULATOR_VARIABLE, "").strip() or None
        # firebase-admin reads the emulator switch from the process environment, not from us:
        # refuse any disagreement rather than verify differently from what the settings say.
        if settings.production and emulator:
            raise ConfigError(f"refusing to start in production: {EMULATOR_VARIABLE} is set; "
                              "firebase-admin would accept unsigned tokens")
        if (settings.firebase_auth_emulator_host or None) != emulator:
            raise ConfigError(f"{EMULATOR_VARIABLE} must be set in the process environment to use "
                              "the Firebase Auth emulator (firebase-admin reads it from there)")
        self.emulated = emulator is not None
        credential: Any
        if settings.firebase_admin_key:
            credential = fb_credentials.Certificate(service_account(settings.firebase_admin_key))
        else:
            credential = AnonymousCredentials()
        self.check_revoked = bool(settings.firebase_admin_key)
        self.app = firebase_admin.initialize_app(
            credential, {"projectId": settings.firebase_project_id},
            name=f"hustlexp-{uuid.uuid4().hex}")
        self.clock = clock
        # Whole token string -> (its verified claims, time.time() until which they are reused).
        self._verified: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims. A token verified before is not verified again (signature,
        certificates, and the revocation call when enabled) while its cache entry lasts: until
        it expires, and with the revocation check on, for at most REVOCATION_RECHECK_SECONDS
        (so a revoked token or a disabled account is refused within that time, not at once).
        Refused tokens are never kept. Account status comes from our database on every request
        whatever the cache holds (hustlexp.api.auth._load_user)."""
        reused = self.reused(token)
        if reused is not None:
            return reused
        now = self.clock()
        claims = self._verify_with_firebase(token)
        _check_times(claims, now)
        reuse_until = claims["exp"] + _CLOCK_SKEW_SECONDS
        if self.check_revoked:
            reuse_until = min(reuse_until, now + REVOCATION_RECHECK_SECONDS)
        with self._lock:
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                # The oldest entry goes (insertion order): bounded memory, no bookkeeping per hit.
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[token] = (claims, reuse_until)
        return dict(claims)

    def reused(self, token: str) -> dict[str, Any] | None:
        """The claims of `token` if this verifier verified it before and may still reuse them."""
        cached = self._verified.get(token)
        if cached is None:
            return None
        if self.clock() < cached[1]:  # never past the token's own expiry
            return dict(cached[0])
        self._forget(token)
        return None

    def _forget(self, token: str) -> None:
        with self._lock:
            self._verified.pop(token, None)

    def _verify_with_firebase(self, token: str) -> dict[str, Any]:
        try:
            claims = fb_auth.verify_id_token(token, app=self.app, check_revoked=self.check_revoked,
                                             clock_skew_seconds=_CLOCK_SKEW_SECONDS)
        except fb_auth.CertificateFetchError as exc:
            log.error("cannot fetch Firebase public certificates: %s", exc)
            raise Unavailable("Sign-in cannot be checked right now; try again.") from None
        except (fb_auth.InvalidIdTokenError, fb_auth.UserDisabledError, ValueError, TypeError, KeyError) as exc:
            # TypeError/KeyError: firebase-admin compares claims it never type-checked (a string
            # `exp` in a correctly signed token); bad input all the same.
            log.info("token refused: %s", type(exc).__name__)
            raise AuthInvalid("The sign-in token is invalid or expired.") from None
        return cast(dict[str, Any], claims)

    def close(self) -> None:
        firebase_admin.delete_app(self.app)


def _check_times(claims: dict[str, Any], now: float) -> None:
    """exp, iat and auth_time, checked here whatever firebase-admin did: in emulator mode it
    checks none of them, and in real mode it does not check auth_time or the claims' types."""
    stamps = {}
    for name in ("exp", "iat", "auth_time"):
        value = claims.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            log.info("token refused: %s is not a time", name)
            raise AuthInvalid("The sign-in token is invalid or expired.")
        stamps[name] = value
    if stamps["exp"] <= now - _CLOCK_SKEW_SECONDS:
        log.info("token refused: expired")
        raise AuthInvalid("The sign-in token is invalid or expired.")
    if max(stamps["iat"], stamps["auth_time"]) > now + _CLOCK_SKEW_SECONDS or stamps["iat"] >= stamps["exp"]:
        log.info("token refused: issued or authenticated in the future")
        raise AuthInvalid("The sign-in token is invalid or expired.")


def _verifier() -> TokenVerifier:
    verifier: TokenVerifier = current_app.extensions[EXTENSION].verifier
    return verifier


# ---------------------------------------------------------------------------
# Per-request identity
# ---------------------------------------------------------------------------

def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthRequired("Sign in: send Authorization: Bearer <Firebase ID token>.")
    return token


def _authenticate(*, address_judged_later: bool = False) -> dict[str, Any]:
    """The verified claims. A blocked address (too many failed sign-ins) is refused before an
    unknown token is checked; for a token this worker verified before, the caller may judge
    the address later, in its own statement (`address_judged_later`, see _load_user)."""
    claims: dict[str, Any] | None = g.get("hx_claims")
    if claims is None:
        token = _bearer_token()
        verifier = _verifier()
        claims = verifier.reused(token) if address_judged_later else None
        if claims is None:
            limits.refuse_blocked_address()
            g.hx_address_judged = True
            try:
                claims = verifier.verify(token)
            except AuthInvalid:
                limits.count_auth_failure()
                raise
        g.hx_claims = claims
    return claims


def _load_user(*, allow_paused: bool = False, allow_closed: bool = False, rules: tuple[str, ...] = ()) -> User:
    """The caller's users row (with the address judged and `rules` counted in the same statement,
    hustlexp.api.limits.identify), then the account status checks."""
    user: User | None = g.get("hx_user")
    if user is None:
        claims = _authenticate(address_judged_later=True)
        row = limits.identify(claims["uid"], judge_address=not g.get("hx_address_judged"), rules=rules)
        user = User.from_row(row)
        g.hx_user = user
    if user.account_status == AccountStatus.SUSPENDED:
        raise AccountSuspended("This account is suspended.")
    if user.account_status == AccountStatus.CLOSED and not allow_closed:
        raise AccountClosed("This account was deleted; resume it within 7 days to keep it.")
    if user.account_status == AccountStatus.PAUSED and request.method in MUTATING and not allow_paused:
        raise AccountPaused("This account is paused; resume it to make changes.")
    return user


def current_claims() -> dict[str, Any]:
    """The verified token's claims (uid, email, ...) in a view behind an auth decorator."""
    claims: dict[str, Any] = g.hx_claims
    return claims


def current_user() -> User:
    """The caller's users row in a view behind @requires_user / @requires_admin."""
    user: User = g.hx_user
    return user


def current_admin() -> dict[str, Any]:
    """The caller's admin_roles row in a view behind @requires_admin."""
    admin: dict[str, Any] = g.hx_admin
    return admin


# ---------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------

def _documented(wrapper: Any, *, codes: tuple[int, ...]) -> None:
    """Mark the operation as bearer-secured and list its auth failures in the OpenAPI doc."""
    import copy

    from flask_smorest.utils import deepupdate

    doc = copy.deepcopy(getattr(wrapper, "_apidoc", {}))
    doc["manual_doc"] = deepupdate(doc.get("manual_doc", {}), {"security": [{BEARER_SCHEME: []}]})
    responses = doc.setdefault("response", {}).setdefault("responses", {})
    names = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "TOO_MANY_REQUESTS"}
    for code in codes:
        entries = responses.setdefault(code, [])
        if names[code] not in entries:
            entries.append(names[code])
    wrapper._apidoc = doc


def requires_token(fn: F) -> F:
    """A verified Firebase token; the caller need not be registered yet."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _authenticate()
        return fn(*args, **kwargs)

    _documented(wrapper, codes=(401, 429))
    return cast(F, wrapper)


@overload
def requires_user(fn: F, /) -> F: ...


@overload
def requires_user(*, allow_paused: bool = False, allow_closed: bool = False) -> Callable[[F], F]: ...


def requires_user(fn: Any = None, /, *, allow_paused: bool = False, allow_closed: bool = False) -> Any:
    """A verified token of a registered user who is not suspended. A PAUSED account may only
    read, unless the route opts in with ``@requires_user(allow_paused=True)`` (inbox
    housekeeping, the payout account: nothing that moves the marketplace)."""

    def decorator(view: F) -> F:
        rules = limits.route_rules(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _load_user(allow_paused=allow_paused, allow_closed=allow_closed, rules=rules)
            return view(*args, **kwargs)

        _documented(wrapper, codes=(401, 403, 404, 429))
        return cast(F, wrapper)

    return decorator(fn) if fn is not None else decorator


def requires_admin(flag: str | None) -> Callable[[F], F]:
    """A registered user whose admin_roles row grants `flag` (403 FORBIDDEN otherwise);
    `None` admits every admin role (read-only console pages)."""
    if flag is not None and flag not in ADMIN_FLAGS:
        raise ValueError(f"unknown admin flag {flag!r}; one of {sorted(ADMIN_FLAGS)}")

    def decorator(fn: F) -> F:
        rules = limits.route_rules(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = _load_user(rules=rules)
            result = services().users.get_admin_role(user.id)
            if result.error is not None:
                raise result.error
            role = result.data
            if not role or (flag is not None and not role.get(flag)):
                raise Forbidden("This action needs an admin right you do not have.")
            g.hx_admin = role
            return fn(*args, **kwargs)

        _documented(wrapper, codes=(401, 403, 404, 429))
        return cast(F, wrapper)

    return decorator
