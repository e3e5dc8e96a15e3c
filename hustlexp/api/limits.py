"""Request limits at the edge (the counting lives in hustlexp.services.limits, shared by every
API host through PostgreSQL).

- every write (POST/PUT/PATCH/DELETE) by a signed-in user counts against `writes`; webhooks
  sign in nobody and are never limited;
- ``@rate_limited("tasks.create")`` (or ``"uploads"``) under ``@requires_user`` adds a
  route's own rule;
- failed sign-ins count per client address (`auth_failures`): once over, the address gets 429
  before its token is even checked.

One statement per signed-in request (`identify`, from hustlexp.api.auth): the users row, the
address's verdict (for a token this worker verified before; an unknown token has its address
judged before it is checked, `refuse_blocked_address`) and one attempt counted against
`writes` and the route's own rule. A refused route rule answers 429 only after the account
checks, as when it was counted on its own.

Answers carry the tightest rule's ``RateLimit-Limit``/``-Remaining``/``-Reset``/``-Policy``;
a refusal is 429 RATE_LIMITED with ``Retry-After`` as well. ``HUSTLEXP_RATE_LIMITS=off``
switches it all off outside production (benchmarks)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request

from hustlexp.api.base import EXTENSION, MUTATING, services
from hustlexp.services.limits import RULES, Verdict
from hustlexp.services.user import missing_user

F = TypeVar("F", bound=Callable[..., Any])


def enabled() -> bool:
    return bool(current_app.extensions[EXTENSION].settings.rate_limits)


def client_address() -> str:
    """The caller's address (behind HUSTLEXP_TRUSTED_PROXIES proxies, ProxyFix has put the
    forwarded one here)."""
    return request.remote_addr or "unknown"


def _keep(verdict: Verdict) -> None:
    """Remember the tightest verdict of this request for its headers."""
    kept: Verdict | None = g.get("hx_limit")
    if kept is None or verdict.remaining < kept.remaining:
        g.hx_limit = verdict


def count(rule: str, subject: Any) -> None:
    """Count one attempt against `rule`; raise RateLimited (429) when it refuses."""
    if not enabled():
        return
    _keep(services().limits.check(rule, subject))


def identify(firebase_uid: str, *, judge_address: bool, rules: tuple[str, ...]) -> dict[str, Any]:
    """The users row of `firebase_uid` (404 HX504 if none), in one statement with the limits:
    429 for a blocked address when `judge_address`, one attempt counted against `writes`
    (a write) and against each route rule in `rules` (their verdicts wait in g for
    @rate_limited)."""
    if not enabled():
        found = services().users.get_by_firebase_uid(firebase_uid)
        if found.error is not None:
            raise found.error
        return cast(dict[str, Any], found.data)
    counted = (("writes",) if request.method in MUTATING else ()) + rules
    seen = services().limits.sign_in(firebase_uid, address=client_address() if judge_address else None,
                                     rules=counted)
    if seen.address is not None and not seen.address.allowed:
        raise seen.address.error()
    if seen.user is None:
        raise missing_user()
    verdicts = {verdict.rule: verdict for verdict in seen.counted}
    g.hx_route_verdicts = {rule: verdicts[rule] for rule in rules}
    if "writes" in verdicts:
        _keep(verdicts["writes"])
        if not verdicts["writes"].allowed:
            raise verdicts["writes"].error()
    return seen.user


def route_rules(view: Any) -> tuple[str, ...]:
    """The rule a view's @rate_limited counts (its auth decorator counts it with the user)."""
    rule: str | None = getattr(view, "_hx_rate_rule", None)
    return (rule,) if rule else ()


def refuse_blocked_address() -> None:
    """Before a token is checked: 429 for an address with too many failed sign-ins."""
    if not enabled():
        return
    verdict = services().limits.peek("auth_failures", client_address())
    if not verdict.allowed:
        raise verdict.error()


def count_auth_failure() -> None:
    if enabled():
        services().limits.hit("auth_failures", client_address())


def rate_limited(rule: str) -> Callable[[F], F]:
    """A route's own rule, counted per signed-in user (place it under @requires_user)."""
    if rule not in RULES:
        raise ValueError(f"unknown rate limit rule {rule!r}; one of {sorted(RULES)}")

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verdict: Verdict | None = g.get("hx_route_verdicts", {}).get(rule)
            if verdict is None:  # not counted with the user (limits off, or no auth decorator saw it)
                count(rule, g.hx_user.id)
            elif not verdict.allowed:
                raise verdict.error()
            else:
                _keep(verdict)
            return fn(*args, **kwargs)

        wrapper._hx_rate_rule = rule  # type: ignore[attr-defined]
        # Its 429 is documented by @requires_user, which every limited route sits under.
        return cast(F, wrapper)

    return decorator


def init_limits(app: Flask) -> None:
    @app.after_request
    def limit_headers(response: Response) -> Response:
        verdict: Verdict | None = g.get("hx_limit")
        if verdict is not None:
            for name, value in verdict.headers().items():
                response.headers.setdefault(name, value)
        return response
