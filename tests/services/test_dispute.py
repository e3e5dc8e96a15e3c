"""DisputeService: opening (who, when), and the three rulings with their money and XP."""

from __future__ import annotations

import uuid

import pytest

from tests.services import flows


def _open(services, ids, by="poster"):
    return services.disputes.create(ids["task"], ids[by], reason="QUALITY_ISSUE",
                                    description="The shelf wobbles").unwrap()


def test_open_on_a_submitted_proof_locks_escrow_and_task(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    out = _open(services, ids)
    assert out["dispute"]["state"] == "OPEN" and out["dispute"]["opened_by"] == ids["poster"]
    assert out["task"]["state"] == "DISPUTED" and out["escrow"]["state"] == "LOCKED_DISPUTE"
    note = flows.row(services, "SELECT user_id FROM notifications WHERE category = 'DISPUTE_OPENED'")
    assert note["user_id"] == ids["worker"]


def test_worker_may_open_right_after_a_rejection(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    services.proofs.reject(ids["proof"], ids["poster"], "Not done").unwrap()
    assert _open(services, ids, by="worker")["task"]["state"] == "DISPUTED"


def test_open_rules(services, stripe_fake):
    accepted = flows.accepted_task(services, stripe_fake)
    assert services.disputes.create(accepted["task"], accepted["poster"], reason="OTHER",
                                    description="x").code == "CONFLICT"
    ids = flows.submitted_task(services, stripe_fake)
    outsider = flows.user(services)
    assert services.disputes.create(ids["task"], outsider, reason="OTHER", description="x").code == "FORBIDDEN"
    assert services.disputes.create(ids["task"], ids["poster"], reason="BORED", description="x").code == \
        "VALIDATION_ERROR"
    assert services.disputes.create(ids["task"], ids["poster"], reason="OTHER", description="").code == \
        "VALIDATION_ERROR"
    assert services.disputes.create(uuid.uuid4(), ids["poster"], reason="OTHER", description="x").code == \
        "NOT_FOUND"
    _open(services, ids)
    assert services.disputes.create(ids["task"], ids["worker"], reason="OTHER", description="x").code == \
        "CONFLICT"


def test_hustler_wins_completes_pays_and_awards_xp(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake, price=5000)
    dispute = _open(services, ids)["dispute"]
    admin = flows.admin(services)
    out = services.disputes.resolve(dispute["id"], admin, resolution="HUSTLER_WINS", notes="Photos show it").unwrap()
    assert out["dispute"]["state"] == "RESOLVED" and out["dispute"]["outcome_escrow_action"] == "RELEASE"
    assert out["task"]["state"] == "COMPLETED" and out["escrow"]["state"] == "RELEASED"
    assert out["xp_awarded"]["effective_xp"] > 0
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 4250, "refunded": 0}
    proof = flows.row(services, "SELECT state, reviewed_by FROM proofs WHERE id = %s", ids["proof"])
    assert proof == {"state": "ACCEPTED", "reviewed_by": admin}
    action = flows.row(services, "SELECT * FROM admin_actions WHERE target_dispute_id = %s", dispute["id"])
    assert action["action_type"] == "DISPUTE_RESOLVE" and action["result"] == "RELEASE"


def test_client_wins_cancels_and_refunds_without_xp(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake, price=5000)
    dispute = _open(services, ids)["dispute"]
    out = services.disputes.resolve(dispute["id"], flows.admin(services), resolution="CLIENT_WINS",
                                    notes="No work visible").unwrap()
    assert out["task"]["state"] == "CANCELLED" and out["escrow"]["state"] == "REFUNDED"
    assert out["dispute"]["outcome_worker_penalty"] is True
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 0, "refunded": 5000}
    assert flows.row(services, "SELECT count(*) AS n FROM xp_ledger")["n"] == 0


def test_split_pays_the_share_and_refunds_the_rest(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake, price=5000)
    dispute = _open(services, ids)["dispute"]
    out = services.disputes.resolve(dispute["id"], flows.admin(services), resolution="SPLIT", notes="Half done",
                                    split_percent=60).unwrap()
    escrow = out["escrow"]
    assert (escrow["state"], escrow["release_amount"], escrow["refund_amount"]) == ("REFUND_PARTIAL", 3000, 2000)
    assert out["task"]["state"] == "CANCELLED"
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 2550, "refunded": 2000}
    assert flows.row(services, "SELECT count(*) AS n FROM xp_ledger")["n"] == 0


@pytest.mark.parametrize("kwargs", [
    {"resolution": "SPLIT", "notes": "x"}, {"resolution": "SPLIT", "notes": "x", "split_percent": 0},
    {"resolution": "SPLIT", "notes": "x", "split_percent": 100}, {"resolution": "DRAW", "notes": "x"},
    {"resolution": "CLIENT_WINS", "notes": ""}, {"resolution": "CLIENT_WINS", "notes": "x", "split_percent": 50},
])
def test_resolve_rejects_bad_rulings(services, stripe_fake, kwargs):
    ids = flows.submitted_task(services, stripe_fake)
    dispute = _open(services, ids)["dispute"]
    assert services.disputes.resolve(dispute["id"], flows.admin(services), **kwargs).code == "VALIDATION_ERROR"
    assert flows.row(services, "SELECT state FROM disputes WHERE id = %s", dispute["id"])["state"] == "OPEN"


def test_resolve_needs_the_right_admin_and_happens_once(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    dispute = _open(services, ids)["dispute"]
    assert services.disputes.resolve(dispute["id"], ids["poster"], resolution="CLIENT_WINS",
                                     notes="mine").code == "FORBIDDEN"
    weak_admin = flows.admin(services, can_resolve_disputes=False)
    assert services.disputes.resolve(dispute["id"], weak_admin, resolution="CLIENT_WINS",
                                     notes="x").code == "FORBIDDEN"
    admin = flows.admin(services)
    assert services.disputes.resolve(dispute["id"], admin, resolution="CLIENT_WINS", notes="x").ok
    assert services.disputes.resolve(dispute["id"], admin, resolution="HUSTLER_WINS", notes="x").code == "CONFLICT"
    assert stripe_fake.money_out(str(ids["escrow"]))["transferred"] == 0


def test_dispute_reads(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    dispute = _open(services, ids)["dispute"]
    got = services.disputes.get_by_task_id(ids["task"], ids["worker"]).unwrap()
    assert got["id"] == dispute["id"] and got["evidence"] == []
    assert services.disputes.get_by_id(dispute["id"], flows.user(services)).code == "FORBIDDEN"
    assert services.disputes.get_by_id(dispute["id"], flows.admin(services)).ok
    other = flows.submitted_task(services, stripe_fake)
    assert services.disputes.get_by_task_id(other["task"], other["poster"]).code == "NOT_FOUND"
