"""MessagingService: who may send (HX802) and when (HX801), message types (HX803, HX804),
moderation, rate limits, the thread's paging and visibility, and read marks."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from hustlexp.services import Services
from hustlexp.services.messaging import TEMPLATES, moderate
from tests import factories as f
from tests.services.conftest import Clock

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)




def text(svc: Services, ids: dict[str, Any], body: str = "On my way", sender: str = "worker") -> Any:
    return svc.messaging.send(ids["task"], ids[sender], message_type="TEXT", content=body)


def set_state(conn: Any, ids: dict[str, Any], state: str) -> None:
    if state == "PROOF_SUBMITTED":
        f.proof(conn, ids["task"], ids["worker"], state="SUBMITTED")
    conn.execute("UPDATE tasks SET state = %s WHERE id = %s", (state, ids["task"]))


def stored(conn: Any, task_id: Any) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM task_messages WHERE task_id = %s ORDER BY created_at",
                        (task_id,)).fetchall()


def inbox(conn: Any, user_id: Any) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM notifications WHERE user_id = %s AND category = 'NEW_MESSAGE' "
                        "ORDER BY created_at", (user_id,)).fetchall()


# -- sending ------------------------------------------------------------------------

def test_send_text_delivers_and_notifies_the_receiver(svc, conn, ids):
    conn.execute("UPDATE users SET full_name = 'Pat Poster' WHERE id = %s", (ids["poster"],))
    message = text(svc, ids, "Gate code is 4411", sender="poster").unwrap()
    assert (message["status"], message["sender_id"], message["receiver_id"]) == \
        ("sent", ids["poster"], ids["worker"])
    assert (message["message_type"], message["content"], message["created_at"]) == \
        ("TEXT", "Gate code is 4411", NOON)
    row = stored(conn, ids["task"])[0]
    assert (row["moderation_status"], row["read_at"]) == ("approved", None)
    [note] = inbox(conn, ids["worker"])
    assert (note["title"], note["body"], note["priority"]) == ("New message from Pat Poster",
                                                               "Gate code is 4411", "HIGH")
    assert note["deep_link"] == f"hustlexp://message/{ids['task']}"
    assert note["metadata"]["message_id"] == str(message["id"])
    assert inbox(conn, ids["poster"]) == []


def test_send_notification_preview_is_100_characters(svc, conn, ids):
    text(svc, ids, "a" * 300).unwrap()
    [note] = inbox(conn, ids["poster"])
    assert len(note["body"]) == 100
    assert note["body"].endswith("…")


def test_send_by_a_stranger_is_hx802(svc, conn, ids):
    stranger = f.user(conn)
    result = svc.messaging.send(ids["task"], stranger, message_type="TEXT", content="hi")
    assert result.code == "HX802"
    assert result.error.status == 403
    assert stored(conn, ids["task"]) == []


def test_send_unknown_task_is_not_found(svc, ids):
    assert svc.messaging.send(uuid.uuid4(), ids["worker"], message_type="TEXT", content="hi").code == "NOT_FOUND"
    assert svc.messaging.send("nope", ids["worker"], message_type="TEXT", content="hi").code == "NOT_FOUND"


@pytest.mark.parametrize("state", ["PROOF_SUBMITTED", "DISPUTED"])
def test_send_allowed_while_task_in_progress(svc, conn, ids, state):
    set_state(conn, ids, state)
    assert text(svc, ids).unwrap()["status"] == "sent"
    assert text(svc, ids, "ok", sender="poster").ok


@pytest.mark.parametrize("state", ["CANCELLED", "COMPLETED"])
def test_send_to_a_closed_task_is_hx801(svc, conn, state):
    ids = f.completed_task(conn) if state == "COMPLETED" else f.accepted_task(conn)
    if state == "CANCELLED":
        conn.execute("UPDATE tasks SET state = 'CANCELLED' WHERE id = %s", (ids["task"],))
    result = text(svc, ids)
    assert result.code == "HX801"
    assert result.error.status == 409
    assert stored(conn, ids["task"]) == []


def test_send_on_an_open_task_is_hx801_for_the_poster(svc, conn):
    task = f.task(conn)
    poster = conn.execute("SELECT poster_id FROM tasks WHERE id = %s", (task,)).fetchone()["poster_id"]
    assert svc.messaging.send(task, poster, message_type="TEXT", content="anyone?").code == "HX801"
    assert svc.messaging.send(task, f.user(conn), message_type="TEXT", content="me!").code == "HX802"


def test_send_by_a_paused_sender_is_hx602(svc, conn, ids):
    conn.execute("UPDATE users SET account_status = 'PAUSED' WHERE id = %s", (ids["worker"],))
    assert text(svc, ids).code == "HX602"


def test_send_waits_for_a_concurrent_state_change(svc, db_url, ids):
    # A cancel holding the task row: the send must wait and then see CANCELLED, not slip a
    # message into a task that is closing.
    results: dict[str, Any] = {}
    with psycopg.connect(db_url) as other:
        other.execute("UPDATE tasks SET state = 'CANCELLED' WHERE id = %s", (ids["task"],))
        sender = threading.Thread(target=lambda: results.update(send=text(svc, ids)))
        sender.start()
        sender.join(0.5)
        assert sender.is_alive()
        other.commit()
    sender.join(10)
    assert results["send"].code == "HX801"


# -- message types -----------------------------------------------------------------------

def test_text_limit_is_500_characters(svc, conn, ids):
    assert text(svc, ids, "x" * 500).ok
    result = text(svc, ids, "x" * 501)
    assert result.code == "HX804"
    assert result.error.status == 400
    assert len(stored(conn, ids["task"])) == 1


@pytest.mark.parametrize("content", [None, "", "   "])
def test_text_needs_content(svc, ids, content):
    assert svc.messaging.send(ids["task"], ids["worker"], message_type="TEXT",
                              content=content).code == "VALIDATION_ERROR"


@pytest.mark.parametrize("keys", [[], ["a.jpg"] * 4, None, "a.jpg"])
def test_photo_needs_one_to_three_keys(svc, ids, keys):
    result = svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO", photo_keys=keys)
    assert result.code == "HX803"


def test_photo_message_stores_keys(svc, conn, ids):
    keys = [f.confirmed_upload(conn, ids["worker"], ids["task"]) for _ in range(3)]
    message = svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO", photo_keys=keys).unwrap()
    assert (message["photo_keys"], message["photo_count"], message["content"]) == (keys, 3, None)
    assert inbox(conn, ids["poster"])[0]["body"] == "Sent 3 photos"
    # Each photo is evidence of the task now, and its upload is used up.
    evidence = conn.execute("SELECT storage_key, submitted_by, task_id, dispute_id FROM evidence "
                            "ORDER BY storage_key").fetchall()
    assert evidence == [{"storage_key": k, "submitted_by": ids["worker"], "task_id": ids["task"], "dispute_id": None}
                        for k in sorted(keys)]
    states = {r["state"] for r in conn.execute("SELECT state FROM uploads WHERE storage_key = ANY(%s)", (keys,))}
    assert states == {"ATTACHED"}
    again = svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO", photo_keys=keys[:1])
    assert again.code == "VALIDATION_ERROR" and "photo_keys" in again.error.details


def test_photo_keys_must_be_the_senders_confirmed_uploads_for_the_task(svc, conn, ids):
    other_task = f.accepted_task(conn)
    refused = {
        "made up": "messages/elsewhere/1.jpg",
        "the poster's": f.confirmed_upload(conn, ids["poster"], ids["task"]),
        "another task's": f.confirmed_upload(conn, other_task["worker"], other_task["task"]),
        "not confirmed": f.confirmed_upload(conn, ids["worker"], ids["task"], state="PENDING",
                                            checksum_sha256=None, confirmed_at=None),
        "another bucket": f.confirmed_upload(conn, ids["worker"], ids["task"], bucket="evidence"),
    }
    good = f.confirmed_upload(conn, ids["worker"], ids["task"])
    for why, key in refused.items():
        result = svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO", photo_keys=[good, key])
        assert result.code == "VALIDATION_ERROR", why
        assert result.error.details["photo_keys"] == [
            f"not a confirmed messages upload of yours for this task: {key}"], why
    assert stored(conn, ids["task"]) == []
    assert conn.execute("SELECT count(*) AS n FROM evidence").fetchone()["n"] == 0
    assert conn.execute("SELECT state FROM uploads WHERE storage_key = %s", (good,)).fetchone()["state"] == "CONFIRMED"


@pytest.mark.parametrize("keys", [[""], [" padded.jpg"], [42], ["k" * 501]])
def test_photo_bad_keys_are_refused(svc, ids, keys):
    assert svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO",
                              photo_keys=keys).code == "VALIDATION_ERROR"


def test_location_while_accepted_expires_after_15_minutes(svc, clock, ids):
    message = svc.messaging.send(ids["task"], ids["worker"], message_type="LOCATION",
                                 location={"lat": 40.7128, "lng": -74.006}).unwrap()
    assert message["location"] == {"lat": 40.7128, "lng": -74.006, "expires_at": NOON + timedelta(minutes=15)}
    clock.advance(minutes=14)
    assert svc.messaging.get_thread(ids["task"], ids["poster"]).unwrap()["messages"][0]["location"]
    clock.advance(minutes=1)
    assert svc.messaging.get_thread(ids["task"], ids["poster"]).unwrap()["messages"][0]["location"] is None


def test_location_once_per_15_minutes(svc, clock, ids):
    share = {"lat": 1, "lng": 2}
    svc.messaging.send(ids["task"], ids["worker"], message_type="LOCATION", location=share).unwrap()
    clock.advance(minutes=10)
    result = svc.messaging.send(ids["task"], ids["worker"], message_type="LOCATION", location=share)
    assert result.code == "RATE_LIMITED"
    assert result.error.retry_after == 5 * 60
    assert svc.messaging.send(ids["task"], ids["poster"], message_type="LOCATION", location=share).ok
    clock.advance(minutes=5)
    assert svc.messaging.send(ids["task"], ids["worker"], message_type="LOCATION", location=share).ok


def test_location_only_while_accepted(svc, conn, ids):
    set_state(conn, ids, "PROOF_SUBMITTED")
    result = svc.messaging.send(ids["task"], ids["worker"], message_type="LOCATION",
                                location={"lat": 1, "lng": 2})
    assert result.code == "HX801"


@pytest.mark.parametrize("location", [None, {"lat": 91, "lng": 0}, {"lat": 0, "lng": -181},
                                      {"lat": "1", "lng": 2}, {"lat": True, "lng": 2}, [1, 2], {"lat": 1}])
def test_location_bad_coordinates_are_refused(svc, ids, location):
    assert svc.messaging.send(ids["task"], ids["worker"], message_type="LOCATION",
                              location=location).code == "VALIDATION_ERROR"


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_auto_templates_send_their_text(svc, ids, template):
    message = svc.messaging.send(ids["task"], ids["worker"], message_type="AUTO",
                                 auto_message_template=template).unwrap()
    assert (message["auto_message_template"], message["content"]) == (template, TEMPLATES[template])


def test_auto_with_filled_in_text(svc, ids):
    message = svc.messaging.send(ids["task"], ids["worker"], message_type="AUTO",
                                 auto_message_template="on_my_way", content="On my way, ETA 10 min").unwrap()
    assert message["content"] == "On my way, ETA 10 min"
    assert svc.messaging.send(ids["task"], ids["worker"], message_type="AUTO",
                              auto_message_template="on_my_way", content="x" * 501).code == "HX804"


@pytest.mark.parametrize("kw", [
    {"message_type": "AUTO", "auto_message_template": "dance"}, {"message_type": "AUTO"},
    {"message_type": "SYSTEM", "content": "hi"}, {"message_type": "AUTO_STATUS", "content": "hi"},
    {"message_type": "TEXT", "content": "hi", "photo_keys": ["a.jpg"]},
    {"message_type": "TEXT", "content": "hi", "location": {"lat": 1, "lng": 1}},
    {"message_type": "PHOTO", "photo_keys": ["a.jpg"], "content": "caption"},
    {"message_type": "TEXT", "content": "hi", "auto_message_template": "on_my_way"},
    {"message_type": "TEXT", "content": 42},
])
def test_send_mismatched_fields_are_refused(svc, conn, ids, kw):
    assert svc.messaging.send(ids["task"], ids["worker"], **kw).code == "VALIDATION_ERROR"
    assert stored(conn, ids["task"]) == []


# -- moderation ------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "flags"), [
    ("Thanks, see you at 5!", "approved", []),
    ("Pay me on https://evil.example/pay", "quarantined", ["link"]),
    ("check www.cheap-deals.net", "quarantined", ["link"]),
    ("my site is dealz.com ok", "quarantined", ["link"]),
    ("Call me at (555) 010-2000 ext", "approved", ["phone"]),
    ("+1 555 010 2000", "approved", ["phone"]),
    ("mail me: sam.h@mail.example.com", "approved", ["email"]),
    ("it costs $45.00 for 2 hours", "approved", []),
])
def test_moderation_rules(body, status, flags):
    got_status, got_flags = moderate(body)
    assert (got_status.value, got_flags) == (status, flags)


def test_moderation_blocked_message_is_kept_but_not_delivered(svc, conn, ids):
    message = text(svc, ids, "go to https://evil.example").unwrap()
    assert message["status"] == "blocked"
    row = stored(conn, ids["task"])[0]
    assert (row["moderation_status"], row["moderation_flags"]) == ("quarantined", ["link"])
    assert inbox(conn, ids["poster"]) == []
    assert svc.messaging.get_thread(ids["task"], ids["poster"]).unwrap()["messages"] == []
    mine = svc.messaging.get_thread(ids["task"], ids["worker"]).unwrap()["messages"]
    assert [m["status"] for m in mine] == ["blocked"]


def test_moderation_contact_details_are_delivered_with_a_flag(svc, conn, ids):
    message = text(svc, ids, "text me on 555-010-2000 or sam@mail.example.com").unwrap()
    assert message["status"] == "sent"
    assert stored(conn, ids["task"])[0]["moderation_flags"] == ["phone", "email"]
    assert len(inbox(conn, ids["poster"])) == 1


# -- rate limits --------------------------------------------------------------------------------

def test_rate_limit_ten_per_hour_per_task(svc, conn, clock, ids):
    for _ in range(10):
        text(svc, ids).unwrap()
        clock.advance(minutes=1)
    result = text(svc, ids)
    assert result.code == "RATE_LIMITED"
    assert result.error.status == 429
    assert result.error.retry_after == 50 * 60
    assert len(stored(conn, ids["task"])) == 10
    assert text(svc, ids, sender="poster").ok  # the other sender has their own allowance
    other = f.accepted_task(conn)
    conn.execute("UPDATE tasks SET worker_id = %s WHERE id = %s", (ids["worker"], other["task"]))
    assert text(svc, other | {"worker": ids["worker"]}).ok  # and so does another task
    clock.now = NOON + timedelta(hours=1, seconds=1)
    assert text(svc, ids).ok


def test_rate_limit_100_messages_per_day(svc, conn, clock, ids):
    for n in range(100):
        f.message(conn, ids["task"], ids["worker"], ids["poster"],
                  created_at=NOON - timedelta(hours=23) + timedelta(minutes=10 * n))
    result = text(svc, ids)
    assert result.code == "RATE_LIMITED"
    assert result.error.retry_after == 3600
    clock.now = NOON + timedelta(hours=1)
    assert text(svc, ids).ok


def test_rate_limit_50_photos_per_day(svc, conn, clock, ids):
    for n in range(16):
        f.message(conn, ids["task"], ids["worker"], ids["poster"], message_type="PHOTO", content=None,
                  photo_urls=["k1", "k2", "k3"], photo_count=3,
                  created_at=NOON - timedelta(hours=20) + timedelta(hours=n))
    three = [f.confirmed_upload(conn, ids["worker"], ids["task"]) for _ in range(3)]
    result = svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO", photo_keys=three)
    assert result.code == "RATE_LIMITED"
    assert result.error.retry_after == 4 * 3600
    assert svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO", photo_keys=three[:2]).ok
    assert svc.messaging.send(ids["task"], ids["worker"], message_type="PHOTO",
                              photo_keys=three[:1]).code == "RATE_LIMITED"


# -- the thread ------------------------------------------------------------------------------------

def test_thread_newest_first_with_cursor(svc, clock, ids):
    sent = []
    for n in range(7):
        sent.append(text(svc, ids, f"m{n}", sender="worker" if n % 2 else "poster").unwrap())
        clock.advance(minutes=7)
    first = svc.messaging.get_thread(ids["task"], ids["poster"], limit=3).unwrap()
    assert [m["content"] for m in first["messages"]] == ["m6", "m5", "m4"]
    assert (first["has_more"], first["task_state"], first["can_send"]) == (True, "ACCEPTED", True)
    second = svc.messaging.get_thread(ids["task"], ids["poster"], limit=3,
                                      before=first["messages"][-1]["id"]).unwrap()
    assert [m["content"] for m in second["messages"]] == ["m3", "m2", "m1"]
    last = svc.messaging.get_thread(ids["task"], ids["poster"], limit=3,
                                    before=str(second["messages"][-1]["id"])).unwrap()
    assert ([m["content"] for m in last["messages"]], last["has_more"]) == (["m0"], False)
    assert len(svc.messaging.get_thread(ids["task"], ids["worker"]).unwrap()["messages"]) == 7


def test_thread_same_instant_pages_by_id(svc, conn, ids):
    for n in range(4):
        f.message(conn, ids["task"], ids["worker"], ids["poster"], content=f"m{n}", moderation_status="approved",
                  created_at=NOON)
    seen, before = [], None
    for _ in range(4):
        page = svc.messaging.get_thread(ids["task"], ids["poster"], limit=1, before=before).unwrap()
        seen += [m["id"] for m in page["messages"]]
        before = seen[-1]
    assert len(set(seen)) == 4
    assert seen == sorted(seen, reverse=True)


def test_thread_stranger_is_hx802_admin_reads_everything(svc, conn, ids):
    text(svc, ids, "hello").unwrap()
    text(svc, ids, "https://evil.example").unwrap()
    stranger, admin = f.user(conn), f.user(conn)
    conn.execute("INSERT INTO admin_roles (user_id, role) VALUES (%s, 'moderator')", (admin,))
    assert svc.messaging.get_thread(ids["task"], stranger).code == "HX802"
    thread = svc.messaging.get_thread(ids["task"], admin).unwrap()
    assert sorted(m["status"] for m in thread["messages"]) == ["blocked", "sent"]
    assert thread["can_send"] is False
    assert svc.messaging.send(ids["task"], admin, message_type="TEXT", content="hi").code == "HX802"


def test_thread_of_a_finished_task_is_read_only(svc, conn, ids):
    text(svc, ids).unwrap()
    conn.execute("UPDATE tasks SET state = 'CANCELLED' WHERE id = %s", (ids["task"],))
    thread = svc.messaging.get_thread(ids["task"], ids["poster"]).unwrap()
    assert (len(thread["messages"]), thread["task_state"], thread["can_send"]) == (1, "CANCELLED", False)


def test_thread_hides_deleted_messages(svc, conn, ids):
    text(svc, ids).unwrap()
    conn.execute("UPDATE task_messages SET deleted_at = now() WHERE task_id = %s", (ids["task"],))
    assert svc.messaging.get_thread(ids["task"], ids["worker"]).unwrap()["messages"] == []


@pytest.mark.parametrize("kw", [{"limit": 0}, {"limit": 101}, {"before": "nope"}, {"before": uuid.uuid4()}])
def test_thread_bad_paging_is_refused(svc, ids, kw):
    assert svc.messaging.get_thread(ids["task"], ids["poster"], **kw).code == "VALIDATION_ERROR"


def test_thread_cursor_from_another_task_is_refused(svc, conn, ids):
    other = f.accepted_task(conn)
    foreign = text(svc, other).unwrap()
    assert svc.messaging.get_thread(ids["task"], ids["poster"], before=foreign["id"]).code == "VALIDATION_ERROR"


def test_thread_unknown_task_is_not_found(svc, ids):
    assert svc.messaging.get_thread(uuid.uuid4(), ids["poster"]).code == "NOT_FOUND"


# -- read marks ------------------------------------------------------------------------------------

def test_mark_read_only_received_unread(svc, conn, clock, ids):
    to_poster = text(svc, ids, "one").unwrap()
    to_worker = text(svc, ids, "two", sender="poster").unwrap()
    blocked = text(svc, ids, "www.evil.com").unwrap()
    clock.advance(minutes=3)
    everything = [to_poster["id"], to_worker["id"], blocked["id"]]
    assert svc.messaging.mark_read(ids["task"], ids["poster"], everything).unwrap() == {"marked_count": 1}
    assert svc.messaging.mark_read(ids["task"], ids["poster"], everything).unwrap() == {"marked_count": 0}
    reads = {r["id"]: r["read_at"] for r in stored(conn, ids["task"])}
    assert reads == {to_poster["id"]: NOON + timedelta(minutes=3), to_worker["id"]: None, blocked["id"]: None}


def test_mark_read_by_a_stranger_is_hx802(svc, conn, ids):
    message = text(svc, ids).unwrap()
    assert svc.messaging.mark_read(ids["task"], f.user(conn), [message["id"]]).code == "HX802"


@pytest.mark.parametrize("bad", [[], ["x"], "id", None])
def test_mark_read_bad_ids_are_refused(svc, ids, bad):
    assert svc.messaging.mark_read(ids["task"], ids["poster"], bad).code == "VALIDATION_ERROR"


def test_read_receipts_follow_the_receivers_switch(svc, clock, ids):
    message = text(svc, ids).unwrap()
    clock.advance(minutes=1)
    svc.messaging.mark_read(ids["task"], ids["poster"], [message["id"]]).unwrap()
    seen = svc.messaging.get_thread(ids["task"], ids["worker"]).unwrap()["messages"][0]
    assert seen["read_at"] == NOON + timedelta(minutes=1)
    svc.notifications.update_preferences(ids["poster"], {"read_receipts": False}).unwrap()
    assert svc.messaging.get_thread(ids["task"], ids["worker"]).unwrap()["messages"][0]["read_at"] is None
    # The reader still sees their own read mark.
    assert svc.messaging.get_thread(ids["task"], ids["poster"]).unwrap()["messages"][0]["read_at"] \
        == NOON + timedelta(minutes=1)
