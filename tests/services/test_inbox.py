"""InboxService: conversations per task with the other party, the last visible message and the
unread count, newest activity first in cursor pages; and the total unread count."""

from __future__ import annotations

import uuid

from hustlexp.services import Services
from tests.services import flows


def send(services: Services, ids, sender: str, text: str = "On my way") -> dict:
    receiver = "poster" if sender == "worker" else "worker"
    assert ids[receiver]
    return services.messaging.send(ids["task"], ids[sender], message_type="TEXT", content=text).unwrap()


def test_conversations_show_the_other_party_last_message_and_unread(services, stripe_fake, clock):
    worker = flows.user(services)
    quiet = flows.accepted_task(services, stripe_fake, worker=worker)
    busy = flows.accepted_task(services, stripe_fake, worker=worker)
    flows.funded_task(services, stripe_fake)  # OPEN: no conversation yet
    send(services, busy, "poster", "Gate code is 1234")
    clock.advance(seconds=5)
    send(services, busy, "poster", "Thanks!")
    out = services.inbox.conversations(worker).unwrap()
    assert [c["task_id"] for c in out["conversations"]] == [busy["task"], quiet["task"]]
    first, second = out["conversations"]
    assert first["other_user"]["id"] == busy["poster"] and "email" not in first["other_user"]
    assert first["last_message"]["content"] == "Thanks!" and first["last_message"]["is_from_me"] is False
    assert first["unread_count"] == 2 and first["is_active"] is True
    assert second["last_message"] is None and second["unread_count"] == 0
    assert services.inbox.unread_count(worker).unwrap() == {"unread_count": 2, "conversations_with_unread": 1}
    # The poster's side: the worker is the other party, nothing unread.
    poster_view = services.inbox.conversations(busy["poster"]).unwrap()["conversations"]
    assert [c["other_user"]["id"] for c in poster_view] == [worker]
    assert poster_view[0]["last_message"]["is_from_me"] is True and poster_view[0]["unread_count"] == 0


def test_reading_clears_unread(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    message = send(services, ids, "worker")
    assert services.inbox.unread_count(ids["poster"]).unwrap()["unread_count"] == 1
    services.messaging.mark_read(ids["task"], ids["poster"], [message["id"]]).unwrap()
    assert services.inbox.unread_count(ids["poster"]).unwrap() == {"unread_count": 0, "conversations_with_unread": 0}


def test_conversations_page_with_a_cursor(services, stripe_fake, clock):
    worker = flows.user(services)
    tasks = []
    for _ in range(5):
        ids = flows.accepted_task(services, stripe_fake, worker=worker)
        clock.advance(seconds=1)
        send(services, ids, "poster")
        tasks.append(ids["task"])
    seen, cursor = [], None
    while True:
        page = services.inbox.conversations(worker, limit=2, cursor=cursor).unwrap()
        seen += [c["task_id"] for c in page["conversations"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(tasks))


def test_inbox_errors(services):
    assert services.inbox.conversations(uuid.UUID(int=0)).code == "HX504"
    assert services.inbox.unread_count(uuid.UUID(int=0)).code == "HX504"
    someone = flows.user(services)
    assert services.inbox.conversations(someone, cursor="@@@").code == "VALIDATION_ERROR"
    assert services.inbox.conversations(someone, limit=0).code == "VALIDATION_ERROR"
    assert services.inbox.conversations(someone).unwrap() == {"conversations": [], "has_more": False,
                                                              "next_cursor": None}
