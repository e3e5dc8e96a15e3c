"""XPService: the formula, streaks, levels, the award (INV-1, INV-5) and the ledger reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from hustlexp.db import Database
from hustlexp.services import Services
from hustlexp.services.levels import LEVEL_THRESHOLDS
from hustlexp.services.xp import grace_expiry, next_streak
from tests import factories

NOW = datetime(2025, 6, 11, 15, 0, tzinfo=UTC)  # a Wednesday


def completed_for(conn: Any, worker: Any, *, price: int = 4500, category: str | None = None,
                  completed_at: datetime | None = None, release: bool = True,
                  poster: Any = None) -> dict[str, Any]:
    """A task `worker` completed, along the legal chain (proof ACCEPTED -> COMPLETED -> RELEASED)."""
    poster = poster or factories.user(conn)
    task_id = factories.task(conn, poster, price=price, category=category)
    escrow_id = factories.escrow(conn, task_id)
    conn.execute("UPDATE escrows SET state = 'FUNDED', funded_at = now() WHERE id = %s", (escrow_id,))
    conn.execute("UPDATE tasks SET state = 'ACCEPTED', worker_id = %s, accepted_at = now() WHERE id = %s",
                 (worker, task_id))
    proof_id = factories.proof(conn, task_id, worker, state="ACCEPTED")
    conn.execute("UPDATE tasks SET state = 'COMPLETED', completed_at = coalesce(%s, now()) WHERE id = %s",
                 (completed_at, task_id))
    if release:
        conn.execute("UPDATE escrows SET state = 'RELEASED', released_at = now() WHERE id = %s", (escrow_id,))
    return {"poster": poster, "worker": worker, "task": task_id, "escrow": escrow_id, "proof": proof_id}


def at(db: Database, when: datetime) -> Services:
    return Services(db, clock=lambda: when)


def user_row(conn: Any, user_id: Any) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM users WHERE id = %s", (user_id,)).fetchone()
    assert row is not None
    return dict(row)


def set_user(conn: Any, user_id: Any, **cols: Any) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("UPDATE users SET {} WHERE id = %s").format(
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols)),
        [*cols.values(), user_id])


# --- the pure formula -------------------------------------------------------------------------

def test_base_is_whole_dollars_of_the_price(services: Services) -> None:
    assert services.xp.calculate_base(4500).unwrap() == 45
    assert services.xp.calculate_base(500).unwrap() == 5
    assert services.xp.calculate_base(999).unwrap() == 9
    assert services.xp.calculate_base(10_050).unwrap() == 100


def test_streak_multiplier_grows_five_percent_a_day_capped_at_two(services: Services) -> None:
    calc = services.xp.calculate_streak
    assert calc(0).unwrap() == Decimal("1.00")
    assert calc(1).unwrap() == Decimal("1.05")
    assert calc(5).unwrap() == Decimal("1.25")
    assert calc(19).unwrap() == Decimal("1.95")
    assert calc(20).unwrap() == Decimal("2.00")
    assert calc(45).unwrap() == Decimal("2.00")
    assert isinstance(calc(3).unwrap(), Decimal)


def test_trust_multiplier_per_tier(services: Services) -> None:
    assert [services.xp.calculate_trust(t).unwrap() for t in (1, 2, 3, 4)] == [
        Decimal("1.0"), Decimal("1.5"), Decimal("2.0"), Decimal("2.0")]


def test_effective_floors_the_decimal_product(services: Services) -> None:
    calc = services.xp.calculate_effective
    assert calc(45, Decimal("1.25"), Decimal("1.5")).unwrap() == 84  # 84.375
    assert calc(5, Decimal("1.00"), Decimal("1.0")).unwrap() == 5
    assert calc(33, Decimal("1.05"), Decimal("1.5")).unwrap() == 51  # 51.975
    # binary floats would give 114.999... -> 114
    assert calc(100, Decimal("1.15"), Decimal("1.0")).unwrap() == 115
    assert calc(100, 1.15, 1.0).unwrap() == 115
    assert calc(100, Decimal("2.00"), Decimal("2.0"), Decimal("0.5")).unwrap() == 200


def test_level_is_the_highest_threshold_reached(services: Services) -> None:
    level = services.xp.level_for
    assert LEVEL_THRESHOLDS == (0, 100, 300, 700, 1500, 2700, 4500, 7000, 10500, 18500)
    for n, threshold in enumerate(LEVEL_THRESHOLDS, start=1):
        assert level(threshold).unwrap() == n
        if threshold:
            assert level(threshold - 1).unwrap() == n - 1
    assert level(1_000_000).unwrap() == 10


def test_streak_rules_in_utc_days() -> None:
    yesterday = NOW - timedelta(days=1)
    assert next_streak(0, None, None, NOW) == (0, 1)
    assert next_streak(4, NOW.replace(hour=1), None, NOW) == (4, 4)
    assert next_streak(0, NOW.replace(hour=1), None, NOW) == (0, 1)
    assert next_streak(5, yesterday, None, NOW) == (5, 6)
    # 23:59 yesterday and 00:01 today are consecutive days
    assert next_streak(2, datetime(2025, 6, 10, 23, 59, tzinfo=UTC), None,
                       datetime(2025, 6, 11, 0, 1, tzinfo=UTC)) == (2, 3)
    two_days = NOW - timedelta(days=2)
    assert next_streak(5, two_days, NOW + timedelta(hours=1), NOW) == (5, 6)
    assert next_streak(5, two_days, NOW - timedelta(seconds=1), NOW) == (0, 1)
    assert next_streak(5, two_days, None, NOW) == (0, 1)


def test_grace_ends_24_hours_after_the_next_day() -> None:
    assert grace_expiry(NOW.date()) == datetime(2025, 6, 14, 0, 0, tzinfo=UTC)


# --- award -----------------------------------------------------------------------------------

def test_award_worked_example(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=4500)
    set_user(conn, ids["worker"], trust_tier=2, xp_total=250, current_level=2, current_streak=5,
             last_task_completed_at=NOW - timedelta(days=1))

    result = at(db, NOW).xp.award(ids["escrow"])

    assert result.ok, result.error
    row = result.unwrap()
    assert row["created"] is True
    assert row["level_up"] is True
    assert (row["base_xp"], row["effective_xp"]) == (45, 84)
    assert row["streak_multiplier"] == Decimal("1.25")
    assert row["trust_multiplier"] == Decimal("1.50")
    assert row["decay_factor"] == Decimal("1.0000")
    assert (row["user_xp_before"], row["user_xp_after"]) == (250, 334)
    assert (row["user_level_before"], row["user_level_after"]) == (2, 3)
    assert row["user_streak_at_award"] == 5
    assert row["reason"] == "task_completion"
    assert (row["user_id"], row["task_id"], row["escrow_id"]) == (ids["worker"], ids["task"], ids["escrow"])
    user = user_row(conn, ids["worker"])
    assert (user["xp_total"], user["current_level"], user["current_streak"]) == (334, 3, 6)
    assert user["last_task_completed_at"] == NOW
    assert user["streak_grace_expires_at"] == datetime(2025, 6, 14, tzinfo=UTC)
    assert user["trust_tier"] == 2


def test_award_writes_exactly_the_returned_ledger_row(conn: Any, services: Services) -> None:
    ids = factories.completed_task(conn, price=1234)
    row = services.xp.award(ids["escrow"]).unwrap()
    stored = conn.execute("SELECT * FROM xp_ledger WHERE escrow_id = %s", (ids["escrow"],)).fetchall()
    assert len(stored) == 1
    assert {k: row[k] for k in stored[0]} == stored[0]
    assert (row["base_xp"], row["effective_xp"], row["user_streak_at_award"]) == (12, 12, 0)


def test_first_award_starts_a_streak_of_one(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=10_000)
    row = at(db, NOW).xp.award(ids["escrow"]).unwrap()
    assert (row["user_streak_at_award"], row["streak_multiplier"], row["effective_xp"]) == (0, 1, 100)
    user = user_row(conn, ids["worker"])
    assert (user["xp_total"], user["current_level"], user["current_streak"]) == (100, 2, 1)


def test_second_award_the_same_day_keeps_the_streak(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=2000)
    more = completed_for(conn, ids["worker"], price=2000)
    services = at(db, NOW)
    services.xp.award(ids["escrow"]).unwrap()
    second = at(db, NOW + timedelta(hours=3)).xp.award(more["escrow"]).unwrap()
    assert second["user_streak_at_award"] == 1
    assert second["streak_multiplier"] == Decimal("1.05")
    assert second["effective_xp"] == 21
    assert user_row(conn, ids["worker"])["current_streak"] == 1


def test_next_day_award_extends_the_streak(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=2000)
    more = completed_for(conn, ids["worker"], price=2000)
    at(db, NOW).xp.award(ids["escrow"]).unwrap()
    second = at(db, NOW + timedelta(days=1)).xp.award(more["escrow"]).unwrap()
    assert second["user_streak_at_award"] == 1
    assert user_row(conn, ids["worker"])["current_streak"] == 2


def test_one_missed_day_is_forgiven_by_the_grace_window(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=2000)
    more = completed_for(conn, ids["worker"], price=2000)
    at(db, NOW).xp.award(ids["escrow"]).unwrap()
    second = at(db, NOW + timedelta(days=2, hours=8)).xp.award(more["escrow"]).unwrap()
    assert second["user_streak_at_award"] == 1
    assert user_row(conn, ids["worker"])["current_streak"] == 2


def test_a_longer_gap_resets_the_streak(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=2000)
    set_user(conn, ids["worker"], current_streak=9, last_task_completed_at=NOW - timedelta(days=4),
             streak_grace_expires_at=NOW - timedelta(days=1))
    row = at(db, NOW).xp.award(ids["escrow"]).unwrap()
    assert (row["user_streak_at_award"], row["streak_multiplier"], row["effective_xp"]) == (0, 1, 20)
    assert user_row(conn, ids["worker"])["current_streak"] == 1


def test_streak_multiplier_is_capped_in_the_award(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=5000)
    set_user(conn, ids["worker"], trust_tier=3, current_streak=30,
             last_task_completed_at=NOW - timedelta(days=1))
    row = at(db, NOW).xp.award(ids["escrow"]).unwrap()
    assert (row["streak_multiplier"], row["trust_multiplier"], row["effective_xp"]) == (2, 2, 200)


def test_repeat_award_returns_the_stored_row_and_leaves_the_user_alone(conn: Any, services: Services) -> None:
    ids = factories.completed_task(conn)
    first = services.xp.award(ids["escrow"]).unwrap()
    before = user_row(conn, ids["worker"])
    again = services.xp.award(ids["escrow"])
    assert again.ok
    assert again.unwrap()["created"] is False
    assert again.unwrap()["id"] == first["id"]
    assert again.unwrap()["effective_xp"] == first["effective_xp"]
    assert user_row(conn, ids["worker"]) == before
    count = conn.execute("SELECT count(*) AS n FROM xp_ledger WHERE escrow_id = %s", (ids["escrow"],))
    assert count.fetchone()["n"] == 1


def test_award_refuses_an_unreleased_escrow(conn: Any, services: Services) -> None:
    funded = factories.accepted_task(conn)
    result = services.xp.award(funded["escrow"])
    assert result.code == "HX101"
    completed = factories.completed_task(conn, release=False)
    assert services.xp.award(completed["escrow"]).code == "HX101"
    assert conn.execute("SELECT count(*) AS n FROM xp_ledger").fetchone()["n"] == 0
    assert user_row(conn, funded["worker"])["xp_total"] == 0


def test_award_of_an_unknown_escrow_is_not_found(services: Services) -> None:
    assert services.xp.award("00000000-0000-0000-0000-000000000000").code == "NOT_FOUND"


def test_award_vanishes_with_the_callers_transaction(conn: Any, services: Services, db: Database) -> None:
    ids = factories.completed_task(conn)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.transaction():
        assert services.xp.award(ids["escrow"]).unwrap()["created"]
        raise Abort
    assert conn.execute("SELECT count(*) AS n FROM xp_ledger").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM badges").fetchone()["n"] == 0
    assert user_row(conn, ids["worker"])["xp_total"] == 0


def test_award_earns_badges_and_notifies(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=30_000)
    row = at(db, NOW).xp.award(ids["escrow"]).unwrap()
    assert row["level_up"] is True
    assert "first-task" in row["new_badges"]
    assert "level-3" in row["new_badges"]
    badges = {r["badge_type"] for r in conn.execute(
        "SELECT badge_type FROM badges WHERE user_id = %s", (ids["worker"],)).fetchall()}
    assert badges == {"first-task", "level-3"}
    categories = [r["category"] for r in conn.execute(
        "SELECT category FROM notifications WHERE user_id = %s", (ids["worker"],)).fetchall()]
    assert categories.count("XP_EARNED") == 1
    assert categories.count("LEVEL_UP") == 1
    assert categories.count("BADGE_EARNED") == 2
    assert conn.execute("SELECT count(*) AS n FROM notifications WHERE user_id = %s",
                        (ids["poster"],)).fetchone()["n"] == 0


def test_no_level_up_notification_without_a_level_change(conn: Any, services: Services) -> None:
    ids = factories.completed_task(conn, price=500)
    row = services.xp.award(ids["escrow"]).unwrap()
    assert row["level_up"] is False
    categories = [r["category"] for r in conn.execute(
        "SELECT category FROM notifications WHERE user_id = %s", (ids["worker"],)).fetchall()]
    assert "XP_EARNED" in categories
    assert "LEVEL_UP" not in categories


def test_award_promotes_trust_once_the_record_earns_it(conn: Any, services: Services) -> None:
    worker = factories.user(conn, is_verified=True)
    for _ in range(4):
        completed_for(conn, worker)
    fifth = completed_for(conn, worker)
    row = services.xp.award(fifth["escrow"]).unwrap()
    assert row["trust_multiplier"] == Decimal("1.00")  # the tier before this completion counts
    assert user_row(conn, worker)["trust_tier"] == 2
    ledger = conn.execute("SELECT * FROM trust_ledger WHERE user_id = %s", (worker,)).fetchall()
    assert [(r["old_tier"], r["new_tier"], r["reason"], r["task_id"]) for r in ledger] == [
        (1, 2, "PROMOTION", fifth["task"])]
    assert "trust-tier-2" in row["new_badges"]


def test_concurrent_awards_of_one_escrow_count_once(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=4500)
    services = Services(db)
    barrier = threading.Barrier(10)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(services.xp.award(ids["escrow"]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(results) == 10
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert sum(1 for r in results if r.unwrap()["created"]) == 1
    assert len({r.unwrap()["id"] for r in results}) == 1
    assert conn.execute("SELECT count(*) AS n FROM xp_ledger").fetchone()["n"] == 1
    user = user_row(conn, ids["worker"])
    assert user["xp_total"] == 45
    assert user["current_streak"] == 1
    assert conn.execute("SELECT count(*) AS n FROM notifications WHERE user_id = %s AND category = 'XP_EARNED'",
                        (ids["worker"],)).fetchone()["n"] == 1


# --- reads ------------------------------------------------------------------------------------

def test_get_user_xp_maps_entries_and_progress(conn: Any, db: Database) -> None:
    ids = factories.completed_task(conn, price=15_000)
    second = completed_for(conn, ids["worker"], price=5000)
    at(db, NOW).xp.award(ids["escrow"]).unwrap()
    later = at(db, NOW + timedelta(hours=1))
    later.xp.award(second["escrow"]).unwrap()

    data = later.xp.get_user_xp(ids["worker"]).unwrap()
    assert (data["total_xp"], data["current_level"], data["current_streak"]) == (202, 2, 1)
    assert data["level_progress"] == {"current_threshold": 100, "next_threshold": 300, "progress_percent": 51}
    newest, oldest = data["recent_entries"]
    assert newest["task_id"] == second["task"]
    assert (newest["amount"], newest["effective_amount"], newest["balance_after"]) == (50, 52, 202)
    assert newest["decay_factor"] == Decimal("1.0000")
    assert newest["reason"] == "task_completion"
    assert newest["created_at"] == NOW + timedelta(hours=1)
    assert (oldest["amount"], oldest["balance_after"]) == (150, 150)
    assert len(later.xp.get_user_xp(ids["worker"], limit=1).unwrap()["recent_entries"]) == 1


def test_level_ten_has_no_next_threshold(conn: Any, services: Services) -> None:
    worker = factories.user(conn, xp_total=20_000, current_level=10)
    progress = services.xp.get_user_xp(worker).unwrap()["level_progress"]
    assert progress == {"current_threshold": 18_500, "next_threshold": None, "progress_percent": 100}


def test_new_user_xp_is_empty(conn: Any, services: Services) -> None:
    data = services.xp.get_user_xp(factories.user(conn)).unwrap()
    assert data == {"total_xp": 0, "current_level": 1, "current_streak": 0,
                    "level_progress": {"current_threshold": 0, "next_threshold": 100, "progress_percent": 0},
                    "recent_entries": []}


def test_xp_reads_refuse_unknown_users_and_bad_limits(conn: Any, services: Services) -> None:
    nobody = "00000000-0000-0000-0000-000000000000"
    assert services.xp.get_user_xp(nobody).code == "HX504"
    assert services.xp.get_xp_ledger(nobody).code == "HX504"
    user = factories.user(conn)
    assert services.xp.get_user_xp(user, limit=0).code == "VALIDATION_ERROR"
    assert services.xp.get_user_xp(user, limit=101).code == "VALIDATION_ERROR"
    assert services.xp.get_xp_ledger(user, limit=0).code == "VALIDATION_ERROR"
    assert services.xp.get_xp_ledger(user, before="00000000-0000-0000-0000-000000000001").code == "NOT_FOUND"


def test_xp_ledger_pages_newest_first(conn: Any, db: Database) -> None:
    worker = factories.user(conn)
    chains = [completed_for(conn, worker, price=1000 * (n + 1)) for n in range(5)]
    for n, ids in enumerate(chains):
        at(db, NOW + timedelta(minutes=n)).xp.award(ids["escrow"]).unwrap()
    services = at(db, NOW)

    page = services.xp.get_xp_ledger(worker, limit=2).unwrap()
    assert page["total"] == 5
    assert page["has_more"] is True
    assert [e["task_id"] for e in page["entries"]] == [chains[4]["task"], chains[3]["task"]]
    # An award arriving between two pages shifts nothing (keyset, not offset).
    late = completed_for(conn, worker)
    at(db, NOW + timedelta(minutes=10)).xp.award(late["escrow"]).unwrap()
    middle = services.xp.get_xp_ledger(worker, limit=2, before=page["next_before"]).unwrap()
    assert [e["task_id"] for e in middle["entries"]] == [chains[2]["task"], chains[1]["task"]]
    last = services.xp.get_xp_ledger(worker, limit=2, before=middle["next_before"]).unwrap()
    assert [e["task_id"] for e in last["entries"]] == [chains[0]["task"]]
    assert last["has_more"] is False and last["next_before"] is None
