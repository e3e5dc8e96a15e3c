"""GET /api/conversations and GET /api/messages/unread-count over the app."""

from __future__ import annotations

import pytest

from tests.api.conftest import data, error


def test_inbox_over_the_api(world):
    task = world.accepted()
    sent = world.client.post(f"/api/tasks/{task['id']}/messages", headers=world.ph,
                             json={"message_type": "TEXT", "content": "Key under the mat"})
    assert sent.status_code == 201
    inbox = data(world.client.get("/api/conversations", headers=world.wh))
    [conversation] = inbox["conversations"]
    assert conversation["task_id"] == task["id"] and conversation["other_user"]["id"] == world.poster["id"]
    assert conversation["last_message"]["content"] == "Key under the mat" and conversation["unread_count"] == 1
    assert inbox["has_more"] is False and inbox["next_cursor"] is None
    assert data(world.client.get("/api/messages/unread-count", headers=world.wh)) == {
        "unread_count": 1, "conversations_with_unread": 1}
    assert data(world.client.get("/api/conversations", headers=world.sh))["conversations"] == []
    assert data(world.client.get("/api/messages/unread-count", headers=world.ph))["unread_count"] == 0


def test_inbox_needs_a_token(world):
    for path in ("/api/conversations", "/api/messages/unread-count"):
        response = world.client.get(path)
        assert response.status_code == 401 and error(response)["code"] == "AUTH_REQUIRED"


@pytest.mark.parametrize(("query", "field"), [("limit=0", "limit"), ("limit=101", "limit"), ("cursor=%40%40", "cursor"),
                                              ("offset=1", "offset")])
def test_bad_inbox_query(world, query, field):
    response = world.client.get(f"/api/conversations?{query}", headers=world.wh)
    assert response.status_code == 400 and field in error(response)["details"]
