"""RateLimits on the real database: one UPSERT per check, the sliding window across fixed
windows, refusals, and the purge of finished windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hustlexp.services.limits import RULES
from tests.services.conftest import Clock

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a minute boundary


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


def test_limit_counts_up_to_its_rule_then_refuses(svc):
    rule = RULES["uploads"]
    verdicts = [svc.limits.hit("uploads", "u1") for _ in range(rule.limit)]
    assert all(v.allowed for v in verdicts)
    assert [v.remaining for v in verdicts] == list(range(rule.limit - 1, -1, -1))
    refused = svc.limits.hit("uploads", "u1")
    assert not refused.allowed and refused.retry_after >= 1
    with pytest.raises(Exception) as caught:
        svc.limits.check("uploads", "u1")
    assert caught.value.code == "RATE_LIMITED" and caught.value.limit == rule.limit
    assert svc.limits.hit("uploads", "u2").allowed  # per subject


def test_limit_previous_window_still_weighs_then_fades(svc, clock):
    for _ in range(10):
        svc.limits.hit("uploads", "u1")
    clock.advance(seconds=60)  # next window starts: the previous 10 weigh fully
    assert not svc.limits.peek("uploads", "u1").allowed
    clock.advance(seconds=30)  # half of them still count: 5 + 1 fits
    assert svc.limits.hit("uploads", "u1").allowed
    clock.advance(seconds=120)  # two windows later nothing counts
    verdict = svc.limits.hit("uploads", "u1")
    assert verdict.allowed and verdict.remaining == RULES["uploads"].limit - 1


def test_limit_peek_counts_nothing(svc, conn):
    assert svc.limits.peek("auth_failures", "10.0.0.1").allowed
    assert conn.execute("SELECT count(*) AS n FROM rate_limit_counters").fetchone()["n"] == 0


def test_limit_purge_drops_only_finished_windows(svc, clock, conn):
    svc.limits.hit("uploads", "old")
    clock.advance(minutes=5)
    svc.limits.hit("uploads", "new")
    assert svc.limits.purge().unwrap() == {"purged": 1}
    keys = [r["key"] for r in conn.execute("SELECT key FROM rate_limit_counters").fetchall()]
    assert keys == ["uploads:new"]


def test_limit_counter_table_is_unlogged(conn):
    row = conn.execute("SELECT relpersistence FROM pg_class WHERE relname = 'rate_limit_counters'").fetchone()
    assert row["relpersistence"] == "u"
