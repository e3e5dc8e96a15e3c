"""/api/tasks/{id}/messages: the task thread between poster and worker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest

from hustlexp.services import Services
from tests.api import uploading
from tests.api.conftest import data, error
from tests.fakes.stripe_fake import FakeStripe
from tests.images import JPEG
from tests.services import flows

Register = Callable[..., tuple[dict[str, Any], dict[str, str]]]
Headers = dict[str, str]


def assert_400(response: Any, *fields: str, code: str = "VALIDATION_ERROR") -> None:
    assert response.status_code == 400, response.get_json()
    err = error(response)
    assert err["code"] == code
    assert set(err["details"]) >= set(fields), err["details"]


class Thread:
    """A task between a registered poster and worker, and the URLs of its thread."""

    def __init__(self, task_id: Any, poster: dict[str, Any], poster_headers: Headers,
                 worker: dict[str, Any], worker_headers: Headers) -> None:
        self.task_id = task_id
        self.poster, self.poster_headers = poster, poster_headers
        self.worker, self.worker_headers = worker, worker_headers
        self.url = f"/api/tasks/{task_id}/messages"


@pytest.fixture
def open_task(client: Any, register: Register, services: Services, stripe_fake: FakeStripe) -> Thread:
    poster, poster_headers = register(client)
    worker, worker_headers = register(client)
    task = flows.post(services, UUID(poster["id"]))
    flows.fund(services, stripe_fake, task)
    return Thread(task["id"], poster, poster_headers, worker, worker_headers)


@pytest.fixture
def thread(open_task: Thread, services: Services) -> Thread:
    services.tasks.accept(open_task.task_id, UUID(open_task.worker["id"])).unwrap()
    return open_task


def send(client: Any, thread: Thread, headers: Headers, **body: Any) -> Any:
    """POST a message: TEXT "hi" unless told otherwise; a field given as None is left out."""
    payload = {"message_type": "TEXT", "content": "hi"} | body
    return client.post(thread.url, json={k: v for k, v in payload.items() if v is not None}, headers=headers)


# -- POST /api/tasks/{id}/messages --------------------------------------------------------

def test_send_text_reaches_the_other_participant(client: Any, thread: Thread) -> None:
    response = send(client, thread, thread.worker_headers, content="On my way, 10 minutes")
    assert response.status_code == 201
    message = data(response)
    assert (message["sender_id"], message["receiver_id"]) == (thread.worker["id"], thread.poster["id"])
    assert (message["message_type"], message["content"], message["status"]) == ("TEXT", "On my way, 10 minutes",
                                                                                "sent")
    assert message["task_id"] == str(thread.task_id)
    inbox = data(client.get("/api/notifications", headers=thread.poster_headers))["notifications"]
    assert any(n["type"] == "NEW_MESSAGE" and n["body"] == "On my way, 10 minutes" for n in inbox)


def test_send_auto_photo_and_location(client: Any, thread: Thread) -> None:
    auto = data(send(client, thread, thread.worker_headers, message_type="AUTO", content=None,
                     auto_message_template="running_late"))
    assert (auto["auto_message_template"], auto["content"]) == ("running_late",
                                                                "Running a little late. I'll be there soon.")
    keys = [uploading.upload(client, thread.worker_headers, "messages", thread.task_id)["upload"]["storage_key"]
            for _ in range(2)]
    photo = data(send(client, thread, thread.worker_headers, message_type="PHOTO", content=None, photo_keys=keys))
    assert (photo["photo_count"], photo["photo_keys"]) == (2, keys)
    # The poster reads them through the signed URLs of the thread.
    shown = data(client.get(thread.url, headers=thread.poster_headers))["messages"][0]
    assert len(shown["photo_urls"]) == 2
    for url in shown["photo_urls"]:
        parts = urlsplit(url)
        assert client.get(f"{parts.path}?{parts.query}").data == JPEG
    made_up = send(client, thread, thread.worker_headers, message_type="PHOTO", content=None,
                   photo_keys=["messages/a.jpg"])
    assert_400(made_up, "photo_keys")
    location = data(send(client, thread, thread.worker_headers, message_type="LOCATION", content=None,
                         location={"lat": 40.7128, "lng": -74.006}))
    assert (location["location"]["lat"], location["location"]["lng"]) == (40.7128, -74.006)
    assert location["location"]["expires_at"] is not None


@pytest.mark.parametrize(("body", "field"), [
    ({"message_type": None}, "message_type"),
    ({"message_type": "VIDEO"}, "message_type"),
    ({"content": 42}, "content"),
    ({"receiver_id": str(uuid.uuid4())}, "receiver_id"),
    ({"message_type": "AUTO", "auto_message_template": "see_you"}, "auto_message_template"),
    ({"message_type": "LOCATION", "content": None, "location": {"lat": 91, "lng": 0}}, "location"),
])
def test_send_rejects_invalid_input(client: Any, thread: Thread, body: dict[str, Any], field: str) -> None:
    payload = {"message_type": "TEXT", "content": "hi"} | body
    payload = {k: v for k, v in payload.items() if v is not None}
    assert_400(client.post(thread.url, json=payload, headers=thread.worker_headers), field)


def test_send_message_limits_keep_their_codes(client: Any, thread: Thread) -> None:
    assert_400(send(client, thread, thread.worker_headers, content="x" * 501), "content", code="HX804")
    assert_400(send(client, thread, thread.worker_headers, message_type="PHOTO", content=None,
                    photo_keys=["a", "b", "c", "d"]), "photo_keys", code="HX803")
    assert_400(send(client, thread, thread.worker_headers, message_type="PHOTO", content="caption",
                    photo_keys=["a"]), "content")


def test_send_before_acceptance_is_hx801(client: Any, open_task: Thread) -> None:
    response = send(client, open_task, open_task.poster_headers)
    assert response.status_code == 409
    assert error(response)["code"] == "HX801"


def test_send_by_an_outsider_is_hx802(client: Any, thread: Thread, register: Register) -> None:
    _, outsider = register(client)
    response = send(client, thread, outsider)
    assert response.status_code == 403
    assert error(response)["code"] == "HX802"


def test_send_to_unknown_or_malformed_task_is_404(client: Any, thread: Thread) -> None:
    for url in (f"/api/tasks/{uuid.uuid4()}/messages", "/api/tasks/12345/messages"):
        response = client.post(url, json={"message_type": "TEXT", "content": "hi"}, headers=thread.worker_headers)
        assert response.status_code == 404, url
        assert error(response)["code"] == "NOT_FOUND"


def test_send_rate_limit_is_429_with_retry_after(client: Any, thread: Thread) -> None:
    for n in range(10):
        assert send(client, thread, thread.worker_headers, content=f"message {n}").status_code == 201
    response = send(client, thread, thread.worker_headers, content="one too many")
    assert response.status_code == 429
    assert error(response)["code"] == "RATE_LIMITED"
    assert 1 <= int(response.headers["Retry-After"]) <= 3600


def test_send_from_paused_account_is_hx602(client: Any, thread: Thread, conn: Any) -> None:
    conn.execute("UPDATE users SET account_status = 'PAUSED', paused_at = now() WHERE id = %s",
                 (thread.worker["id"],))
    response = send(client, thread, thread.worker_headers)
    assert response.status_code == 403
    assert error(response)["code"] == "HX602"


def test_send_needs_a_token(client: Any, thread: Thread) -> None:
    response = client.post(thread.url, json={"message_type": "TEXT", "content": "hi"})
    assert response.status_code == 401
    assert error(response)["code"] == "AUTH_REQUIRED"


# -- GET /api/tasks/{id}/messages --------------------------------------------------------

def test_thread_newest_first_with_cursor(client: Any, thread: Thread) -> None:
    sent = [data(send(client, thread, thread.worker_headers if n % 2 else thread.poster_headers,
                      content=f"m{n}"))["id"] for n in range(5)]
    page = data(client.get(f"{thread.url}?limit=3", headers=thread.poster_headers))
    assert [m["id"] for m in page["messages"]] == sent[::-1][:3]
    assert (page["has_more"], page["task_state"], page["can_send"]) == (True, "ACCEPTED", True)
    older = data(client.get(f"{thread.url}?limit=3&before={sent[2]}", headers=thread.poster_headers))
    assert [m["id"] for m in older["messages"]] == [sent[1], sent[0]]
    assert older["has_more"] is False


def test_thread_hides_blocked_messages_from_the_receiver(client: Any, thread: Thread) -> None:
    blocked = data(send(client, thread, thread.worker_headers, content="pay me at www.example.com"))
    assert blocked["status"] == "blocked"
    mine = data(client.get(thread.url, headers=thread.worker_headers))["messages"]
    theirs = data(client.get(thread.url, headers=thread.poster_headers))["messages"]
    assert [m["id"] for m in mine] == [blocked["id"]]
    assert theirs == []


def test_thread_of_open_task_is_readable_but_closed(client: Any, open_task: Thread) -> None:
    page = data(client.get(open_task.url, headers=open_task.poster_headers))
    assert (page["messages"], page["task_state"], page["can_send"]) == ([], "OPEN", False)


def test_thread_is_private_to_participants(client: Any, thread: Thread, register: Register) -> None:
    _, outsider = register(client)
    response = client.get(thread.url, headers=outsider)
    assert response.status_code == 403
    assert error(response)["code"] == "HX802"


def test_admin_may_read_a_thread(client: Any, thread: Thread, register: Register, make_admin: Any) -> None:
    send(client, thread, thread.worker_headers, content="evidence")
    admin, headers = register(client)
    make_admin(admin["id"], role="support")
    assert [m["content"] for m in data(client.get(thread.url, headers=headers))["messages"]] == ["evidence"]


@pytest.mark.parametrize(("query", "field"), [("limit=0", "limit"), ("limit=101", "limit"),
                                              ("before=yesterday", "before"), ("after=x", "after")])
def test_thread_rejects_invalid_query(client: Any, thread: Thread, query: str, field: str) -> None:
    assert_400(client.get(f"{thread.url}?{query}", headers=thread.poster_headers), field)


def test_thread_cursor_from_another_thread_is_the_services_validation_error(client: Any, thread: Thread) -> None:
    response = client.get(f"{thread.url}?before={uuid.uuid4()}", headers=thread.poster_headers)
    assert_400(response, "before")


def test_thread_needs_a_token(client: Any, thread: Thread) -> None:
    assert client.get(thread.url).status_code == 401


# -- POST /api/tasks/{id}/messages/read -----------------------------------------------------

def test_mark_read_only_what_the_caller_received(client: Any, thread: Thread) -> None:
    ids = [data(send(client, thread, thread.worker_headers, content=f"m{n}"))["id"] for n in range(2)]
    read_url = f"{thread.url}/read"
    own = client.post(read_url, json={"message_ids": ids}, headers=thread.worker_headers)
    assert data(own) == {"marked_count": 0}
    marked = client.post(read_url, json={"message_ids": ids}, headers=thread.poster_headers)
    assert marked.status_code == 200
    assert data(marked) == {"marked_count": 2}
    assert data(client.post(read_url, json={"message_ids": ids}, headers=thread.poster_headers)) == {
        "marked_count": 0}
    seen = data(client.get(thread.url, headers=thread.worker_headers))["messages"]
    assert all(m["read_at"] is not None for m in seen)


def test_read_receipts_hidden_when_the_receiver_opts_out(client: Any, thread: Thread) -> None:
    client.patch("/api/notifications/preferences", json={"read_receipts": False}, headers=thread.poster_headers)
    message_id = data(send(client, thread, thread.worker_headers))["id"]
    client.post(f"{thread.url}/read", json={"message_ids": [message_id]}, headers=thread.poster_headers)
    [seen] = data(client.get(thread.url, headers=thread.worker_headers))["messages"]
    assert seen["read_at"] is None


def test_mark_read_by_an_outsider_is_hx802(client: Any, thread: Thread, register: Register) -> None:
    message_id = data(send(client, thread, thread.worker_headers))["id"]
    _, outsider = register(client)
    response = client.post(f"{thread.url}/read", json={"message_ids": [message_id]}, headers=outsider)
    assert response.status_code == 403
    assert error(response)["code"] == "HX802"


@pytest.mark.parametrize(("body", "field"), [({}, "message_ids"), ({"message_ids": []}, "message_ids"),
                                             ({"message_ids": ["nope"]}, "message_ids"),
                                             ({"message_ids": [str(uuid.uuid4())], "all": True}, "all")])
def test_mark_read_rejects_invalid_input(client: Any, thread: Thread, body: dict[str, Any], field: str) -> None:
    assert_400(client.post(f"{thread.url}/read", json=body, headers=thread.poster_headers), field)


def test_mark_read_needs_a_token(client: Any, thread: Thread) -> None:
    assert client.post(f"{thread.url}/read", json={"message_ids": [str(uuid.uuid4())]}).status_code == 401
