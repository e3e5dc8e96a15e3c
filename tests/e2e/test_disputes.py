"""B051: reject -> dispute -> admin ruling, over real HTTP, once per outcome. Each ruling ends
the task and the escrow, moves exactly the ruled amounts at Stripe, awards XP only when the
worker wins, and leaves one admin_actions row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.system import Actor, Row, World, data, error


def disputed(world: World, price: int) -> tuple[Actor, Actor, Row, Row, Row]:
    """A funded, accepted task whose proof the poster rejected and the worker disputed."""
    poster, worker = world.register("poster"), world.worker()
    task, proof = world.proven_task(poster, worker, price=price)
    rejected = data(poster.post(f"/api/proofs/{proof['id']}/reject", json={"reason": "The shelf wobbles"}))
    assert rejected["state"] == "REJECTED" and rejected["task"]["state"] == "ACCEPTED"
    assert "PROOF_REJECTED" in worker.notification_types(task["id"])

    opened = data(worker.post(f"/api/tasks/{task['id']}/dispute",
                              json={"reason": "QUALITY_ISSUE", "description": "It is level; see the photo"}), 201)
    dispute = opened["dispute"]
    assert dispute["opened_by"] == worker.id and dispute["state"] == "OPEN"
    assert opened["task"]["state"] == "DISPUTED" and opened["escrow"]["state"] == "LOCKED_DISPUTE"
    # One dispute at a time; nobody moves the locked money by hand.
    error(poster.post(f"/api/tasks/{task['id']}/dispute", json={"reason": "OTHER", "description": "again"}),
          409, "CONFLICT")
    error(poster.post(f"/api/escrows/{task['escrow_id']}/refund", json={}), 409, "CONFLICT")
    assert "DISPUTE_OPENED" in poster.notification_types(task["id"])
    assert world.served.fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 0}
    return poster, worker, task, proof, dispute


@pytest.mark.parametrize("ruling,task_state,escrow_state,moved,xp", [
    ({"resolution": "HUSTLER_WINS"}, "COMPLETED", "RELEASED", {"transferred": 4250, "refunded": 0}, 50),
    ({"resolution": "CLIENT_WINS"}, "CANCELLED", "REFUNDED", {"transferred": 0, "refunded": 5000}, 0),
    # 60 % of 5000: release 3000 (worker paid 85 % of it, 2550), refund 2000, platform keeps 450.
    ({"resolution": "SPLIT", "split_percent": 60}, "CANCELLED", "REFUND_PARTIAL",
     {"transferred": 2550, "refunded": 2000}, 0),
], ids=["hustler_wins", "client_wins", "split_60"])
def test_dispute_ruling(world: World, ruling: dict[str, Any], task_state: str, escrow_state: str,
                        moved: dict[str, int], xp: int) -> None:
    poster, worker, task, proof, dispute = disputed(world, price=5000)
    admin = world.admin()
    body = ruling | {"notes": "Looked at both sides' photos"}

    # Only an admin rules, and with notes.
    error(poster.post(f"/api/disputes/{dispute['id']}/resolve", json=body), 403, "FORBIDDEN")
    error(worker.post(f"/api/disputes/{dispute['id']}/resolve", json=body), 403, "FORBIDDEN")
    error(admin.post(f"/api/disputes/{dispute['id']}/resolve", json=ruling), 400, "VALIDATION_ERROR")
    assert world.served.fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 0}

    resolved = data(admin.post(f"/api/disputes/{dispute['id']}/resolve", json=body))
    assert resolved["dispute"]["state"] == "RESOLVED" and resolved["dispute"]["resolution"] == ruling["resolution"]
    assert resolved["dispute"]["resolved_by"] == admin.id
    assert resolved["task"]["state"] == task_state and resolved["escrow"]["state"] == escrow_state
    # A second ruling is refused and moves nothing.
    error(admin.post(f"/api/disputes/{dispute['id']}/resolve", json=body), 409, "CONFLICT")

    assert data(poster.get(f"/api/tasks/{task['id']}"))["state"] == task_state
    escrow = data(worker.get(f"/api/tasks/{task['id']}/escrow"))
    assert escrow["state"] == escrow_state and escrow["amount"] == 5000
    if ruling["resolution"] == "SPLIT":
        assert (escrow["release_amount"], escrow["refund_amount"]) == (3000, 2000)
    world.settle(task["escrow_id"])
    assert world.served.fake.money_out(task["escrow_id"]) == moved
    shown = data(poster.get(f"/api/tasks/{task['id']}/dispute"))
    assert shown["id"] == dispute["id"] and shown["state"] == "RESOLVED"

    latest = data(poster.get(f"/api/tasks/{task['id']}/proof"))
    assert latest["id"] == proof["id"]
    assert latest["state"] == ("ACCEPTED" if ruling["resolution"] == "HUSTLER_WINS" else "REJECTED")

    rows = world.xp_rows(worker.id)
    assert [r["effective_xp"] for r in rows] == ([xp] if xp else [])
    assert data(worker.get("/api/users/me/xp"))["total_xp"] == xp
    assert world.xp_rows(poster.id) == []
    earned = {b["badge_type"] for b in data(worker.get("/api/users/me/badges"))["earned_badges"]}
    assert ("first-task" in earned) == (ruling["resolution"] == "HUSTLER_WINS")

    [action] = world.sql("SELECT * FROM admin_actions WHERE target_dispute_id = %s", (dispute["id"],))
    expected_action = {"HUSTLER_WINS": "RELEASE", "CLIENT_WINS": "REFUND", "SPLIT": "SPLIT"}[ruling["resolution"]]
    assert (str(action["admin_user_id"]), action["admin_role"], action["action_type"], action["result"]) == (
        admin.id, "admin", "DISPUTE_RESOLVE", expected_action)
    assert (str(action["target_task_id"]), str(action["target_escrow_id"])) == (task["id"], task["escrow_id"])
    assert action["action_details"]["resolution"] == ruling["resolution"]
    assert action["action_details"].get("split_percent") == ruling.get("split_percent")

    assert "DISPUTE_RESOLVED" in poster.notification_types(task["id"])
    assert "DISPUTE_RESOLVED" in worker.notification_types(task["id"])
    world.check_money()
