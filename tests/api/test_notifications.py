"""/api/notifications: the caller's inbox, marking read, and preferences."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from hustlexp.services import Services
from tests.api.conftest import data, error

Register = Callable[..., tuple[dict[str, Any], dict[str, str]]]


def assert_400(response: Any, *fields: str) -> None:
    assert response.status_code == 400, response.get_json()
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR"
    assert set(err["details"]) >= set(fields), err["details"]


def notify(services: Services, user_id: Any, xp: int) -> dict[str, Any]:
    row: dict[str, Any] = services.notifications.notify(
        uuid.UUID(user_id), "XP_EARNED", metadata={"effective_xp": xp}).unwrap()
    return row


@pytest.fixture
def inbox(client: Any, register: Register, services: Services) -> tuple[dict[str, Any], dict[str, str], list[Any]]:
    """A user with three notifications (oldest first)."""
    user, headers = register(client)
    rows = [notify(services, user["id"], xp) for xp in (10, 20, 30)]
    return user, headers, rows


# -- GET /api/notifications -------------------------------------------------------------

def test_list_newest_first_with_counts(client: Any, inbox: Any) -> None:
    user, headers, rows = inbox
    response = client.get("/api/notifications", headers=headers)
    assert response.status_code == 200
    page = data(response)
    assert [n["id"] for n in page["notifications"]] == [str(r["id"]) for r in reversed(rows)]
    assert (page["unread_count"], page["total"], page["has_more"]) == (3, 3, False)
    first = page["notifications"][0]
    assert first["user_id"] == user["id"]
    assert (first["type"], first["title"], first["priority"], first["read"]) == ("XP_EARNED", "+30 XP", "LOW", False)
    assert first["deep_link"] == f"hustlexp://profile/{user['id']}"


def test_list_pages_and_unread_only(client: Any, inbox: Any) -> None:
    _, headers, rows = inbox
    page = data(client.get("/api/notifications?limit=2", headers=headers))
    assert len(page["notifications"]) == 2
    assert page["has_more"] is True
    rest = data(client.get("/api/notifications?limit=2&offset=2", headers=headers))
    assert [n["id"] for n in rest["notifications"]] == [str(rows[0]["id"])]
    assert rest["has_more"] is False
    client.post("/api/notifications/read", json={"notification_ids": [str(rows[2]["id"])]}, headers=headers)
    unread = data(client.get("/api/notifications?unread_only=true", headers=headers))
    assert {n["id"] for n in unread["notifications"]} == {str(rows[0]["id"]), str(rows[1]["id"])}
    assert (unread["unread_count"], unread["total"]) == (2, 2)


def test_list_shows_only_the_callers_notifications(client: Any, inbox: Any, register: Register) -> None:
    _, other_headers = register(client)
    page = data(client.get("/api/notifications", headers=other_headers))
    assert (page["notifications"], page["total"], page["unread_count"]) == ([], 0, 0)


@pytest.mark.parametrize(("query", "field"), [("limit=0", "limit"), ("limit=101", "limit"),
                                              ("offset=-1", "offset"), ("unread_only=maybe", "unread_only"),
                                              ("page=2", "page")])
def test_list_rejects_invalid_query(client: Any, register: Register, query: str, field: str) -> None:
    _, headers = register(client)
    assert_400(client.get(f"/api/notifications?{query}", headers=headers), field)


def test_list_needs_a_token(client: Any) -> None:
    response = client.get("/api/notifications")
    assert response.status_code == 401
    assert error(response)["code"] == "AUTH_REQUIRED"


# -- POST /api/notifications/read and /read-all --------------------------------------------

def test_mark_read_marks_only_the_callers_own(client: Any, inbox: Any, register: Register) -> None:
    _, headers, rows = inbox
    _, intruder = register(client)
    ids = [str(r["id"]) for r in rows[:2]]
    stolen = client.post("/api/notifications/read", json={"notification_ids": ids}, headers=intruder)
    assert stolen.status_code == 200
    assert data(stolen) == {"marked_count": 0}
    assert data(client.get("/api/notifications", headers=headers))["unread_count"] == 3

    marked = client.post("/api/notifications/read", json={"notification_ids": ids}, headers=headers)
    assert data(marked) == {"marked_count": 2}
    again = client.post("/api/notifications/read", json={"notification_ids": ids}, headers=headers)
    assert data(again) == {"marked_count": 0}
    listed = data(client.get("/api/notifications", headers=headers))["notifications"]
    assert {n["id"]: n["read"] for n in listed} == {ids[0]: True, ids[1]: True, str(rows[2]["id"]): False}


@pytest.mark.parametrize(("body", "field"), [
    ({}, "notification_ids"),
    ({"notification_ids": []}, "notification_ids"),
    ({"notification_ids": ["not-a-uuid"]}, "notification_ids"),
    ({"notification_ids": [str(uuid.uuid4()) for _ in range(501)]}, "notification_ids"),
    ({"notification_ids": [str(uuid.uuid4())], "all": True}, "all"),
])
def test_mark_read_rejects_invalid_input(client: Any, register: Register, body: dict[str, Any],
                                         field: str) -> None:
    _, headers = register(client)
    assert_400(client.post("/api/notifications/read", json=body, headers=headers), field)


def test_mark_all_read(client: Any, inbox: Any, register: Register) -> None:
    _, headers, _ = inbox
    _, other = register(client)
    assert data(client.post("/api/notifications/read-all", headers=other)) == {"marked_count": 0}
    assert data(client.post("/api/notifications/read-all", headers=headers)) == {"marked_count": 3}
    assert data(client.get("/api/notifications", headers=headers))["unread_count"] == 0


def test_mark_read_needs_a_token(client: Any) -> None:
    assert client.post("/api/notifications/read", json={"notification_ids": [str(uuid.uuid4())]}).status_code == 401
    assert client.post("/api/notifications/read-all").status_code == 401


def test_paused_user_may_still_clear_the_inbox(client: Any, inbox: Any, conn: Any) -> None:
    user, headers, _ = inbox
    conn.execute("UPDATE users SET account_status = 'PAUSED', paused_at = now() WHERE id = %s", (user["id"],))
    assert data(client.post("/api/notifications/read-all", headers=headers)) == {"marked_count": 3}


# -- preferences ----------------------------------------------------------------------------

DEFAULTS = {
    "push_enabled": True, "email_enabled": False, "sms_enabled": False,
    "quiet_hours": {"enabled": True, "start": "22:00", "end": "07:00", "timezone": "UTC"},
    "categories": {"task_updates": True, "messages": True, "xp_badges": True, "marketing": False},
    "read_receipts": True,
}


def test_get_preferences_defaults(client: Any, register: Register) -> None:
    _, headers = register(client)
    response = client.get("/api/notifications/preferences", headers=headers)
    assert response.status_code == 200
    assert data(response) == DEFAULTS


def test_patch_preferences_is_partial_and_returns_everything(client: Any, register: Register) -> None:
    _, headers = register(client)
    response = client.patch("/api/notifications/preferences", headers=headers, json={
        "email_enabled": True, "quiet_hours": {"start": "23:30", "timezone": "America/New_York"},
        "categories": {"marketing": True}})
    assert response.status_code == 200
    expected = DEFAULTS | {"email_enabled": True,
                           "quiet_hours": DEFAULTS["quiet_hours"] | {"start": "23:30",
                                                                     "timezone": "America/New_York"},
                           "categories": DEFAULTS["categories"] | {"marketing": True}}
    assert data(response) == expected
    assert data(client.get("/api/notifications/preferences", headers=headers)) == expected


def test_preferences_are_per_user(client: Any, register: Register) -> None:
    _, mine = register(client)
    _, theirs = register(client)
    client.patch("/api/notifications/preferences", headers=mine, json={"push_enabled": False})
    assert data(client.get("/api/notifications/preferences", headers=theirs)) == DEFAULTS


@pytest.mark.parametrize(("body", "field"), [
    ({}, "_schema"),
    ({"push_enabled": "yes"}, "push_enabled"),
    ({"sms_enabled": 1}, "sms_enabled"),
    ({"quiet_hours": {"start": "25:00"}}, "quiet_hours"),
    ({"quiet_hours": {"dnd": True}}, "quiet_hours"),
    ({"categories": {"spam": True}}, "categories"),
    ({"vibrate": True}, "vibrate"),
])
def test_patch_preferences_rejects_invalid_input(client: Any, register: Register, body: dict[str, Any],
                                                 field: str) -> None:
    _, headers = register(client)
    assert_400(client.patch("/api/notifications/preferences", json=body, headers=headers), field)


def test_patch_preferences_unknown_timezone_is_400(client: Any, register: Register) -> None:
    _, headers = register(client)
    response = client.patch("/api/notifications/preferences", headers=headers,
                            json={"quiet_hours": {"timezone": "Mars/Olympus_Mons"}})
    assert_400(response, "quiet_hours")
    assert "timezone" in response.get_json()["error"]["details"]["quiet_hours"]


def test_preferences_need_a_token(client: Any) -> None:
    assert client.get("/api/notifications/preferences").status_code == 401
    assert client.patch("/api/notifications/preferences", json={"push_enabled": False}).status_code == 401
