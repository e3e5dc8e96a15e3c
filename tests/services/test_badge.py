"""BadgeService: the catalog, the award check (each condition at its edge), reads and the
animation confirmation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hustlexp.db import Database
from hustlexp.services import Services
from hustlexp.services.badge_catalog import CATALOG, TASK_COUNT_BADGES
from tests import factories
from tests.services import flows
from tests.services.test_xp import completed_for

NOBODY = "00000000-0000-0000-0000-000000000000"
MONDAY = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # ISO week 10 of 2025


def held(conn: Any, user_id: Any) -> set[str]:
    return {r["badge_type"] for r in conn.execute("SELECT badge_type FROM badges WHERE user_id = %s",
                                                  (user_id,)).fetchall()}


def complete_many(conn: Any, worker: Any, n: int, **kw: Any) -> list[dict[str, Any]]:
    return [completed_for(conn, worker, release=False, **kw) for _ in range(n)]


# --- catalog ----------------------------------------------------------------------------------

def test_catalog_matches_the_domain_table(services: Services) -> None:
    defs = {d["id"]: d for d in services.badges.get_badge_definitions().unwrap()}
    assert len(defs) == 20
    expected = {
        "first-task": ("First Steps", 1), "tasks-10": ("Dedicated", 1), "tasks-25": ("Committed", 2),
        "tasks-50": ("Veteran", 2), "tasks-100": ("Centurion", 3), "streak-3": ("Getting Started", 1),
        "streak-7": ("Week Warrior", 2), "streak-30": ("Monthly Master", 3),
        "trust-tier-2": ("Trusted Hustler", 1), "trust-tier-3": ("Reliable Pro", 2),
        "trust-tier-4": ("Elite Status", 3), "level-3": ("Apprentice", 1), "level-5": ("Rising Star", 2),
        "level-8": ("Expert", 3), "level-10": ("Legend", 4), "specialist-cleaning": ("Clean Machine", 1),
        "specialist-delivery": ("Speed Demon", 1), "specialist-moving": ("Heavy Lifter", 1),
        "perfect-week": ("Perfect Week", 3), "early-bird": ("Early Bird", 2),
    }
    assert {k: (d["name"], d["tier"]) for k, d in defs.items()} == expected
    rarity = {1: "common", 2: "uncommon", 3: "rare", 4: "legendary"}
    for d in defs.values():
        assert d["rarity"] == rarity[d["tier"]]
        assert d["slug"] == d["id"]
        assert d["icon_url"].endswith(f"{d['id']}.png")
        assert d["description"] and d["condition"] and d["category"]
        assert len(d["condition"]) <= 100  # badges.awarded_for


# --- check_and_award --------------------------------------------------------------------------

def test_nothing_to_award_for_a_new_user(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    assert services.badges.check_and_award(worker).unwrap() == []
    assert held(conn, worker) == set()


def test_first_task_badge_once(conn: Any, services: Services) -> None:
    ids = completed_for(conn, factories.user(conn), release=False)
    awarded = services.badges.check_and_award(ids["worker"], task_id=ids["task"]).unwrap()
    assert [b["badge_type"] for b in awarded] == ["first-task"]
    assert (awarded[0]["tier"], awarded[0]["task_id"], awarded[0]["name"]) == (1, ids["task"], "First Steps")
    assert awarded[0]["awarded_for"] == "1 completed task"
    assert services.badges.check_and_award(ids["worker"], task_id=ids["task"]).unwrap() == []
    rows = conn.execute("SELECT * FROM badges WHERE user_id = %s", (ids["worker"],)).fetchall()
    assert len(rows) == 1
    notes = conn.execute("SELECT metadata FROM notifications WHERE user_id = %s AND category = 'BADGE_EARNED'",
                         (ids["worker"],)).fetchall()
    assert len(notes) == 1
    assert notes[0]["metadata"]["badge_type"] == "first-task"
    assert notes[0]["metadata"]["badge_id"] == str(rows[0]["id"])


def test_task_count_badges_at_their_thresholds(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    complete_many(conn, worker, 9)
    services.badges.check_and_award(worker).unwrap()
    counted = set(TASK_COUNT_BADGES)
    assert held(conn, worker) & counted == {"first-task"}
    complete_many(conn, worker, 1)
    services.badges.check_and_award(worker).unwrap()
    assert held(conn, worker) & counted == {"first-task", "tasks-10"}


def test_only_completed_tasks_as_worker_count(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    # worked but not completed, and a task the user posted that someone else completed
    accepted = factories.accepted_task(conn)
    conn.execute("UPDATE tasks SET worker_id = %s WHERE id = %s", (worker, accepted["task"]))
    completed_for(conn, factories.user(conn), release=False, poster=worker)
    assert services.badges.check_and_award(worker).unwrap() == []


@pytest.mark.parametrize(("streak", "expected"), [
    (2, set()), (3, {"streak-3"}), (7, {"streak-3", "streak-7"}), (30, {"streak-3", "streak-7", "streak-30"}),
])
def test_streak_badges(conn: Any, services: Services, streak: int, expected: set[str]) -> None:
    worker = factories.user(conn, current_streak=streak)
    services.badges.check_and_award(worker).unwrap()
    assert held(conn, worker) == expected


@pytest.mark.parametrize(("level", "expected"), [
    (2, set()), (3, {"level-3"}), (5, {"level-3", "level-5"}), (9, {"level-3", "level-5", "level-8"}),
    (10, {"level-3", "level-5", "level-8", "level-10"}),
])
def test_level_badges(conn: Any, services: Services, level: int, expected: set[str]) -> None:
    worker = factories.user(conn, current_level=level)
    services.badges.check_and_award(worker).unwrap()
    assert held(conn, worker) == expected


@pytest.mark.parametrize(("tier", "expected"), [
    (1, set()), (2, {"trust-tier-2"}), (3, {"trust-tier-2", "trust-tier-3"}),
    (4, {"trust-tier-2", "trust-tier-3", "trust-tier-4"}),
])
def test_trust_badges(conn: Any, services: Services, tier: int, expected: set[str]) -> None:
    worker = factories.user(conn, trust_tier=tier)
    services.badges.check_and_award(worker).unwrap()
    assert held(conn, worker) == expected


def test_specialist_badge_needs_ten_in_its_category(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    complete_many(conn, worker, 9, category="cleaning")
    complete_many(conn, worker, 10, category="gardening")
    services.badges.check_and_award(worker).unwrap()
    assert not held(conn, worker) & {"specialist-cleaning", "specialist-delivery", "specialist-moving"}
    complete_many(conn, worker, 1, category="Cleaning")
    complete_many(conn, worker, 10, category="moving")
    services.badges.check_and_award(worker).unwrap()
    badges = held(conn, worker)
    assert {"specialist-cleaning", "specialist-moving"} <= badges
    assert "specialist-delivery" not in badges


def test_early_bird_needs_five_before_nine_utc(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    day = datetime(2025, 5, 1, tzinfo=UTC)
    for n in range(4):
        completed_for(conn, worker, release=False, completed_at=day + timedelta(days=10 * n, hours=8, minutes=59))
    completed_for(conn, worker, release=False, completed_at=day + timedelta(days=50, hours=9))  # 09:00 is late
    services.badges.check_and_award(worker).unwrap()
    assert "early-bird" not in held(conn, worker)
    completed_for(conn, worker, release=False, completed_at=day + timedelta(days=60, hours=6))
    awarded = services.badges.check_and_award(worker).unwrap()
    assert [b["badge_type"] for b in awarded] == ["early-bird"]


def test_perfect_week_seven_in_one_iso_week(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    for n in range(7):  # Monday through Sunday
        completed_for(conn, worker, release=False, completed_at=MONDAY + timedelta(days=n, hours=11))
    services.badges.check_and_award(worker).unwrap()
    assert "perfect-week" in held(conn, worker)


def test_perfect_week_does_not_span_two_weeks(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    for n in range(1, 8):  # Tuesday through the next Monday
        completed_for(conn, worker, release=False, completed_at=MONDAY + timedelta(days=n))
    services.badges.check_and_award(worker).unwrap()
    assert "perfect-week" not in held(conn, worker)


@pytest.mark.parametrize("rejected_this_week", [False, True])
def test_a_completion_tests_its_own_week_for_perfect_week(conn: Any, services: Services, stripe_fake: Any,
                                                          rejected_this_week: bool) -> None:
    """The completion chain tests the week of the task it completes (six earlier completions
    this week plus this one), spoiled by a proof of the worker rejected in that week."""
    ids = flows.submitted_task(services, stripe_fake)
    earlier = complete_many(conn, ids["worker"], 6)
    if rejected_this_week:
        factories.proof(conn, earlier[0]["task"], ids["worker"], state="REJECTED")
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert ("perfect-week" in held(conn, ids["worker"])) is not rejected_this_week


def test_perfect_week_is_spoiled_by_a_rejected_proof(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    chains = [completed_for(conn, worker, release=False, completed_at=MONDAY + timedelta(days=n % 7))
              for n in range(8)]
    rejected = factories.proof(conn, chains[0]["task"], worker, state="REJECTED")
    conn.execute("UPDATE proofs SET reviewed_at = %s WHERE id = %s", (MONDAY + timedelta(days=2), rejected))
    services.badges.check_and_award(worker).unwrap()
    assert "perfect-week" not in held(conn, worker)
    # a rejection in another week does not matter
    later = [completed_for(conn, worker, release=False, completed_at=MONDAY + timedelta(weeks=3, days=n))
             for n in range(7)]
    assert later
    assert "perfect-week" in {b["badge_type"] for b in services.badges.check_and_award(worker).unwrap()}


def test_badges_survive_a_drop_in_what_earned_them(conn: Any, services: Services) -> None:
    worker = factories.user(conn, trust_tier=3, current_streak=7)
    services.badges.check_and_award(worker).unwrap()
    conn.execute("UPDATE users SET trust_tier = 1, current_streak = 0 WHERE id = %s", (worker,))
    assert services.badges.check_and_award(worker).unwrap() == []
    assert held(conn, worker) == {"trust-tier-2", "trust-tier-3", "streak-3", "streak-7"}


def test_check_and_award_rolls_back_with_its_caller(conn: Any, services: Services, db: Database) -> None:
    worker = factories.user(conn, current_level=5)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.transaction():
        assert len(services.badges.check_and_award(worker).unwrap()) == 2
        raise Abort
    assert held(conn, worker) == set()
    assert conn.execute("SELECT count(*) AS n FROM notifications").fetchone()["n"] == 0


def test_check_and_award_for_unknown_user(services: Services) -> None:
    assert services.badges.check_and_award(NOBODY).code == "HX504"


# --- reads and animation ----------------------------------------------------------------------

def test_user_badges_split_earned_and_available(conn: Any, services: Services) -> None:
    ids = completed_for(conn, factories.user(conn, current_level=3), release=False)
    services.badges.check_and_award(ids["worker"], task_id=ids["task"]).unwrap()
    data = services.badges.get_user_badges(ids["worker"]).unwrap()
    assert (data["total_earned"], data["total_available"]) == (2, len(CATALOG))
    earned = {b["badge_type"]: b for b in data["earned_badges"]}
    assert set(earned) == {"first-task", "level-3"}
    assert earned["first-task"]["task_id"] == ids["task"]
    assert earned["level-3"]["rarity"] == "common"
    assert earned["first-task"]["animation_shown_at"] is None
    available = {b["id"] for b in data["available_badges"]}
    assert len(available) == len(CATALOG) - 2
    assert not available & set(earned)


def test_user_badges_of_unknown_user(services: Services) -> None:
    assert services.badges.get_user_badges(NOBODY).code == "HX504"


def test_animation_is_marked_once(conn: Any, services: Services) -> None:
    worker = factories.user(conn, current_streak=3)
    (badge,) = services.badges.check_and_award(worker).unwrap()
    first = services.badges.mark_animation_shown(worker, badge["id"]).unwrap()
    assert first["animation_shown_at"] is not None
    again = services.badges.mark_animation_shown(worker, "streak-3").unwrap()
    assert again["animation_shown_at"] == first["animation_shown_at"]
    stored = conn.execute("SELECT animation_shown_at FROM badges WHERE id = %s", (badge["id"],)).fetchone()
    assert stored["animation_shown_at"] == first["animation_shown_at"]


def test_animation_of_someone_elses_or_missing_badge(conn: Any, services: Services) -> None:
    owner, other = factories.user(conn, current_streak=3), factories.user(conn)
    (badge,) = services.badges.check_and_award(owner).unwrap()
    assert services.badges.mark_animation_shown(other, badge["id"]).code == "NOT_FOUND"
    assert services.badges.mark_animation_shown(owner, "tasks-100").code == "NOT_FOUND"
    assert services.badges.mark_animation_shown(owner, NOBODY).code == "NOT_FOUND"
