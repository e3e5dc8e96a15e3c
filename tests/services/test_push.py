"""Push delivery through the REAL firebase-admin messaging client, over HTTP to a local fake
FCM (tests/fakes/fcm_fake.py): payloads, batching of held pushes, pruning and retries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hustlexp.db import Database
from hustlexp.services import Services
from hustlexp.services.push import BACKOFF, MAX_ATTEMPTS, PushGateway
from tests import factories as f
from tests.fakes.fcm_fake import PROJECT, FakeFCM
from tests.services.conftest import Clock

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def fcm() -> Iterator[FakeFCM]:
    with FakeFCM() as fake:
        yield fake


@pytest.fixture
def pusher(db: Database, clock: Clock, fcm: FakeFCM) -> Iterator[Services]:
    gateway = PushGateway(fcm.service_account(), api_base=fcm.url)
    yield Services(db, clock=clock, push=gateway)
    gateway.close()


def row(conn: Any, notification_id: Any) -> dict[str, Any]:
    return f.one(conn, "SELECT * FROM notifications WHERE id = %s", (notification_id,))


def device(pusher: Services, user: Any, token: str, platform: str = "android") -> None:
    pusher.pushes.register_device(user, token, platform).unwrap()


def test_push_carries_deep_link_category_priority_and_collapse_key(pusher, fcm, ids, conn):
    device(pusher, ids["poster"], "tok-poster-ios", "ios")
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert row(conn, note["id"])["push_due_at"] == NOON  # due now, sent by nobody yet

    counts = pusher.pushes.send_due().unwrap()

    assert counts["claimed"] == 1, counts
    assert counts["sent"] == 1, (counts, fcm.refused)
    [message] = fcm.sent_to("tok-poster-ios")
    assert message["project"] == PROJECT and fcm.tokens_issued == 1
    assert message["notification"] == {"title": note["title"], "body": note["body"]}
    assert message["data"] == {"notification_id": str(note["id"]), "category": "TASK_ACCEPTED",
                               "deep_link": f"hustlexp://task/{ids['task']}", "priority": "HIGH",
                               "task_id": str(ids["task"])}
    collapse = f"hx-{note['group_id']}"
    assert message["android"]["priority"] == "high" and message["android"]["collapse_key"] == collapse
    assert message["android"]["notification"]["channel_id"] == "tasks"
    assert message["apns"]["headers"] == {"apns-priority": "10", "apns-collapse-id": collapse}
    aps = message["apns"]["payload"]["aps"]
    assert aps["thread-id"] == f"task-{ids['task']}" and aps["category"] == "TASK_ACCEPTED" and aps["badge"] == 1
    stored = row(conn, note["id"])
    assert stored["sent_at"] == NOON and stored["push_due_at"] is None and stored["push_error"] is None
    # Sent once: a second pass finds nothing.
    assert pusher.pushes.send_due().unwrap()["claimed"] == 0
    assert len(fcm.messages) == 1


def test_push_low_priority_is_normal_and_silent_on_payment_channel(pusher, fcm, ids, conn):
    device(pusher, ids["worker"], "tok-w")
    pusher.notifications.notify(ids["worker"], "ESCROW_REFUNDED", task_id=ids["task"],
                                metadata={"amount": 4500}).unwrap()
    pusher.pushes.send_due().unwrap()
    [message] = fcm.sent_to("tok-w")
    assert message["android"]["priority"] == "normal" and message["android"]["notification"]["channel_id"] == \
        "payments"
    assert message["apns"]["headers"]["apns-priority"] == "5"
    assert message["apns"]["payload"]["aps"]["thread-id"] == "payments"


def test_push_goes_to_every_device_and_prunes_unregistered_and_invalid_tokens(pusher, fcm, ids, conn):
    for token in ("tok-good", "tok-gone", "tok-bad"):
        device(pusher, ids["poster"], token)
    fcm.unregistered.add("tok-gone")
    fcm.invalid.add("tok-bad")
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()

    counts = pusher.pushes.send_due().unwrap()

    assert counts["sent"] == 1 and counts["pruned"] == 2
    assert [m["token"] for m in fcm.messages] == ["tok-good"]
    left = conn.execute("SELECT token FROM push_devices WHERE user_id = %s", (ids["poster"],)).fetchall()
    assert [d["token"] for d in left] == ["tok-good"]
    assert row(conn, note["id"])["sent_at"] is not None


def test_push_with_only_dead_tokens_fails_and_says_why(pusher, fcm, ids, conn):
    device(pusher, ids["poster"], "tok-gone")
    fcm.unregistered.add("tok-gone")
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert pusher.pushes.send_due().unwrap()["failed"] == 1
    stored = row(conn, note["id"])
    assert stored["sent_at"] is None and stored["push_due_at"] is None and stored["push_error"] == "UNREGISTERED"


def test_push_without_devices_is_recorded_as_such(pusher, fcm, ids, conn):
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert pusher.pushes.send_due().unwrap()["no_devices"] == 1
    stored = row(conn, note["id"])
    assert (stored["sent_at"], stored["push_due_at"], stored["push_error"]) == (None, None, "no_devices")
    assert fcm.messages == []


def test_push_transient_failure_backs_off_then_succeeds(pusher, fcm, ids, conn, clock):
    device(pusher, ids["poster"], "tok-p")
    fcm.fail_next("tok-p", 1)
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()

    assert pusher.pushes.send_due().unwrap()["retrying"] == 1
    stored = row(conn, note["id"])
    assert stored["push_error"] == "QUOTA_EXCEEDED" and stored["push_due_at"] == NOON + BACKOFF[0]
    assert stored["push_attempts"] == 1 and stored["sent_at"] is None
    assert pusher.pushes.send_due().unwrap()["claimed"] == 0  # not before its back-off

    clock.advance(seconds=BACKOFF[0].total_seconds())
    assert pusher.pushes.send_due().unwrap()["sent"] == 1
    stored = row(conn, note["id"])
    assert stored["sent_at"] == NOON + BACKOFF[0] and stored["push_error"] is None and stored["push_attempts"] == 2
    assert len(fcm.sent_to("tok-p")) == 1


def test_push_gives_up_after_the_last_attempt(pusher, fcm, ids, conn, clock):
    device(pusher, ids["poster"], "tok-p")
    fcm.fail_next("tok-p", MAX_ATTEMPTS + 3)
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    for wait in (timedelta(0), *BACKOFF):
        clock.advance(seconds=wait.total_seconds())
        assert pusher.pushes.send_due().unwrap()["claimed"] == 1
    stored = row(conn, note["id"])
    assert stored["push_due_at"] is None and stored["push_error"] == f"QUOTA_EXCEEDED after {MAX_ATTEMPTS} attempts"
    clock.advance(days=1)
    assert pusher.pushes.send_due().unwrap()["claimed"] == 0


def test_push_held_by_quiet_hours_goes_out_once_when_the_hold_ends(pusher, fcm, conn, clock):
    user = f.user(conn)
    device(pusher, user, "tok-q")
    pusher.notifications.update_preferences(user, {"quiet_hours": {"enabled": True, "start": "11:00",
                                                                  "end": "13:00"}}).unwrap()
    first = pusher.notifications.notify(user, "XP_EARNED", metadata={"xp": 10}).unwrap()
    clock.advance(minutes=1)
    second = pusher.notifications.notify(user, "XP_EARNED", metadata={"xp": 20}).unwrap()
    assert "push" not in second["channels"]

    assert pusher.pushes.send_due().unwrap()["claimed"] == 0  # still quiet
    assert row(conn, first["id"])["push_due_at"] == NOON + timedelta(hours=1)

    clock.now = NOON + timedelta(hours=1)
    counts = pusher.pushes.send_due().unwrap()

    assert counts["sent"] == 2
    [message] = fcm.sent_to("tok-q")  # one push for both
    assert message["notification"]["body"] == f"{second['body']} (+1 more)"
    assert message["data"]["notification_id"] == str(second["id"])
    for n in (first, second):
        assert row(conn, n["id"])["sent_at"] == NOON + timedelta(hours=1)


def test_push_read_in_the_app_first_is_not_sent(pusher, fcm, ids, conn):
    device(pusher, ids["poster"], "tok-p")
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    pusher.notifications.mark_all_read(ids["poster"]).unwrap()
    assert pusher.pushes.send_due().unwrap()["skipped"] == 1
    assert fcm.messages == [] and row(conn, note["id"])["push_error"] == "read_in_app"


def test_push_switched_off_is_never_due(pusher, fcm, ids, conn):
    pusher.notifications.update_preferences(ids["poster"], {"push_enabled": False}).unwrap()
    note = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert row(conn, note["id"])["push_due_at"] is None


def test_push_without_credentials_leaves_rows_due(svc, ids, conn):
    note = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert svc.pushes.send_due().unwrap()["claimed"] == 0
    assert row(conn, note["id"])["push_due_at"] is not None


def test_push_only_named_ids_are_sent_when_given(pusher, fcm, ids, conn):
    device(pusher, ids["poster"], "tok-p")
    device(pusher, ids["worker"], "tok-w")
    a = pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    pusher.notifications.notify(ids["worker"], "TASK_WORKER_ASSIGNED", task_id=ids["task"]).unwrap()
    assert pusher.pushes.send_due([str(a["id"])]).unwrap()["sent"] == 1
    assert [m["token"] for m in fcm.messages] == ["tok-p"]


def test_device_token_moves_to_the_newest_user(pusher, conn):
    first, second = f.user(conn), f.user(conn)
    device(pusher, first, "shared-phone", "ios")
    device(pusher, second, "shared-phone", "android")
    [d] = conn.execute("SELECT user_id, platform FROM push_devices WHERE token = 'shared-phone'").fetchall()
    assert (d["user_id"], d["platform"]) == (second, "android")
    assert pusher.pushes.remove_device(first, "shared-phone").code == "NOT_FOUND"
    assert pusher.pushes.remove_device(second, "shared-phone").unwrap() == {"removed": True}


@pytest.mark.parametrize(("token", "platform", "field"), [("", "ios", "token"), ("t", "blackberry", "platform"),
                                                          (None, "ios", "token"), ("x" * 4097, "web", "token")])
def test_device_bad_input_is_refused(pusher, conn, token, platform, field):
    result = pusher.pushes.register_device(f.user(conn), token, platform)
    assert result.code == "VALIDATION_ERROR" and field in result.error.details


def test_push_job_pass_sends_what_is_due(pusher, fcm, ids):
    from hustlexp.jobs import run_pass

    device(pusher, ids["poster"], "tok-p")
    pusher.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert run_pass("push", pusher)["sent"] == 1
    assert len(fcm.sent_to("tok-p")) == 1
