"""GET /api/users/{user_id}: the public profile any signed-in user may read."""

from __future__ import annotations

import uuid

from tests.api.conftest import data, error

PRIVATE = {"email", "phone", "firebase_uid", "location", "location_lat", "location_lng", "stripe_connect_id",
           "stripe_customer_id", "xp_total", "balance", "earnings"}


def keys(value):
    """Every key anywhere in a JSON document."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def test_profile_shows_reputation_and_nothing_private(world):
    world.conn.execute("UPDATE users SET phone = '+15550100', is_verified = true WHERE id = %s",
                       (world.worker["id"],))
    task = world.completed()
    world.client.post(f"/api/tasks/{task['id']}/rating", json={"stars": 5, "comment": "Great"}, headers=world.ph)
    world.client.post(f"/api/tasks/{task['id']}/rating", json={"stars": 4}, headers=world.wh)
    response = world.client.get(f"/api/users/{world.worker['id']}", headers=world.sh)
    profile = data(response)
    assert profile["id"] == world.worker["id"] and profile["full_name"] == world.worker["full_name"]
    assert profile["tasks_completed"] == 1 and profile["tasks_posted_completed"] == 0
    assert profile["is_verified"] is True and profile["tier_name"] == "ROOKIE"
    assert profile["rating"]["total_ratings"] == 1 and profile["rating"]["average_rating"] == 5.0
    assert "first-task" in {b["badge_type"] for b in profile["badges"]}
    assert profile["member_since"] == world.worker["created_at"]
    assert not keys(profile) & PRIVATE
    raw = response.get_data(as_text=True)
    for secret in (world.worker["email"], "+15550100", "acct_worker"):
        assert secret not in raw
    poster = data(world.client.get(f"/api/users/{world.poster['id']}", headers=world.wh))
    assert poster["tasks_posted_completed"] == 1 and poster["rating"]["average_rating"] == 4.0


def test_profile_needs_a_token_and_a_real_user(world):
    response = world.client.get(f"/api/users/{world.worker['id']}")
    assert response.status_code == 401 and error(response)["code"] == "AUTH_REQUIRED"
    missing = world.client.get(f"/api/users/{uuid.uuid4()}", headers=world.ph)
    assert missing.status_code == 404 and error(missing)["code"] == "HX504"
    assert world.client.get("/api/users/not-a-uuid", headers=world.ph).status_code == 404
