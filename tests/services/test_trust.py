"""TrustService: tier calculation, promotion, penalties, admin overrides, eligibility, reads.
Tier changes are logged by the trust_tier_audit trigger; these tests read trust_ledger to see
that the service described each change."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hustlexp.db import Database
from hustlexp.services import Services
from tests import factories
from tests.services.test_xp import completed_for, user_row

NOBODY = "00000000-0000-0000-0000-000000000000"


def worker_with(conn: Any, completed: int, *, verified: bool = True, rejected: int = 0) -> Any:
    """A worker with `completed` COMPLETED tasks (one accepted proof each) and `rejected`
    rejected proofs on one more task still in progress."""
    worker = factories.user(conn, is_verified=verified)
    for _ in range(completed):
        completed_for(conn, worker, release=False)
    if rejected:
        poster = factories.user(conn)
        task_id = factories.task(conn, poster)
        factories.escrow(conn, task_id)
        conn.execute("UPDATE tasks SET state = 'ACCEPTED', worker_id = %s WHERE id = %s", (worker, task_id))
        for _ in range(rejected):
            factories.proof(conn, task_id, worker, state="REJECTED")
    return worker


def ledger(conn: Any, user_id: Any) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM trust_ledger WHERE user_id = %s ORDER BY changed_at, id",
                        (user_id,)).fetchall()


def admin(conn: Any, *, can_modify_trust: bool = True, role: str = "admin") -> Any:
    admin_id = factories.user(conn)
    conn.execute("INSERT INTO admin_roles (user_id, role, can_modify_trust) VALUES (%s, %s, %s)",
                 (admin_id, role, can_modify_trust))
    return admin_id


def open_task(conn: Any, *, funded: bool = True, **cols: Any) -> dict[str, Any]:
    poster = factories.user(conn)
    task_id = factories.task(conn, poster, **cols)
    escrow_id = factories.escrow(conn, task_id)
    if funded:
        conn.execute("UPDATE escrows SET state = 'FUNDED', funded_at = now() WHERE id = %s", (escrow_id,))
    return {"poster": poster, "task": task_id, "escrow": escrow_id}


# --- calculate_tier ---------------------------------------------------------------------------

def test_new_user_is_tier_one(conn: Any, services: Services) -> None:
    assert services.trust.calculate_tier(factories.user(conn)).unwrap() == 1


def test_tier_two_needs_five_tasks_and_verification(conn: Any, services: Services) -> None:
    assert services.trust.calculate_tier(worker_with(conn, 4)).unwrap() == 1
    assert services.trust.calculate_tier(worker_with(conn, 5, verified=False)).unwrap() == 1
    assert services.trust.calculate_tier(worker_with(conn, 5)).unwrap() == 2


def test_posted_tasks_do_not_count_toward_trust(conn: Any, services: Services) -> None:
    poster = factories.user(conn, is_verified=True)
    for _ in range(6):
        completed_for(conn, factories.user(conn), release=False, poster=poster)
    assert services.trust.calculate_tier(poster).unwrap() == 1


def test_tier_three_needs_twenty_tasks_and_95_percent_approval(conn: Any, services: Services) -> None:
    calc = services.trust.calculate_tier
    assert calc(worker_with(conn, 19)).unwrap() == 2
    assert calc(worker_with(conn, 20)).unwrap() == 3
    assert calc(worker_with(conn, 38, rejected=2)).unwrap() == 3  # exactly 95 %
    assert calc(worker_with(conn, 37, rejected=2)).unwrap() == 2  # 94.9 %
    assert calc(worker_with(conn, 20, verified=False)).unwrap() == 1


def test_calculated_tier_is_never_elite(conn: Any, services: Services) -> None:
    worker = worker_with(conn, 20)
    conn.execute("UPDATE users SET trust_tier = 4 WHERE id = %s", (worker,))
    assert services.trust.calculate_tier(worker).unwrap() == 3
    result = services.trust.update_user_trust(worker).unwrap()
    assert result == {"old_tier": 4, "new_tier": 4, "changed": False, "new_badges": []}
    assert user_row(conn, worker)["trust_tier"] == 4


def test_calculate_tier_of_unknown_user(services: Services) -> None:
    assert services.trust.calculate_tier(NOBODY).code == "HX504"


# --- update_user_trust ------------------------------------------------------------------------

def test_promotion_is_logged_as_promotion_with_its_task(conn: Any, services: Services) -> None:
    worker = worker_with(conn, 5)
    task_id = conn.execute("SELECT id FROM tasks WHERE worker_id = %s LIMIT 1", (worker,)).fetchone()["id"]

    result = services.trust.update_user_trust(worker, task_id=task_id).unwrap()

    assert (result["old_tier"], result["new_tier"], result["changed"]) == (1, 2, True)
    assert "trust-tier-2" in result["new_badges"]
    assert user_row(conn, worker)["trust_tier"] == 2
    (entry,) = ledger(conn, worker)
    assert (entry["old_tier"], entry["new_tier"], entry["reason"], entry["changed_by"]) == (
        1, 2, "PROMOTION", "system")
    assert entry["task_id"] == task_id
    assert entry["dispute_id"] is None
    assert entry["reason_details"]["completed"] == 5
    notes = conn.execute("SELECT category, metadata FROM notifications WHERE user_id = %s "
                         "AND category = 'TRUST_TIER_UP'", (worker,)).fetchall()
    assert len(notes) == 1
    assert notes[0]["metadata"]["new_tier"] == 2


def test_promotion_can_skip_a_tier(conn: Any, services: Services) -> None:
    worker = worker_with(conn, 20)
    dispute_id = uuid.uuid4()
    result = services.trust.update_user_trust(worker, dispute_id=dispute_id).unwrap()
    assert (result["old_tier"], result["new_tier"]) == (1, 3)
    assert {"trust-tier-2", "trust-tier-3"} <= set(result["new_badges"])
    (entry,) = ledger(conn, worker)
    assert (entry["old_tier"], entry["new_tier"], entry["dispute_id"]) == (1, 3, dispute_id)


def test_update_never_demotes(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    conn.execute("UPDATE users SET trust_tier = 3 WHERE id = %s", (worker,))
    before = len(ledger(conn, worker))
    result = services.trust.update_user_trust(worker).unwrap()
    assert result["changed"] is False
    assert (result["old_tier"], result["new_tier"]) == (3, 3)
    assert user_row(conn, worker)["trust_tier"] == 3
    assert len(ledger(conn, worker)) == before


def test_update_without_change_writes_nothing(conn: Any, services: Services) -> None:
    worker = worker_with(conn, 3)
    assert services.trust.update_user_trust(worker).unwrap()["changed"] is False
    assert ledger(conn, worker) == []
    assert conn.execute("SELECT count(*) AS n FROM notifications WHERE user_id = %s",
                        (worker,)).fetchone()["n"] == 0


def test_described_change_does_not_leak_into_later_changes(conn: Any, services: Services,
                                                           db: Database) -> None:
    worker = worker_with(conn, 5)
    other = factories.user(conn)
    with db.transaction() as tx:
        services.trust.update_user_trust(worker).unwrap()
        tx.execute("UPDATE users SET trust_tier = 2 WHERE id = %s", (other,))
    (entry,) = ledger(conn, other)
    assert (entry["reason"], entry["changed_by"], entry["task_id"], entry["reason_details"]) == (
        "direct_update", "system", None, None)


def test_update_of_unknown_user(services: Services) -> None:
    assert services.trust.update_user_trust(NOBODY).code == "HX504"


# --- penalize ---------------------------------------------------------------------------------

def test_penalty_drops_one_tier_with_the_dispute(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    conn.execute("UPDATE users SET trust_tier = 3 WHERE id = %s", (worker,))
    dispute_id = uuid.uuid4()

    result = services.trust.penalize(worker, dispute_id=dispute_id).unwrap()

    assert result == {"old_tier": 3, "new_tier": 2, "changed": True}
    entry = ledger(conn, worker)[-1]
    assert (entry["old_tier"], entry["new_tier"], entry["reason"], entry["changed_by"]) == (
        3, 2, "PENALTY", "system")
    assert entry["dispute_id"] == dispute_id
    assert conn.execute("SELECT count(*) AS n FROM notifications WHERE user_id = %s "
                        "AND category = 'TRUST_TIER_DOWN'", (worker,)).fetchone()["n"] == 1


def test_penalty_stops_at_tier_one(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    result = services.trust.penalize(worker, dispute_id=uuid.uuid4()).unwrap()
    assert result == {"old_tier": 1, "new_tier": 1, "changed": False}
    assert ledger(conn, worker) == []


# --- set_tier ---------------------------------------------------------------------------------

def test_admin_grants_elite_with_an_audit_trail(conn: Any, services: Services) -> None:
    admin_id, worker = admin(conn), factories.user(conn)

    result = services.trust.set_tier(admin_id, worker, 4, "Top performer, manual review").unwrap()

    assert (result["old_tier"], result["new_tier"], result["changed"]) == (1, 4, True)
    assert user_row(conn, worker)["trust_tier"] == 4
    (entry,) = ledger(conn, worker)
    assert (entry["reason"], entry["changed_by"]) == ("ADMIN_OVERRIDE", f"admin:{admin_id}")
    assert entry["reason_details"] == {"note": "Top performer, manual review"}
    action = conn.execute("SELECT * FROM admin_actions WHERE id = %s", (result["admin_action_id"],)).fetchone()
    assert (action["admin_user_id"], action["admin_role"], action["target_user_id"], action["result"]) == (
        admin_id, "admin", worker, "SUCCESS")
    assert action["action_details"]["new_tier"] == 4
    badges = {r["badge_type"] for r in conn.execute("SELECT badge_type FROM badges WHERE user_id = %s",
                                                     (worker,)).fetchall()}
    assert {"trust-tier-2", "trust-tier-3", "trust-tier-4"} <= badges


def test_admin_can_lower_a_tier(conn: Any, services: Services) -> None:
    admin_id, worker = admin(conn), factories.user(conn)
    conn.execute("UPDATE users SET trust_tier = 3 WHERE id = %s", (worker,))
    assert services.trust.set_tier(admin_id, worker, 1, "fraud review").unwrap()["new_tier"] == 1
    assert user_row(conn, worker)["trust_tier"] == 1
    assert ledger(conn, worker)[-1]["reason"] == "ADMIN_OVERRIDE"


def test_same_tier_override_is_audited_but_not_logged_as_a_change(conn: Any, services: Services) -> None:
    admin_id, worker = admin(conn), factories.user(conn)
    result = services.trust.set_tier(admin_id, worker, 1, "checked").unwrap()
    assert result["changed"] is False
    assert ledger(conn, worker) == []
    action = conn.execute("SELECT result FROM admin_actions WHERE id = %s", (result["admin_action_id"],))
    assert action.fetchone()["result"] == "NO_CHANGE"


@pytest.mark.parametrize("kind", ["no_role", "no_right", "self"])
def test_set_tier_is_forbidden_without_the_right(conn: Any, services: Services, kind: str) -> None:
    worker = factories.user(conn)
    if kind == "no_role":
        actor = factories.user(conn)
    elif kind == "no_right":
        actor = admin(conn, can_modify_trust=False, role="support")
    else:
        actor = worker = admin(conn)
    result = services.trust.set_tier(actor, worker, 4, "please")
    assert result.code == "FORBIDDEN"
    assert user_row(conn, worker)["trust_tier"] == 1
    assert ledger(conn, worker) == []
    assert conn.execute("SELECT count(*) AS n FROM admin_actions").fetchone()["n"] == 0


def test_set_tier_validates_its_input(conn: Any, services: Services) -> None:
    admin_id, worker = admin(conn), factories.user(conn)
    assert services.trust.set_tier(admin_id, worker, 5, "x").code == "VALIDATION_ERROR"
    assert services.trust.set_tier(admin_id, worker, 0, "x").code == "VALIDATION_ERROR"
    assert services.trust.set_tier(admin_id, worker, 3, "   ").code == "VALIDATION_ERROR"
    assert services.trust.set_tier(admin_id, NOBODY, 3, "x").code == "HX504"


# --- check_eligibility ------------------------------------------------------------------------

def test_eligible_worker(conn: Any, services: Services) -> None:
    ids = open_task(conn)
    worker = factories.user(conn)
    result = services.trust.check_eligibility(worker, ids["task"]).unwrap()
    assert result["eligible"] is True
    assert (result["trust_tier"], result["required_trust_tier"], result["risk_level"]) == (1, 0, "low")


def test_eligibility_needs_an_open_funded_task(conn: Any, services: Services) -> None:
    worker = factories.user(conn)
    assert services.trust.check_eligibility(worker, NOBODY).code == "NOT_FOUND"
    unfunded = open_task(conn, funded=False)
    assert services.trust.check_eligibility(worker, unfunded["task"]).code == "CONFLICT"
    taken = factories.accepted_task(conn)
    assert services.trust.check_eligibility(worker, taken["task"]).code == "CONFLICT"
    ids = open_task(conn)
    assert services.trust.check_eligibility(NOBODY, ids["task"]).code == "HX504"


def test_poster_cannot_take_their_own_task(conn: Any, services: Services) -> None:
    ids = open_task(conn)
    assert services.trust.check_eligibility(ids["poster"], ids["task"]).code == "FORBIDDEN"


def test_paused_and_suspended_accounts_are_refused(conn: Any, services: Services) -> None:
    ids = open_task(conn)
    paused = factories.user(conn, account_status="PAUSED")
    suspended = factories.user(conn, account_status="SUSPENDED")
    assert services.trust.check_eligibility(paused, ids["task"]).code == "HX602"
    assert services.trust.check_eligibility(suspended, ids["task"]).code == "FORBIDDEN"


def test_required_trust_tier(conn: Any, services: Services) -> None:
    ids = open_task(conn, required_trust_tier=2)
    rookie, verified = factories.user(conn), factories.user(conn, trust_tier=2)
    refused = services.trust.check_eligibility(rookie, ids["task"])
    assert refused.code == "FORBIDDEN"
    assert refused.error is not None and refused.error.details["reason"] == "TRUST_TIER"
    assert services.trust.check_eligibility(verified, ids["task"]).ok


@pytest.mark.parametrize(("risk", "tier", "allowed"), [
    ("low", 1, True), ("medium", 1, False), ("medium", 2, True), ("medium", 3, True),
    ("high", 3, False), ("high", 4, True), ("critical", 4, False),
])
def test_risk_clearance(conn: Any, services: Services, risk: str, tier: int, allowed: bool) -> None:
    ids = open_task(conn, risk_level=risk)
    worker = factories.user(conn, trust_tier=tier)
    result = services.trust.check_eligibility(worker, ids["task"])
    assert result.ok is allowed
    if not allowed:
        assert result.code == "FORBIDDEN"


# --- reads ------------------------------------------------------------------------------------

def test_trust_history_pages_newest_first(conn: Any, services: Services) -> None:
    admin_id, worker = admin(conn), factories.user(conn)
    for tier in (2, 3, 1):
        services.trust.set_tier(admin_id, worker, tier, f"to {tier}").unwrap()
    page = services.trust.get_trust_history(worker, limit=2).unwrap()
    assert page["total"] == 3
    assert page["has_more"] is True
    assert [(e["old_tier"], e["new_tier"]) for e in page["entries"]] == [(3, 1), (2, 3)]
    rest = services.trust.get_trust_history(worker, limit=2, offset=2).unwrap()
    assert [(e["old_tier"], e["new_tier"]) for e in rest["entries"]] == [(1, 2)]
    assert rest["has_more"] is False
    assert services.trust.get_trust_history(NOBODY).code == "HX504"
    assert services.trust.get_trust_history(worker, limit=500).code == "VALIDATION_ERROR"


def test_tier_info_for_a_rookie(conn: Any, services: Services) -> None:
    worker = worker_with(conn, 3, verified=False, rejected=1)
    info = services.trust.get_trust_tier_info(worker).unwrap()
    assert (info["current_tier"], info["tier_name"], info["next_tier"]) == (1, "ROOKIE", 2)
    assert info["requirements_for_next"] == {
        "tasks_completed": {"required": 5, "current": 3},
        "approval_rate": {"required": None, "current": 75.0},
        "id_verified": {"required": True, "current": False},
        "avg_rating": {"required": None, "current": None},
        # 3 completed + 1 in progress, no dispute.
        "dispute_rate": {"required": None, "current": 0.0},
    }
    assert info["tier_benefits"]
    assert info["next_tier_admin_only"] is False


def test_tier_info_toward_trusted_and_elite(conn: Any, services: Services) -> None:
    worker = worker_with(conn, 6)
    conn.execute("UPDATE users SET trust_tier = 2 WHERE id = %s", (worker,))
    info = services.trust.get_trust_tier_info(worker).unwrap()
    assert (info["tier_name"], info["next_tier"]) == ("VERIFIED", 3)
    assert info["requirements_for_next"]["tasks_completed"] == {"required": 20, "current": 6}
    assert info["requirements_for_next"]["approval_rate"] == {"required": 95, "current": 100.0}

    conn.execute("UPDATE users SET trust_tier = 3 WHERE id = %s", (worker,))
    info = services.trust.get_trust_tier_info(worker).unwrap()
    # ELITE is earned now (ratings exist): no longer admin-only.
    assert (info["tier_name"], info["next_tier"], info["next_tier_admin_only"]) == ("TRUSTED", 3 + 1, False)
    assert info["requirements_for_next"]["avg_rating"] == {"required": 4.8, "current": None}
    assert info["requirements_for_next"]["tasks_completed"]["required"] == 100

    conn.execute("UPDATE users SET trust_tier = 4 WHERE id = %s", (worker,))
    info = services.trust.get_trust_tier_info(worker).unwrap()
    assert (info["tier_name"], info["next_tier"], info["requirements_for_next"]) == ("ELITE", None, None)
    assert services.trust.get_trust_tier_info(NOBODY).code == "HX504"
