"""Dispute routes: opening, reading and the admin's ruling."""

from __future__ import annotations

import uuid

from tests.api.conftest import data, error


def test_reject_then_dispute_then_split(world, make_admin):
    task, proof = world.submitted(price=5000)
    assert world.client.post(f"/api/proofs/{proof['id']}/reject", json={}, headers=world.ph).status_code == 400
    rejected = data(world.client.post(f"/api/proofs/{proof['id']}/reject", json={"reason": "Too short a walk"},
                                      headers=world.ph))
    assert rejected["state"] == "REJECTED" and rejected["task"]["state"] == "ACCEPTED"
    assert world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.sh,
                             json={"reason": "OTHER", "description": "x"}).status_code == 403
    assert world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.wh,
                             json={"reason": "MEH", "description": "x"}).status_code == 400
    opened = world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.wh,
                               json={"reason": "QUALITY_ISSUE", "description": "I walked 30 minutes"})
    assert opened.status_code == 201
    dispute = data(opened)["dispute"]
    assert dispute["opened_by"] == world.worker["id"] and data(opened)["escrow"]["state"] == "LOCKED_DISPUTE"
    shown = data(world.client.get(f"/api/tasks/{task['id']}/dispute", headers=world.ph))
    assert shown["id"] == dispute["id"] and shown["state"] == "OPEN"
    ruling = {"resolution": "SPLIT", "split_percent": 60, "notes": "Half the walk"}
    assert world.client.post(f"/api/disputes/{dispute['id']}/resolve", json=ruling, headers=world.ph).status_code == 403
    make_admin(world.stranger["id"], can_resolve_disputes=True)
    assert world.client.post(f"/api/disputes/{dispute['id']}/resolve", headers=world.sh,
                             json={"resolution": "SPLIT", "notes": "x"}).status_code == 400
    resolved = data(world.client.post(f"/api/disputes/{dispute['id']}/resolve", json=ruling, headers=world.sh))
    assert resolved["dispute"]["state"] == "RESOLVED" and resolved["escrow"]["state"] == "REFUND_PARTIAL"
    assert world.send_money(resolved["escrow"]["id"]) == {"transferred": 2550, "refunded": 2000}
    again = world.client.post(f"/api/disputes/{dispute['id']}/resolve", json=ruling, headers=world.sh)
    assert again.status_code == 409
    action = world.conn.execute("SELECT result FROM admin_actions WHERE target_dispute_id = %s",
                                (dispute["id"],)).fetchone()
    assert action["result"] == "SPLIT"


def test_dispute_reads_and_hustler_wins(world, make_admin):
    task, _ = world.submitted(price=4000)
    assert world.client.post(f"/api/tasks/{task['id']}/dispute",
                             json={"reason": "OTHER", "description": "x"}).status_code == 401
    assert world.client.get(f"/api/tasks/{task['id']}/dispute", headers=world.ph).status_code == 404
    opened = data(world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.ph,
                                    json={"reason": "PROOF_INSUFFICIENT", "description": "Photo is dark"}))
    dispute_id = opened["dispute"]["id"]
    again = world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.wh,
                              json={"reason": "OTHER", "description": "me too"})
    assert again.status_code == 409
    shown = data(world.client.get(f"/api/disputes/{dispute_id}", headers=world.wh))
    assert shown["reason"] == "PROOF_INSUFFICIENT" and shown["evidence"] == []
    assert world.client.get(f"/api/disputes/{dispute_id}", headers=world.sh).status_code == 403
    assert world.client.get(f"/api/disputes/{uuid.uuid4()}", headers=world.ph).status_code == 404
    make_admin(world.stranger["id"], can_resolve_disputes=True)
    assert data(world.client.get(f"/api/disputes/{dispute_id}", headers=world.sh))["id"] == dispute_id
    ruling = world.client.post(f"/api/disputes/{dispute_id}/resolve", headers=world.sh,
                               json={"resolution": "HUSTLER_WINS", "notes": "The photo shows the work",
                                     "split_percent": 50})
    assert ruling.status_code == 400 and "split_percent" in error(ruling)["details"]
    won = data(world.client.post(f"/api/disputes/{dispute_id}/resolve", headers=world.sh,
                                 json={"resolution": "HUSTLER_WINS", "notes": "The photo shows the work"}))
    assert won["task"]["state"] == "COMPLETED" and won["escrow"]["state"] == "RELEASED"
    assert won["xp_awarded"]["base_xp"] == 40
    assert world.send_money(won["escrow"]["id"]) == {"transferred": 3400, "refunded": 0}
    assert world.client.post(f"/api/disputes/{uuid.uuid4()}/resolve", headers=world.sh,
                             json={"resolution": "CLIENT_WINS", "notes": "x"}).status_code == 404
