"""Request limits shared by every API host (DESIGN §7.17): counted in PostgreSQL, in the
UNLOGGED `rate_limit_counters` table, one row per limited key, one UPSERT per check.

Each rule is a sliding window approximated from two fixed windows: the hits of the current
window plus the previous window's hits weighted by how much of it the sliding window still
covers. Every attempt counts, refused ones too, so hammering a limit keeps it shut.

Messages keep their own rules, counted from the messages themselves
(hustlexp.services.messaging); everything else is limited here. Other modules (the upload
routes among them) call `RateLimits.hit(rule, subject)` and get a `Verdict`, or
`RateLimits.check(...)`, which raises RateLimited when the rule refuses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hustlexp.domain import User
from hustlexp.errors import RateLimited
from hustlexp.services.base import Service, one, returns_result


@dataclass(frozen=True)
class Rule:
    limit: int
    seconds: int
    description: str


RULES: dict[str, Rule] = {
    # Every write by a signed-in user (POST/PUT/PATCH/DELETE under /api): a backstop.
    "writes": Rule(120, 60, "120 writes per minute"),
    "tasks.create": Rule(10, 60, "10 new tasks per minute"),
    # STORAGE_SPEC §4.3: at most 10 uploads per minute per user (presigns and multipart alike).
    "uploads": Rule(10, 60, "10 uploads per minute"),
    # Failed sign-ins per client address: guessing tokens gets slow.
    "auth_failures": Rule(20, 300, "20 failed sign-ins per 5 minutes"),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# One attempt more for each row of {rows} (key, window_start, window_seconds, hits): the
# counting rule, written once for `hit` and for `sign_in`.
_COUNT = """
    INSERT INTO rate_limit_counters AS c (key, window_start, window_seconds, hits)
    {rows}
    ON CONFLICT (key) DO UPDATE SET
        previous_hits = CASE
            WHEN c.window_start >= EXCLUDED.window_start THEN c.previous_hits
            WHEN c.window_start = EXCLUDED.window_start - make_interval(secs => EXCLUDED.window_seconds)
                THEN c.hits
            ELSE 0 END,
        hits = CASE WHEN c.window_start >= EXCLUDED.window_start THEN c.hits + EXCLUDED.hits
                    ELSE EXCLUDED.hits END,
        window_start = greatest(c.window_start, EXCLUDED.window_start),
        window_seconds = EXCLUDED.window_seconds
    RETURNING c.key, c.hits, c.previous_hits, c.window_start"""

_SIGN_IN = """
    WITH u AS (SELECT {user} FROM users WHERE firebase_uid = %(uid)s),
         counted AS ({count})
    SELECT u.*,
           (SELECT json_agg(json_build_object('key', key, 'hits', hits, 'previous_hits', previous_hits,
                                              'elapsed', extract(epoch FROM %(now)s - window_start)))
              FROM counted) AS hx_counted,
           (SELECT json_build_object('hits', hits, 'previous_hits', previous_hits,
                                     'window_start', extract(epoch FROM window_start))
              FROM rate_limit_counters WHERE key = %(address_key)s) AS hx_address
      FROM (SELECT 1) AS one LEFT JOIN u ON true""".format(user=", ".join(User.columns()), count=_COUNT.format(rows="""
        SELECT left(r.rule || ':' || u.id::text, 200), r.start, r.seconds, 1
          FROM u CROSS JOIN unnest(%(rules)s::text[], %(starts)s::timestamptz[], %(seconds)s::int[])
               AS r(rule, start, seconds)"""))


@dataclass(frozen=True)
class SignIn:
    """What `RateLimits.sign_in` found: the caller's users row, the columns a domain.User reads
    (None: not registered), the verdict on the address (None when not asked) and one verdict
    per rule counted."""

    user: dict[str, Any] | None
    address: Verdict | None
    counted: list[Verdict]


@dataclass(frozen=True)
class Verdict:
    """One check's outcome, and what the RateLimit-* headers say about it."""

    rule: str
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the current window ends
    retry_after: int  # seconds until one more attempt would be allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        rule = RULES[self.rule]
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset), "RateLimit-Policy": f"{self.limit};w={rule.seconds}"}

    def error(self) -> RateLimited:
        rule = RULES[self.rule]
        return RateLimited(f"Too many requests. Try again in {self.retry_after} seconds.",
                           retry_after=self.retry_after, limit=rule.limit, window=rule.seconds,
                           details={"limit": rule.description, "retry_after": self.retry_after})


def window_start(now: datetime, seconds: int) -> datetime:
    epoch = int((now - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=epoch - epoch % seconds)


def judge(rule_name: str, hits: int, previous_hits: int, elapsed: float) -> Verdict:
    """The verdict for a window `elapsed` seconds old holding `hits` (this attempt included),
    after a previous window of `previous_hits`."""
    rule = RULES[rule_name]
    period, limit = float(rule.seconds), rule.limit
    elapsed = min(max(elapsed, 0.0), period)
    weight = 1.0 - elapsed / period
    estimate = previous_hits * weight + hits
    allowed = estimate <= limit
    reset = max(1, math.ceil(period - elapsed))
    retry = 0
    if not allowed:
        # When would one more attempt fit (with nothing else arriving meanwhile)?
        if hits + 1 > limit:
            # Not in this window: in the next one this window is the weighted previous.
            into_next = period * (1.0 - (limit - 1) / hits) if hits else 0.0
            wait = (period - elapsed) + into_next
        else:
            wait = period * (1.0 - (limit - hits - 1) / previous_hits) - elapsed if previous_hits else 0.0
        retry = max(1, math.ceil(wait))
    remaining = max(0, math.floor(limit - estimate))
    return Verdict(rule_name, allowed, limit, remaining, reset, retry)


def _peeked(rule_name: str, row: dict[str, Any] | None, now: datetime) -> Verdict:
    """The verdict one more attempt would get, given the rule's counter row (or None)."""
    rule = RULES[rule_name]
    start = window_start(now, rule.seconds)
    hits, previous = 0, 0
    if row is not None:
        if row["window_start"] >= start:
            hits, previous = row["hits"], row["previous_hits"]
        elif row["window_start"] == start - timedelta(seconds=rule.seconds):
            previous = row["hits"]
    return judge(rule_name, hits + 1, previous, (now - start).total_seconds())


def counter_key(rule_name: str, subject: Any) -> str:
    """A counter's row in rate_limit_counters (_SIGN_IN builds the same for its route rules)."""
    return f"{rule_name}:{subject}"[:200]


class RateLimits(Service):
    def hit(self, rule_name: str, subject: Any, *, cost: int = 1) -> Verdict:
        """Count one attempt of `subject` (a user id, an IP address) against the rule, in one
        statement of its own (its own transaction, or the caller's when one is open)."""
        rule = RULES[rule_name]
        now = self.s.clock()
        start = window_start(now, rule.seconds)
        key = counter_key(rule_name, subject)
        # Run again only when its connection was found dead (an attempt counted twice at worst).
        row = self.db.run_repeatable(lambda conn: one(
            conn, _COUNT.format(rows="VALUES (%(key)s, %(start)s, %(seconds)s, %(cost)s)"),
            {"key": key, "start": start, "seconds": rule.seconds, "cost": cost}))
        assert row is not None
        return judge(rule_name, row["hits"], row["previous_hits"],
                     (now - row["window_start"]).total_seconds())

    def check(self, rule_name: str, subject: Any, *, cost: int = 1) -> Verdict:
        """hit(), raising RateLimited (429 with Retry-After) when the rule refuses."""
        verdict = self.hit(rule_name, subject, cost=cost)
        if not verdict.allowed:
            raise verdict.error()
        return verdict

    def peek(self, rule_name: str, subject: Any) -> Verdict:
        """The verdict one more attempt would get, counting nothing."""
        now = self.s.clock()
        row = self.db.run_repeatable(lambda conn: one(
            conn, "SELECT hits, previous_hits, window_start FROM rate_limit_counters WHERE key = %s",
            (counter_key(rule_name, subject),)))
        return _peeked(rule_name, row, now)

    def sign_in(self, firebase_uid: str, *, address: str | None, rules: Sequence[str]) -> SignIn:
        """Who is calling and may they go on, in ONE statement: the users row of `firebase_uid`,
        `peek("auth_failures", address)` when an address is given, and `hit(rule, user id)` for
        each of `rules` when the user exists. Judge the address before the rules: the
        attempts are counted whatever the address's verdict (every attempt counts)."""
        now = self.s.clock()
        periods = [RULES[rule].seconds for rule in rules]
        params = {"uid": firebase_uid, "now": now, "rules": list(rules), "seconds": periods,
                  "starts": [window_start(now, seconds) for seconds in periods],
                  "address_key": counter_key("auth_failures", address) if address is not None else None}
        row = self.db.run_repeatable(lambda conn: one(conn, _SIGN_IN, params))
        assert row is not None
        counted_rows, address_row = row.pop("hx_counted") or [], row.pop("hx_address")
        if address_row is not None:
            address_row["window_start"] = _EPOCH + timedelta(seconds=float(address_row["window_start"]))
        counted = {r["key"].partition(":")[0]: r for r in counted_rows}
        return SignIn(
            user=row if row["id"] is not None else None,
            address=_peeked("auth_failures", address_row, now) if address is not None else None,
            counted=[judge(rule, counted[rule]["hits"], counted[rule]["previous_hits"],
                           float(counted[rule]["elapsed"])) for rule in rules if rule in counted])

    @returns_result
    def purge(self, limit: int = 10_000) -> dict[str, int]:
        """Drop counters whose windows can no longer count (retention job)."""
        with self.db.transaction() as conn:
            cur = conn.execute("""
                DELETE FROM rate_limit_counters WHERE key IN (
                    SELECT key FROM rate_limit_counters
                     WHERE window_start + make_interval(secs => 2 * window_seconds) < %s LIMIT %s)""",
                (self.s.clock(), limit))
            return {"purged": int(cur.rowcount)}
