"""The caller's progress routes: XP history (keyset), trust history, badge animation shown and
the first-XP celebration flag."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import data, error


def test_xp_history_and_celebration_after_a_completion(world):
    before = data(world.client.get("/api/users/me/xp/first-celebration", headers=world.wh))
    assert before == {"should_show": False, "shown_at": None}
    early = world.client.post("/api/users/me/xp/first-celebration", headers=world.wh)
    assert early.status_code == 409 and error(early)["code"] == "CONFLICT"
    world.completed()
    world.completed(price=6000)
    first = data(world.client.get("/api/users/me/xp/history?limit=1", headers=world.wh))
    assert first["total"] == 2 and first["has_more"] is True and first["entries"][0]["amount"] == 60
    rest = data(world.client.get(f"/api/users/me/xp/history?limit=1&before={first['next_before']}",
                                 headers=world.wh))
    assert rest["entries"][0]["amount"] == 45 and rest["has_more"] is False and rest["next_before"] is None
    assert data(world.client.get("/api/users/me/xp/first-celebration", headers=world.wh))["should_show"] is True
    shown = data(world.client.post("/api/users/me/xp/first-celebration", headers=world.wh))
    assert shown["should_show"] is False and shown["shown_at"] is not None
    again = data(world.client.post("/api/users/me/xp/first-celebration", headers=world.wh))
    assert again["shown_at"] == shown["shown_at"]


def test_badge_animation_shown_once_and_only_for_its_owner(world):
    world.completed()
    badge = data(world.client.get("/api/users/me/badges", headers=world.wh))["earned_badges"][0]
    assert badge["animation_shown_at"] is None
    path = f"/api/users/me/badges/{badge['id']}/animation-shown"
    assert world.client.post(path, headers=world.ph).status_code == 404
    first = data(world.client.post(path, headers=world.wh))
    assert first["animation_shown_at"] is not None
    assert data(world.client.post(path, headers=world.wh))["animation_shown_at"] == first["animation_shown_at"]
    unknown = f"/api/users/me/badges/{uuid.uuid4()}/animation-shown"
    assert world.client.post(unknown, headers=world.wh).status_code == 404


def test_trust_history_lists_changes(world):
    world.conn.execute("UPDATE users SET trust_tier = 2 WHERE id = %s", (world.worker["id"],))
    page = data(world.client.get("/api/users/me/trust-history?limit=5", headers=world.wh))
    assert page["total"] == 1 and page["entries"][0]["new_tier"] == 2 and page["has_more"] is False
    assert data(world.client.get("/api/users/me/trust-history", headers=world.ph))["entries"] == []


@pytest.mark.parametrize("path", ["/api/users/me/xp/history", "/api/users/me/trust-history",
                                  "/api/users/me/xp/first-celebration"])
def test_progress_routes_need_a_token(world, path):
    response = world.client.get(path)
    assert response.status_code == 401 and error(response)["code"] == "AUTH_REQUIRED"


@pytest.mark.parametrize(("path", "field"), [
    ("/api/users/me/xp/history?limit=0", "limit"), ("/api/users/me/xp/history?before=abc", "before"),
    ("/api/users/me/xp/history?offset=2", "offset"), ("/api/users/me/trust-history?limit=101", "limit"),
    ("/api/users/me/trust-history?offset=-1", "offset"),
])
def test_bad_progress_queries(world, path, field):
    response = world.client.get(path, headers=world.wh)
    assert response.status_code == 400 and field in error(response)["details"]


def test_unknown_before_is_a_404(world):
    response = world.client.get(f"/api/users/me/xp/history?before={uuid.uuid4()}", headers=world.wh)
    assert response.status_code == 404 and "before" in error(response)["details"]
