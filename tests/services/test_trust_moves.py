"""Trust that moves (issue 13): ELITE earned with ratings, identity verification, penalties for a
lost dispute and for repeated rejections, inactivity decay, and the progress the user sees."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from hustlexp.jobs import run_pass
from hustlexp.services import Services
from tests import factories
from tests.services import flows
from tests.services.test_trust import admin, ledger
from tests.services.test_xp import completed_for, user_row


def elite_candidate(conn: Any, *, tasks: int = 100, stars: tuple[int, ...] = (5,), disputes: int = 0,
                    tier: int = 3) -> Any:
    """A verified tier-`tier` worker with `tasks` completions, each rated by its poster (stars
    cycling through `stars`) and public because the 7-day window has closed."""
    worker = factories.user(conn, is_verified=True)
    factories.trust_change(conn, worker, tier)
    for n in range(tasks):
        ids = completed_for(conn, worker)
        factories.rating(conn, ids["task"], ids["poster"], worker, stars=stars[n % len(stars)])
        conn.execute("UPDATE tasks SET completed_at = now() - interval '8 days' WHERE id = %s", (ids["task"],))
    for _ in range(disputes):
        ids = factories.task_in(conn, "DISPUTED")
        conn.execute("UPDATE tasks SET state = 'PROOF_SUBMITTED' WHERE id = %s", (ids["task"],))
        conn.execute("INSERT INTO disputes (task_id, escrow_id, initiated_by, poster_id, worker_id, reason, "
                     "description) SELECT id, %s, poster_id, poster_id, %s, 'quality', 'bad' FROM tasks "
                     "WHERE id = %s", (ids["escrow"], worker, ids["task"]))
    return worker


def test_elite_with_100_completions_and_a_high_rating(conn, services):
    worker = elite_candidate(conn, stars=(5, 5, 5, 5, 4))  # average 4.8 exactly
    assert services.trust.calculate_tier(worker).unwrap() == 4
    out = services.trust.update_user_trust(worker).unwrap()
    assert (out["old_tier"], out["new_tier"], out["changed"]) == (3, 4, True)
    row = ledger(conn, worker)[-1]
    assert (row["reason"], row["new_tier"]) == ("PROMOTION", 4)
    assert row["reason_details"]["average_rating"] == 4.8


@pytest.mark.parametrize(("kw", "why"), [
    ({"stars": (5, 5, 5, 4, 4)}, "average 4.6"), ({"tasks": 99}, "99 completions"),
    ({"stars": (5,), "disputes": 2}, "2 disputes in 102 tasks"),
])
def test_no_elite_without_every_requirement(conn, services, kw, why):
    worker = elite_candidate(conn, **kw)
    assert services.trust.calculate_tier(worker).unwrap() == 3, why
    assert services.trust.update_user_trust(worker).unwrap()["changed"] is False


def test_blind_ratings_do_not_count_toward_elite(conn, services):
    worker = elite_candidate(conn, tasks=100, stars=(5,))
    # Ten more completions rated 1 star, still blind (window open, worker did not rate back).
    for _ in range(10):
        ids = completed_for(conn, worker)
        factories.rating(conn, ids["task"], ids["poster"], worker, stars=1)
    assert services.trust.calculate_tier(worker).unwrap() == 4
    info = services.trust.get_trust_tier_info(worker).unwrap()
    assert info["next_tier"] == 4 and info["next_tier_admin_only"] is False
    assert info["requirements_for_next"]["avg_rating"] == {"required": 4.8, "current": 5.0}
    assert info["requirements_for_next"]["dispute_rate"] == {"required": 1, "current": 0.0}
    assert info["requirements_for_next"]["tasks_completed"] == {"required": 100, "current": 110}


def test_admin_verification_sets_the_flag_promotes_and_is_audited(conn, services):
    worker = factories.user(conn)
    for _ in range(5):
        completed_for(conn, worker)
    boss = admin(conn)
    out = services.trust.verify_identity(boss, worker, note="passport checked").unwrap()
    assert out["is_verified"] is True and out["verified_at"] is not None
    assert out["trust"] == {"old_tier": 1, "new_tier": 2, "changed": True}
    action = factories.one(conn, "SELECT * FROM admin_actions WHERE id = %s", (out["admin_action_id"],))
    assert (action["action_type"], action["target_user_id"], action["result"]) == ("USER_VERIFY", worker, "SUCCESS")
    again = services.trust.verify_identity(boss, worker).unwrap()
    assert again["trust"]["changed"] is False
    assert factories.one(conn, "SELECT result FROM admin_actions WHERE id = %s",
                         (again["admin_action_id"],))["result"] == "NO_CHANGE"


def test_verification_needs_an_admin_who_may_modify_trust(conn, services):
    worker = factories.user(conn)
    assert services.trust.verify_identity(factories.user(conn), worker).code == "FORBIDDEN"
    assert services.trust.verify_identity(admin(conn, can_modify_trust=False), worker).code == "FORBIDDEN"
    assert services.trust.verify_identity(admin(conn), uuid.UUID(int=0)).code == "HX504"
    assert services.trust.verify_identity(admin(conn), worker, note="x" * 501).code == "VALIDATION_ERROR"
    assert user_row(conn, worker)["is_verified"] is False
    assert factories.one(conn, "SELECT count(*) AS n FROM admin_actions")["n"] == 0


def dispute_on(services: Services, fake: Any, worker: Any) -> tuple[dict[str, Any], Any]:
    ids = flows.submitted_task(services, fake, worker=worker)
    opened = services.disputes.create(ids["task"], ids["poster"], reason="QUALITY_ISSUE",
                                      description="Not done").unwrap()
    return ids, opened["dispute"]["id"]


@pytest.mark.parametrize(("resolution", "split", "penalized"), [
    ("CLIENT_WINS", None, True), ("SPLIT", 49, True), ("SPLIT", 50, False), ("HUSTLER_WINS", None, False),
])
def test_losing_a_dispute_costs_a_tier(conn, services, stripe_fake, resolution, split, penalized):
    worker = flows.user(services)
    factories.trust_change(conn, worker, 3)
    _, dispute_id = dispute_on(services, stripe_fake, worker)
    services.disputes.resolve(dispute_id, flows.admin(services), resolution=resolution, notes="ruled",
                              split_percent=split).unwrap()
    assert user_row(conn, worker)["trust_tier"] == (2 if penalized else 3)
    downs = conn.execute("SELECT * FROM notifications WHERE user_id = %s AND category = 'TRUST_TIER_DOWN'",
                         (worker,)).fetchall()
    if penalized:
        row = ledger(conn, worker)[-1]
        assert (row["reason"], row["dispute_id"], row["reason_details"]["cause"]) == (
            "PENALTY", dispute_id, "dispute_lost")
        assert "a dispute ruled against you" in downs[0]["body"]
    else:
        assert downs == []


def test_penalty_holds_promotion_for_30_days(conn, services, clock):
    worker = elite_candidate(conn, tasks=20, stars=(5,), tier=3)
    services.trust.penalize(worker, dispute_id=uuid.uuid4()).unwrap()
    assert services.trust.update_user_trust(worker).unwrap()["changed"] is False
    assert services.trust.get_trust_tier_info(worker).unwrap()["promotion_held_until"] is not None
    clock.advance(days=31)
    assert services.trust.update_user_trust(worker).unwrap()["new_tier"] == 3


def test_three_rejections_in_30_days_cost_a_tier_once(conn, services, stripe_fake):
    worker = flows.user(services)
    factories.trust_change(conn, worker, 2)
    ids = flows.accepted_task(services, stripe_fake, worker=worker)
    for n in range(4):
        flows.submit_proof(services, ids)
        services.proofs.reject(ids["proof"], ids["poster"], f"blurry {n}").unwrap()
        assert user_row(conn, worker)["trust_tier"] == (2 if n < 2 else 1)
    penalties = [r for r in ledger(conn, worker) if r["reason"] == "PENALTY"]
    assert len(penalties) == 1 and penalties[0]["reason_details"] == {"cause": "repeated_rejections",
                                                                        "rejections": 3}


def test_inactivity_decays_one_tier_per_90_days(conn, services, clock):
    active = factories.user(conn, last_task_completed_at=clock.now + timedelta(days=60))
    idle = factories.user(conn)
    rookie = factories.user(conn)
    for user in (active, idle):
        factories.trust_change(conn, user, 3)
    clock.advance(days=89)
    assert run_pass("trust-decay", services) == {"checked": 0, "decayed": 0}
    clock.advance(days=2)
    assert run_pass("trust-decay", services) == {"checked": 1, "decayed": 1}
    assert [user_row(conn, u)["trust_tier"] for u in (active, idle, rookie)] == [3, 2, 1]
    row = ledger(conn, idle)[-1]
    assert (row["reason"], row["reason_details"]) == ("DECAY", {"cause": "inactivity", "inactive_days": 90})
    body = conn.execute("SELECT body FROM notifications WHERE user_id = %s AND category = 'TRUST_TIER_DOWN'",
                        (idle,)).fetchone()["body"]
    assert "90 days without a completed task" in body
