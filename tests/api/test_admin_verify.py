"""POST /api/admin/users/{user_id}/verify and the progress GET /api/users/me/trust-tier shows."""

from __future__ import annotations

import uuid

from tests.api.conftest import data, error


def test_admin_verifies_a_user_and_the_progress_shows_it(world, make_admin):
    make_admin(world.stranger["id"], can_modify_trust=True)
    before = data(world.client.get("/api/users/me/trust-tier", headers=world.wh))
    assert before["requirements_for_next"]["id_verified"] == {"required": True, "current": False}
    response = world.client.post(f"/api/admin/users/{world.worker['id']}/verify", json={"note": "ID card"},
                                  headers=world.sh)
    out = data(response)
    assert out["is_verified"] is True and out["trust"] == {"old_tier": 1, "new_tier": 1, "changed": False}
    after = data(world.client.get("/api/users/me/trust-tier", headers=world.wh))
    assert after["requirements_for_next"]["id_verified"]["current"] is True
    assert after["requirements_for_next"]["dispute_rate"] == {"required": None, "current": None}
    action = world.conn.execute("SELECT action_type, admin_user_id FROM admin_actions WHERE id = %s",
                                (out["admin_action_id"],)).fetchone()
    assert action == {"action_type": "USER_VERIFY", "admin_user_id": uuid.UUID(world.stranger["id"])}
    # No body at all is fine too.
    assert world.client.post(f"/api/admin/users/{world.worker['id']}/verify", headers=world.sh).status_code == 200


def test_verify_needs_an_admin_with_trust_rights(world, make_admin):
    path = f"/api/admin/users/{world.worker['id']}/verify"
    assert error(world.client.post(path, json={}))["code"] == "AUTH_REQUIRED"
    assert world.client.post(path, json={}, headers=world.ph).status_code == 403
    make_admin(world.poster["id"], can_modify_trust=False)
    assert world.client.post(path, json={}, headers=world.ph).status_code == 403
    make_admin(world.stranger["id"], can_modify_trust=True)
    long = world.client.post(path, json={"note": "x" * 501}, headers=world.sh)
    assert long.status_code == 400 and "note" in error(long)["details"]
    assert world.client.post(path, json={"tier": 4}, headers=world.sh).status_code == 400
    missing = world.client.post(f"/api/admin/users/{uuid.uuid4()}/verify", json={}, headers=world.sh)
    assert missing.status_code == 404 and error(missing)["code"] == "HX504"
    assert world.conn.execute("SELECT is_verified FROM users WHERE id = %s",
                              (world.worker["id"],)).fetchone()["is_verified"] is False
