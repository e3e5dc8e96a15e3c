"""/api/users: registration, profile, onboarding, XP, badges, trust tier, payout account."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from hustlexp.services import Services
from tests import factories
from tests.api.conftest import data, error
from tests.fakes.stripe_fake import FakeStripe
from tests.services import flows

Register = Callable[..., tuple[dict[str, Any], dict[str, str]]]


def assert_400(response: Any, *fields: str) -> None:
    assert response.status_code == 400, response.get_json()
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR"
    assert set(err["details"]) >= set(fields), err["details"]


# -- POST /api/users ----------------------------------------------------------------------

def test_register_creates_user_from_token_email(client: Any, auth: Any) -> None:
    response = client.post("/api/users", json={"full_name": "Ada Lovelace", "phone": "+15550100",
                                               "default_mode": "poster"},
                           headers=auth("uid-ada", "Ada@Example.test"))
    assert response.status_code == 201
    user = data(response)
    assert user["email"] == "ada@example.test"
    assert (user["full_name"], user["phone"], user["default_mode"]) == ("Ada Lovelace", "+15550100", "poster")
    assert (user["trust_tier"], user["xp_total"], user["current_level"]) == (1, 0, 1)
    assert user["account_status"] == "ACTIVE"
    assert user["onboarding_completed_at"] is None
    uuid.UUID(user["id"])


def test_register_defaults_to_worker_mode(client: Any, register: Register) -> None:
    user, _ = register(client)
    assert user["default_mode"] == "worker"


def test_register_needs_a_token(client: Any) -> None:
    response = client.post("/api/users", json={"full_name": "Nobody"})
    assert response.status_code == 401
    assert error(response)["code"] == "AUTH_REQUIRED"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "full_name"),
    ({"full_name": ""}, "full_name"),
    ({"full_name": "x" * 256}, "full_name"),
    ({"full_name": "   "}, "full_name"),
    ({"full_name": "Ok", "default_mode": "admin"}, "default_mode"),
    ({"full_name": "Ok", "phone": "call me"}, "phone"),
    ({"full_name": "Ok", "phone": "1" * 21}, "phone"),
    ({"full_name": "Ok", "email": "me@else.test"}, "email"),  # the email comes from the token only
])
def test_register_rejects_invalid_input(client: Any, auth: Any, body: dict[str, Any], field: str) -> None:
    assert_400(client.post("/api/users", json=body, headers=auth("uid-bad-input")), field)


def test_register_twice_is_409(client: Any, register: Register, auth: Any) -> None:
    register(client, "uid-twice")
    again = client.post("/api/users", json={"full_name": "Again"}, headers=auth("uid-twice"))
    assert again.status_code == 409
    assert error(again)["code"] == "CONFLICT"


def test_register_with_taken_email_is_409(client: Any, register: Register, auth: Any) -> None:
    register(client, "uid-first", email="shared@example.test")
    response = client.post("/api/users", json={"full_name": "Second"},
                           headers=auth("uid-second", "shared@example.test"))
    assert response.status_code == 409
    assert error(response)["details"] == {"email": ["already registered"]}


def test_register_without_email_claim_is_a_service_validation_error(client: Any, token_for: Any) -> None:
    token = token_for("uid-phone-only", email="")
    response = client.post("/api/users", json={"full_name": "Phone Only"},
                           headers={"Authorization": f"Bearer {token}"})
    assert_400(response, "email")


# -- GET / PATCH /api/users/me ----------------------------------------------------------

def test_get_me_returns_profile(client: Any, register: Register) -> None:
    user, headers = register(client, "uid-me", full_name="Grace Hopper")
    response = client.get("/api/users/me", headers=headers)
    assert response.status_code == 200
    me = data(response)
    assert me == user
    assert set(me) >= {"id", "email", "phone", "full_name", "avatar_url", "default_mode", "trust_tier",
                       "xp_total", "current_level", "current_streak", "is_verified", "verified_at",
                       "onboarding_completed_at", "created_at"}


def test_get_me_needs_a_token(client: Any) -> None:
    assert error(client.get("/api/users/me"))["code"] == "AUTH_REQUIRED"


def test_patch_me_updates_profile(client: Any, register: Register) -> None:
    _, headers = register(client)
    response = client.patch("/api/users/me", headers=headers, json={
        "full_name": "New Name", "avatar_url": "https://cdn.example.test/a.png", "default_mode": "poster"})
    assert response.status_code == 200
    updated = data(response)
    assert (updated["full_name"], updated["avatar_url"], updated["default_mode"]) == (
        "New Name", "https://cdn.example.test/a.png", "poster")
    assert set(updated) == {"id", "full_name", "avatar_url", "default_mode", "phone", "updated_at"}
    cleared = data(client.patch("/api/users/me", headers=headers, json={"avatar_url": None}))
    assert cleared["avatar_url"] is None
    assert data(client.get("/api/users/me", headers=headers))["full_name"] == "New Name"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "_schema"),
    ({"full_name": ""}, "full_name"),
    ({"avatar_url": "not a url"}, "avatar_url"),
    ({"avatar_url": "https://x.test/" + "a" * 500}, "avatar_url"),
    ({"default_mode": "boss"}, "default_mode"),
    ({"email": "new@example.test"}, "email"),
    ({"trust_tier": 4}, "trust_tier"),
])
def test_patch_me_rejects_invalid_input(client: Any, register: Register, body: dict[str, Any],
                                        field: str) -> None:
    _, headers = register(client)
    assert_400(client.patch("/api/users/me", json=body, headers=headers), field)


def test_patch_me_needs_a_token(client: Any) -> None:
    assert client.patch("/api/users/me", json={"full_name": "X"}).status_code == 401


def test_patch_me_phone_taken_is_409(client: Any, register: Register) -> None:
    register(client, phone="+15550111")
    _, headers = register(client)
    response = client.patch("/api/users/me", json={"phone": "+15550111"}, headers=headers)
    assert response.status_code == 409
    assert error(response)["details"] == {"phone": ["already registered"]}


# -- onboarding -----------------------------------------------------------------------------

def test_complete_onboarding_is_idempotent(client: Any, register: Register) -> None:
    _, headers = register(client)
    first = client.post("/api/users/me/onboarding/complete", headers=headers)
    assert first.status_code == 200
    stamped = data(first)["onboarding_completed_at"]
    assert stamped is not None
    again = client.post("/api/users/me/onboarding/complete", headers=headers, json={})
    assert data(again)["onboarding_completed_at"] == stamped


def test_complete_onboarding_with_answers_sets_the_role(client: Any, register: Register) -> None:
    _, headers = register(client)
    response = client.post("/api/users/me/onboarding/complete", headers=headers,
                           json={"role_confidence_worker": 0.2, "role_confidence_poster": 0.9})
    assert data(response)["default_mode"] == "poster"


def test_complete_onboarding_rejects_invalid_input(client: Any, register: Register) -> None:
    _, headers = register(client)
    assert_400(client.post("/api/users/me/onboarding/complete", headers=headers,
                           json={"role_confidence_worker": 1.5}), "role_confidence_worker")
    assert_400(client.post("/api/users/me/onboarding/complete", headers=headers,
                           json={"skip": True}), "skip")


def test_reonboarding_within_a_week_is_409(client: Any, register: Register) -> None:
    _, headers = register(client)
    client.post("/api/users/me/onboarding/complete", headers=headers,
                json={"role_confidence_worker": 0.9, "role_confidence_poster": 0.1})
    response = client.post("/api/users/me/onboarding/complete", headers=headers,
                           json={"role_confidence_worker": 0.1, "role_confidence_poster": 0.9})
    assert response.status_code == 409
    assert error(response)["code"] == "CONFLICT"


def test_complete_onboarding_needs_a_token(client: Any) -> None:
    assert client.post("/api/users/me/onboarding/complete").status_code == 401


# -- XP, badges, trust tier -------------------------------------------------------------

@pytest.fixture
def worker_with_completed_task(client: Any, register: Register, services: Services,
                               stripe_fake: FakeStripe) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """A registered worker who finished one task through the real chain (XP and first badge)."""
    user, headers = register(client)
    assert client.put("/api/users/me/payout-account", json={"stripe_connect_id": "acct_Worker1"},
                      headers=headers).status_code == 200
    ids = flows.completed_task(services, stripe_fake, worker=uuid.UUID(user["id"]), price=4500)
    return user, headers, ids


def test_get_my_xp_after_a_completed_task(client: Any, worker_with_completed_task: Any) -> None:
    _, headers, ids = worker_with_completed_task
    response = client.get("/api/users/me/xp", headers=headers)
    assert response.status_code == 200
    xp = data(response)
    assert xp["total_xp"] == 45
    assert xp["current_level"] == 1
    assert xp["level_progress"] == {"current_threshold": 0, "next_threshold": 100, "progress_percent": 45}
    [entry] = xp["recent_entries"]
    assert entry["task_id"] == str(ids["task"])
    assert (entry["amount"], entry["effective_amount"], entry["balance_after"]) == (45, 45, 45)
    assert entry["trust_multiplier"] == 1.0


def test_get_my_xp_limit(client: Any, register: Register) -> None:
    _, headers = register(client)
    fresh = data(client.get("/api/users/me/xp?limit=1", headers=headers))
    assert fresh["total_xp"] == 0
    assert fresh["recent_entries"] == []
    for limit in ("0", "101", "ten"):
        assert_400(client.get(f"/api/users/me/xp?limit={limit}", headers=headers), "limit")


def test_get_my_xp_needs_a_token(client: Any) -> None:
    assert client.get("/api/users/me/xp").status_code == 401


def test_get_my_badges(client: Any, worker_with_completed_task: Any) -> None:
    _, headers, _ = worker_with_completed_task
    badges = data(client.get("/api/users/me/badges", headers=headers))
    assert [b["slug"] for b in badges["earned_badges"]] == ["first-task"]
    assert badges["total_earned"] == 1
    assert badges["total_available"] == len(badges["available_badges"]) + 1
    assert "first-task" not in {b["slug"] for b in badges["available_badges"]}


def test_get_another_users_badges(client: Any, register: Register, conn: Any) -> None:
    other, _ = register(client)
    factories.badge(conn, other["id"], "streak-3")
    _, headers = register(client)
    response = client.get(f"/api/users/{other['id']}/badges", headers=headers)
    assert response.status_code == 200
    assert [b["slug"] for b in data(response)["earned_badges"]] == ["streak-3"]


def test_badges_of_unknown_user_is_hx504_and_bad_id_is_404(client: Any, register: Register) -> None:
    _, headers = register(client)
    unknown = client.get(f"/api/users/{uuid.uuid4()}/badges", headers=headers)
    assert unknown.status_code == 404
    assert error(unknown)["code"] == "HX504"
    malformed = client.get("/api/users/not-a-uuid/badges", headers=headers)
    assert malformed.status_code == 404
    assert error(malformed)["code"] == "NOT_FOUND"


def test_badges_need_a_token(client: Any) -> None:
    assert client.get("/api/users/me/badges").status_code == 401
    assert client.get(f"/api/users/{uuid.uuid4()}/badges").status_code == 401


def test_get_my_trust_tier(client: Any, register: Register) -> None:
    _, headers = register(client)
    response = client.get("/api/users/me/trust-tier", headers=headers)
    assert response.status_code == 200
    tier = data(response)
    assert (tier["current_tier"], tier["tier_name"], tier["next_tier"]) == (1, "ROOKIE", 2)
    assert tier["requirements_for_next"]["tasks_completed"] == {"required": 5, "current": 0}
    assert tier["tier_benefits"]


def test_trust_tier_at_elite_has_no_next(client: Any, register: Register, conn: Any) -> None:
    user, headers = register(client)
    factories.trust_change(conn, user["id"], 4)
    tier = data(client.get("/api/users/me/trust-tier", headers=headers))
    assert (tier["current_tier"], tier["next_tier"], tier["requirements_for_next"]) == (4, None, None)


def test_trust_tier_needs_a_token(client: Any) -> None:
    assert client.get("/api/users/me/trust-tier").status_code == 401


# -- payout account -------------------------------------------------------------------------

def test_put_payout_account(client: Any, register: Register, services: Services) -> None:
    user, headers = register(client)
    response = client.put("/api/users/me/payout-account", json={"stripe_connect_id": "acct_1Abc"},
                          headers=headers)
    assert response.status_code == 200
    assert data(response) == {"id": user["id"], "stripe_connect_id": "acct_1Abc"}
    assert flows.row(services, "SELECT stripe_connect_id FROM users WHERE id = %s",
                     user["id"]) == {"stripe_connect_id": "acct_1Abc"}


def test_put_payout_account_rejects_invalid_input(client: Any, register: Register) -> None:
    _, headers = register(client)
    for body, field in (({}, "stripe_connect_id"), ({"stripe_connect_id": "cus_123"}, "stripe_connect_id"),
                        ({"stripe_connect_id": "acct_1", "bank": "x"}, "bank")):
        assert_400(client.put("/api/users/me/payout-account", json=body, headers=headers), field)


def test_put_payout_account_needs_a_token(client: Any) -> None:
    assert client.put("/api/users/me/payout-account", json={"stripe_connect_id": "acct_1"}).status_code == 401
