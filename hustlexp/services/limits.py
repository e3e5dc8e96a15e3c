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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


class RateLimits(Service):
    def hit(self, rule_name: str, subject: Any, *, cost: int = 1) -> Verdict:
        """Count one attempt of `subject` (a user id, an IP address) against the rule, in one
        statement of its own (its own transaction, or the caller's when one is open)."""
        rule = RULES[rule_name]
        now = self.s.clock()
        start = window_start(now, rule.seconds)
        key = f"{rule_name}:{subject}"[:200]
        with self.db.one_statement() as conn:
            row = one(conn, """
                INSERT INTO rate_limit_counters AS c (key, window_start, window_seconds, hits, previous_hits)
                VALUES (%(key)s, %(start)s, %(seconds)s, %(cost)s, 0)
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
                RETURNING hits, previous_hits, window_start""",
                {"key": key, "start": start, "seconds": rule.seconds, "cost": cost})
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
        rule = RULES[rule_name]
        now = self.s.clock()
        start = window_start(now, rule.seconds)
        with self.db.one_statement() as conn:
            row = one(conn, "SELECT hits, previous_hits, window_start FROM rate_limit_counters WHERE key = %s",
                      (f"{rule_name}:{subject}"[:200],))
        hits, previous = 0, 0
        if row is not None:
            if row["window_start"] >= start:
                hits, previous = row["hits"], row["previous_hits"]
            elif row["window_start"] == start - timedelta(seconds=rule.seconds):
                previous = row["hits"]
        return judge(rule_name, hits + 1, previous, (now - start).total_seconds())

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
