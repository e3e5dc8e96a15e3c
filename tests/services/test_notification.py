"""NotificationService: catalog, participants (HX805), preferences, quiet hours, caps,
dedupe, inbox paging and read marks, on the real database with a controllable clock."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hustlexp.errors import ValidationError
from hustlexp.services import Services
from hustlexp.services.notification import CATALOG, Notice, NotificationService, in_quiet_hours
from tests import factories as f
from tests.services.conftest import Clock

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)




def rows(conn: Any, user_id: Any) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM notifications WHERE user_id = %s ORDER BY created_at, group_position",
                        (user_id,)).fetchall()


# -- catalog ------------------------------------------------------------------

def test_catalog_unknown_category_is_refused(svc, ids):
    result = svc.notifications.notify(ids["poster"], "TASK_EXPLODED", task_id=ids["task"])
    assert result.code == "VALIDATION_ERROR"


def test_catalog_covers_every_domain_type():
    assert set(CATALOG) == {
        "TASK_CREATED", "TASK_ACCEPTED", "TASK_WORKER_ASSIGNED", "TASK_CANCELLED", "TASK_EXPIRED",
        "TASK_OVERDUE", "PROOF_SUBMITTED", "PROOF_ACCEPTED", "PROOF_REJECTED", "DISPUTE_OPENED",
        "DISPUTE_RESOLVED", "XP_EARNED", "LEVEL_UP", "BADGE_EARNED", "ESCROW_FUNDED", "ESCROW_RELEASED",
        "ESCROW_REFUNDED", "TRUST_TIER_UP", "TRUST_TIER_DOWN", "LIVE_TASK_MATCH", "NEW_MESSAGE",
        "SYSTEM_ANNOUNCEMENT", "PAYMENT_FAILED", "PAYOUT_FAILED_PERMANENT", "RATING_REQUESTED",
        "RATING_RECEIVED", "DISPUTE_EVIDENCE_REQUESTED", "TASK_UNDER_REVIEW",
        # money events (issue 12)
        "CHARGEBACK_OPENED", "CHARGEBACK_CLOSED", "PAYMENT_RISK_REVIEW", "PAYOUT_REVERSED", "PAYOUT_INCIDENT",
        "PAYOUT_FAILED",
        # Connect onboarding (issue 12)
        "PAYOUT_ACCOUNT_READY", "PAYOUT_ACCOUNT_RESTRICTED"}


@pytest.mark.parametrize(("category", "recipient", "priority"), [
    ("ESCROW_FUNDED", "poster", "HIGH"), ("TASK_ACCEPTED", "poster", "HIGH"),
    ("TASK_WORKER_ASSIGNED", "worker", "MEDIUM"), ("PROOF_SUBMITTED", "poster", "HIGH"),
    ("PROOF_ACCEPTED", "worker", "MEDIUM"), ("PROOF_REJECTED", "worker", "HIGH"),
    ("ESCROW_RELEASED", "worker", "HIGH"), ("XP_EARNED", "worker", "LOW"), ("LEVEL_UP", "worker", "LOW"),
    ("BADGE_EARNED", "worker", "MEDIUM"), ("TRUST_TIER_UP", "worker", "HIGH"),
    ("TASK_CANCELLED", "worker", "MEDIUM"), ("ESCROW_REFUNDED", "poster", "MEDIUM"),
    ("TASK_EXPIRED", "poster", "LOW"), ("DISPUTE_OPENED", "worker", "HIGH"),
    ("DISPUTE_RESOLVED", "poster", "MEDIUM"), ("NEW_MESSAGE", "worker", "HIGH"),
    ("PAYMENT_FAILED", "poster", "HIGH"),
])
def test_catalog_default_priority(svc, ids, category, recipient, priority):
    item = svc.notifications.notify(ids[recipient], category, task_id=ids["task"]).unwrap()
    assert item["priority"] == priority
    assert item["type"] == category
    assert item["title"] and item["body"]


def test_catalog_task_accepted_names_worker_and_task(svc, conn, ids):
    conn.execute("UPDATE users SET full_name = 'Dana Worker' WHERE id = %s", (ids["worker"],))
    item = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert item["body"] == "Dana Worker accepted “Assemble a bookshelf”."
    assert item["deep_link"] == f"hustlexp://task/{ids['task']}"
    assert item["task_id"] == ids["task"]
    assert item["read"] is False
    assert item["created_at"] == NOON


def test_catalog_release_formats_amount_in_dollars(svc, ids):
    item = svc.notifications.notify(ids["worker"], "ESCROW_RELEASED", task_id=ids["task"],
                                    metadata={"amount": 3825}).unwrap()
    assert "$38.25" in item["body"]
    assert item["metadata"]["amount"] == 3825


def test_catalog_body_falls_back_when_metadata_is_missing(svc, ids):
    item = svc.notifications.notify(ids["worker"], "ESCROW_RELEASED", task_id=ids["task"]).unwrap()
    assert "{" not in item["body"]
    assert "$" not in item["body"]


def test_catalog_xp_and_level_read_xp_service_metadata(svc, ids):
    xp = svc.notifications.notify(ids["worker"], "XP_EARNED", task_id=ids["task"],
                                  metadata={"effective_xp": 84}).unwrap()
    level = svc.notifications.notify(ids["worker"], "LEVEL_UP", task_id=ids["task"],
                                     metadata={"level_after": 3}).unwrap()
    assert xp["title"] == "+84 XP"
    assert "84 XP" in xp["body"]
    assert level["title"] == "Level 3!"


@pytest.mark.parametrize(("category", "link"), [
    ("NEW_MESSAGE", "hustlexp://message/{task}"), ("XP_EARNED", "hustlexp://profile/{user}"),
    ("TRUST_TIER_UP", "hustlexp://trust"), ("PROOF_ACCEPTED", "hustlexp://task/{task}"),
])
def test_catalog_deep_links(svc, ids, category, link):
    item = svc.notifications.notify(ids["worker"], category, task_id=ids["task"]).unwrap()
    assert item["deep_link"] == link.format(task=ids["task"], user=ids["worker"])


def test_catalog_announcement_links_to_settings(svc, conn):
    user = f.user(conn)
    svc.notifications.update_preferences(user, {"categories": {"marketing": True}}).unwrap()
    item = svc.notifications.notify(user, "SYSTEM_ANNOUNCEMENT", metadata={"message": "New: tips!"}).unwrap()
    assert item["deep_link"] == "hustlexp://settings/notifications"
    assert item["body"] == "New: tips!"


def test_catalog_explicit_text_priority_and_link_win(svc, ids):
    item = svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"], title="Nice",
                                    body="Well done", priority="CRITICAL",
                                    deep_link=f"hustlexp://profile/{ids['worker']}").unwrap()
    assert (item["title"], item["body"], item["priority"]) == ("Nice", "Well done", "CRITICAL")
    assert item["deep_link"] == f"hustlexp://profile/{ids['worker']}"


@pytest.mark.parametrize("kw", [
    {"priority": "URGENT"}, {"deep_link": "https://evil.example/x"}, {"deep_link": "hustlexp://task/1"},
    {"title": "x" * 201}, {"body": "  "},
])
def test_catalog_bad_explicit_values_are_refused(svc, ids, kw):
    assert svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"],
                                    **kw).code == "VALIDATION_ERROR"


def test_catalog_task_category_needs_task(svc, ids):
    assert svc.notifications.notify(ids["poster"], "TASK_ACCEPTED").code == "VALIDATION_ERROR"
    assert svc.notifications.notify(ids["worker"], "NEW_MESSAGE").code == "VALIDATION_ERROR"


def test_catalog_long_task_title_is_shortened(svc, conn, ids):
    conn.execute("UPDATE tasks SET title = %s WHERE id = %s", ("T" * 255, ids["task"]))
    item = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert "T" * 79 + "…" in item["body"]
    assert "T" * 81 not in item["body"]


# -- recipients ---------------------------------------------------------------

def test_recipient_outside_task_is_hx805(svc, conn, ids):
    stranger = f.user(conn)
    result = svc.notifications.notify(stranger, "TASK_ACCEPTED", task_id=ids["task"])
    assert result.code == "HX805"
    assert result.error.status == 403
    assert rows(conn, stranger) == []


def test_recipient_unknown_user_is_hx504(svc, ids):
    assert svc.notifications.notify(uuid.uuid4(), "XP_EARNED").code == "HX504"
    assert svc.notifications.notify("not-a-uuid", "XP_EARNED").code == "HX504"


def test_recipient_unknown_task_is_not_found(svc, ids):
    assert svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=uuid.uuid4()).code == "NOT_FOUND"


def test_recipient_live_match_goes_to_candidates_not_the_poster(svc, conn, ids):
    open_task = f.task(conn)
    poster = conn.execute("SELECT poster_id FROM tasks WHERE id = %s", (open_task,)).fetchone()["poster_id"]
    candidate = f.user(conn)
    assert svc.notifications.notify(candidate, "LIVE_TASK_MATCH", task_id=open_task).ok
    assert svc.notifications.notify(poster, "LIVE_TASK_MATCH", task_id=open_task).code == "HX805"


def test_recipient_payout_alert_goes_to_admins_only(svc, conn, ids):
    admin = f.user(conn)
    conn.execute("INSERT INTO admin_roles (user_id, role) VALUES (%s, 'admin')", (admin,))
    alert = svc.notifications.notify(admin, "PAYOUT_FAILED_PERMANENT", task_id=ids["task"],
                                     metadata={"kind": "transfer", "amount": 3825}).unwrap()
    assert alert["priority"] == "CRITICAL"
    assert "$38.25" in alert["body"]
    assert svc.notifications.notify(ids["poster"], "PAYOUT_FAILED_PERMANENT",
                                    task_id=ids["task"]).code == "HX805"
    # The outbox job raises it without a task: it then points at the escrow.
    escrow_alert = svc.notifications.notify(admin, "PAYOUT_FAILED_PERMANENT", metadata={
        "kind": "TRANSFER", "amount": 3825, "escrow_id": str(ids["escrow"])}).unwrap()
    assert escrow_alert["body"] == f"The transfer of $38.25 for escrow {ids['escrow']} failed after every retry."
    assert escrow_alert["deep_link"] == f"hustlexp://profile/{admin}"
    assert svc.notifications.notify(ids["poster"], "PAYOUT_FAILED_PERMANENT").code == "HX805"


# -- transactions --------------------------------------------------------------

def test_notify_vanishes_with_the_callers_rollback(svc, db, conn, ids):
    with pytest.raises(RuntimeError), db.transaction():
        svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
        raise RuntimeError("the caller's work failed")
    assert rows(conn, ids["poster"]) == []


def test_notify_commits_with_the_caller(svc, db, conn, ids):
    with db.transaction():
        svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert len(rows(conn, ids["poster"])) == 1


def test_an_event_reads_each_recipient_once_per_task_and_keeps_every_rule(svc, db, conn, ids, monkeypatch):
    """Inside event() a recipient notified about one task several times is read (and locked)
    once; dedupe, grouping and the bucket switch still apply to each notification."""
    reads: list[Any] = []
    read = NotificationService._recipients
    monkeypatch.setattr(NotificationService, "_recipients",
                        staticmethod(lambda conn, pairs: reads.extend(pairs) or read(conn, pairs)))
    svc.notifications.update_preferences(ids["worker"], {"categories": {"xp_badges": False}}).unwrap()
    with db.transaction(), svc.notifications.event():
        first = svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"]).unwrap()
        assert svc.notifications.notify(ids["worker"], "XP_EARNED", task_id=ids["task"]).unwrap() is None
        svc.notifications.notify(ids["worker"], "ESCROW_RELEASED", task_id=ids["task"]).unwrap()
        again = svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"]).unwrap()
        svc.notifications.notify(ids["poster"], "RATING_REQUESTED", task_id=ids["task"]).unwrap()
    assert again["id"] == first["id"]
    assert reads == [(ids["worker"], ids["task"]), (ids["poster"], ids["task"])]
    assert sorted(r["category"] for r in rows(conn, ids["worker"])) == ["ESCROW_RELEASED", "PROOF_ACCEPTED"]
    # The next event reads again.
    with db.transaction(), svc.notifications.event():
        svc.notifications.notify(ids["worker"], "RATING_REQUESTED", task_id=ids["task"]).unwrap()
    assert len(reads) == 3


def test_an_event_records_its_notices_together_when_it_ends(svc, db, conn, ids, monkeypatch):
    """Notices given to record_all inside event() wait for its end: then one read of their
    recipients and one insert for all. A record() in between sends the waiting ones first, in
    their order (its repeat is found); a bad notice still fails where it is given."""
    calls: list[str] = []
    for name in ("_recipients", "_insert_unless_repeat_all"):
        real = getattr(NotificationService, name)
        monkeypatch.setattr(NotificationService, name,
                            staticmethod(lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a)))
    task = ids["task"]
    with db.transaction() as tx, svc.notifications.event():
        svc.notifications.record_all(tx, [Notice(ids["worker"], "PROOF_ACCEPTED", task_id=task)])
        svc.notifications.record_all(tx, [Notice(ids["worker"], "ESCROW_RELEASED", task_id=task),
                                          Notice(ids["poster"], "RATING_REQUESTED", task_id=task)])
        with pytest.raises(ValidationError):
            svc.notifications.record_all(tx, [Notice(ids["worker"], "NO_SUCH_CATEGORY", task_id=task)])
        assert calls == [] and rows(conn, ids["worker"]) == []
    assert calls == ["_recipients", "_insert_unless_repeat_all"]
    assert sorted(r["category"] for r in rows(conn, ids["worker"])) == ["ESCROW_RELEASED", "PROOF_ACCEPTED"]
    assert [r["category"] for r in rows(conn, ids["poster"])] == ["RATING_REQUESTED"]

    with db.transaction() as tx, svc.notifications.event():
        svc.notifications.record_all(tx, [Notice(ids["poster"], "TASK_ACCEPTED", task_id=task)])
        first = svc.notifications.record(tx, ids["poster"], "TASK_ACCEPTED", task_id=task)
    assert first is not None and [r["id"] for r in rows(conn, ids["poster"]) if r["category"] == "TASK_ACCEPTED"] == [
        first["id"]]


def test_an_event_that_raises_records_none_of_its_notices(svc, db, conn, ids):
    with pytest.raises(RuntimeError), db.transaction() as tx, svc.notifications.event():
        svc.notifications.record_all(tx, [Notice(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"])])
        raise RuntimeError("the event's work failed")
    with db.transaction(), svc.notifications.event():
        pass
    assert rows(conn, ids["worker"]) == []


def test_record_all_leaves_the_rows_recording_each_in_order_would(svc, db, conn, ids):
    """A batch (one read, as few inserts as its notices allow) keeps every rule: a repeat inside
    the batch adds nothing, a later message of a task joins the group the earlier one started,
    a switched-off bucket records nothing."""
    svc.notifications.update_preferences(ids["worker"], {"categories": {"xp_badges": False}}).unwrap()
    task = ids["task"]
    with db.transaction() as tx:
        svc.notifications.record_all(tx, [
            Notice(ids["poster"], "TASK_ACCEPTED", task_id=task),
            Notice(ids["worker"], "TASK_WORKER_ASSIGNED", task_id=task),
            Notice(ids["poster"], "TASK_ACCEPTED", task_id=task),
            Notice(ids["worker"], "XP_EARNED", task_id=task),
            Notice(ids["worker"], "NEW_MESSAGE", task_id=task, metadata={"message_id": "m1", "preview": "one"}),
            Notice(ids["worker"], "NEW_MESSAGE", task_id=task, metadata={"message_id": "m2", "preview": "two"})])
    assert [r["category"] for r in rows(conn, ids["poster"])] == ["TASK_ACCEPTED"]
    worker = rows(conn, ids["worker"])  # all at the test clock's one instant
    assert sorted(r["category"] for r in worker) == ["NEW_MESSAGE", "NEW_MESSAGE", "TASK_WORKER_ASSIGNED"]
    first, second = sorted((r for r in worker if r["category"] == "NEW_MESSAGE"), key=lambda r: r["group_position"])
    assert (first["body"], second["body"]) == ("one", "two")
    assert (second["group_id"], second["group_position"]) == (first["group_id"], 2)


def test_record_all_counts_a_cap_across_its_own_notices(svc, db, conn):
    """Notices of one cap group for one recipient go in order: the fourth trust notice of the
    hour in one batch is held like the fourth sent one by one."""
    user = f.user(conn)
    with db.transaction() as tx:
        svc.notifications.record_all(tx, [Notice(user, "TRUST_TIER_UP", metadata={"new_tier": n})
                                          for n in (2, 3, 4)] + [Notice(user, "TRUST_TIER_DOWN")])
    made = rows(conn, user)  # all at the test clock's one instant
    assert sorted(r["category"] for r in made) == ["TRUST_TIER_DOWN"] + ["TRUST_TIER_UP"] * 3
    assert sorted("push" in r["channels"] for r in made) == [False, True, True, True]
    held = next(r for r in made if "push" not in r["channels"])
    assert (held["category"], held["metadata"]["push_held"]) == ("TRUST_TIER_DOWN", "frequency_cap")


def test_record_all_reads_its_recipients_once_and_inserts_once(svc, db, conn, ids, monkeypatch):
    """Two parties told of one event: one read for both, one insert for both."""
    calls: list[str] = []
    for name in ("_recipients", "_insert_unless_repeat_all"):
        real = getattr(NotificationService, name)
        monkeypatch.setattr(NotificationService, name,
                            staticmethod(lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a)))
    with db.transaction() as tx:
        svc.notifications.record_all(tx, [Notice(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]),
                                          Notice(ids["worker"], "TASK_WORKER_ASSIGNED", task_id=ids["task"])])
    assert calls == ["_recipients", "_insert_unless_repeat_all"]
    assert [r["category"] for r in rows(conn, ids["poster"]) + rows(conn, ids["worker"])] == [
        "TASK_ACCEPTED", "TASK_WORKER_ASSIGNED"]


def test_a_concurrent_copy_of_an_event_waits_for_its_lock_and_is_deduplicated(svc, db, conn, ids):
    """Two transactions record the same notification at once: the second waits on the event's
    advisory lock until the first commits, then finds the first's row instead of adding one."""
    recorded: dict[str, Any] = {}
    first_recorded, release = threading.Event(), threading.Event()

    def first() -> None:
        with db.transaction():
            recorded["first"] = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
            first_recorded.set()
            release.wait(30)

    def second() -> None:
        recorded["second"] = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_recorded.wait(30)
    threads[1].start()
    try:
        for _ in range(600):  # until the second copy waits on the lock the first holds
            if conn.execute("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                            ).fetchone()["n"]:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the second copy never waited for the event's lock")
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert recorded["second"]["id"] == recorded["first"]["id"]
    assert len(rows(conn, ids["poster"])) == 1


# -- preferences -----------------------------------------------------------------

def test_preferences_defaults(svc, conn):
    user = f.user(conn)
    assert svc.notifications.get_preferences(user).unwrap() == {
        "push_enabled": True, "email_enabled": False, "sms_enabled": False,
        "quiet_hours": {"enabled": True, "start": "22:00", "end": "07:00", "timezone": "UTC"},
        "categories": {"task_updates": True, "messages": True, "xp_badges": True, "marketing": False},
        "read_receipts": True,
    }


def test_preferences_partial_update_keeps_the_rest(svc, conn):
    user = f.user(conn)
    svc.notifications.update_preferences(user, {"categories": {"messages": False}}).unwrap()
    prefs = svc.notifications.update_preferences(
        user, {"quiet_hours": {"end": "08:30"}, "read_receipts": False, "email_enabled": True}).unwrap()
    assert prefs["categories"] == {"task_updates": True, "messages": False, "xp_badges": True,
                                   "marketing": False}
    assert prefs["quiet_hours"] == {"enabled": True, "start": "22:00", "end": "08:30", "timezone": "UTC"}
    assert prefs["read_receipts"] is False
    assert prefs["email_enabled"] is True
    assert svc.notifications.get_preferences(user).unwrap() == prefs
    stored = conn.execute("SELECT quiet_hours_end::text AS e, count(*) OVER () AS n "
                          "FROM notification_preferences WHERE user_id = %s", (user,)).fetchone()
    assert (stored["e"], stored["n"]) == ("08:30:00", 1)


@pytest.mark.parametrize("patch", [
    {}, {"colour": "blue"}, {"push_enabled": "yes"}, {"push_enabled": 1},
    {"quiet_hours": {"start": "25:00"}}, {"quiet_hours": {"end": "7am"}},
    {"quiet_hours": {"timezone": "Mars/Olympus"}}, {"quiet_hours": "22-07"},
    {"categories": {"spam": True}}, {"categories": {"messages": None}}, {"read_receipts": "off"},
])
def test_preferences_invalid_patch_is_refused(svc, conn, patch):
    user = f.user(conn)
    assert svc.notifications.update_preferences(user, patch).code == "VALIDATION_ERROR"
    assert conn.execute("SELECT count(*) AS n FROM notification_preferences").fetchone()["n"] == 0


def test_preferences_unknown_user_is_hx504(svc):
    assert svc.notifications.get_preferences(uuid.uuid4()).code == "HX504"
    assert svc.notifications.update_preferences(uuid.uuid4(), {"push_enabled": False}).code == "HX504"


def test_preferences_disabled_bucket_writes_nothing(svc, conn, ids):
    svc.notifications.update_preferences(ids["worker"], {"categories": {"xp_badges": False}}).unwrap()
    assert svc.notifications.notify(ids["worker"], "BADGE_EARNED", task_id=ids["task"]).unwrap() is None
    assert svc.notifications.notify(ids["worker"], "XP_EARNED", task_id=ids["task"]).unwrap() is None
    assert rows(conn, ids["worker"]) == []
    assert svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"]).unwrap()


def test_preferences_marketing_is_off_by_default(svc, conn):
    user = f.user(conn)
    assert svc.notifications.notify(user, "SYSTEM_ANNOUNCEMENT").unwrap() is None
    svc.notifications.update_preferences(user, {"categories": {"marketing": True}}).unwrap()
    assert svc.notifications.notify(user, "SYSTEM_ANNOUNCEMENT").unwrap() is not None


def test_preferences_payment_failure_cannot_be_switched_off(svc, conn, ids):
    svc.notifications.update_preferences(ids["poster"], {"categories": {"task_updates": False}}).unwrap()
    assert svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap() is None
    assert svc.notifications.notify(ids["poster"], "PAYMENT_FAILED", task_id=ids["task"]).unwrap()


def test_preferences_push_disabled_keeps_in_app_only(svc, ids):
    svc.notifications.update_preferences(ids["poster"], {"push_enabled": False}).unwrap()
    item = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert item["channels"] == ["in_app"]
    assert "push_held" not in item["metadata"]


def test_preferences_email_opt_in_adds_email_for_payments(svc, ids):
    svc.notifications.update_preferences(ids["worker"], {"email_enabled": True}).unwrap()
    paid = svc.notifications.notify(ids["worker"], "ESCROW_RELEASED", task_id=ids["task"]).unwrap()
    xp = svc.notifications.notify(ids["worker"], "XP_EARNED", task_id=ids["task"]).unwrap()
    assert set(paid["channels"]) == {"push", "in_app", "email"}
    assert "email" not in xp["channels"]


def test_preferences_paused_account_is_silent(svc, conn, ids):
    conn.execute("UPDATE users SET account_status = 'PAUSED' WHERE id = %s", (ids["worker"],))
    item = svc.notifications.notify(ids["worker"], "PROOF_REJECTED", task_id=ids["task"]).unwrap()
    assert item["channels"] == ["in_app"]
    assert item["metadata"]["push_held"] == "account_paused"


# -- quiet hours ---------------------------------------------------------------

def test_quiet_hours_window_arithmetic():
    from datetime import time
    assert in_quiet_hours(time(23, 0), time(22, 0), time(7, 0))
    assert in_quiet_hours(time(22, 0), time(22, 0), time(7, 0))
    assert in_quiet_hours(time(6, 59), time(22, 0), time(7, 0))
    assert not in_quiet_hours(time(7, 0), time(22, 0), time(7, 0))
    assert not in_quiet_hours(time(12, 0), time(22, 0), time(7, 0))
    assert in_quiet_hours(time(13, 0), time(12, 0), time(14, 0))
    assert not in_quiet_hours(time(14, 0), time(12, 0), time(14, 0))
    assert not in_quiet_hours(time(3, 0), time(5, 0), time(5, 0))


def test_quiet_hours_defer_push_of_medium(svc, clock, conn, ids):
    clock.now = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    item = svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"]).unwrap()
    assert item["channels"] == ["in_app"]
    assert item["metadata"]["push_held"] == "quiet_hours"
    assert item["metadata"]["push_after"] == "2026-03-11T07:00:00+00:00"
    assert len(rows(conn, ids["worker"])) == 1


def test_quiet_hours_pass_high_and_critical(svc, clock, ids):
    clock.now = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    high = svc.notifications.notify(ids["worker"], "PROOF_REJECTED", task_id=ids["task"]).unwrap()
    critical = svc.notifications.notify(ids["worker"], "TASK_OVERDUE", task_id=ids["task"],
                                        priority="CRITICAL").unwrap()
    low = svc.notifications.notify(ids["worker"], "XP_EARNED", task_id=ids["task"]).unwrap()
    assert "push" in high["channels"]
    assert "push" in critical["channels"]
    assert "push" not in low["channels"]


def test_quiet_hours_always_deliver_accepted_and_released(svc, clock, ids):
    clock.now = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    accepted = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"],
                                        priority="LOW").unwrap()
    released = svc.notifications.notify(ids["worker"], "ESCROW_RELEASED", task_id=ids["task"],
                                        priority="LOW").unwrap()
    assert "push" in accepted["channels"]
    assert "push" in released["channels"]


def test_quiet_hours_end_is_exclusive(svc, clock, ids):
    clock.now = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    item = svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"]).unwrap()
    assert "push" in item["channels"]


def test_quiet_hours_disabled_pushes_everything(svc, clock, ids):
    svc.notifications.update_preferences(ids["worker"], {"quiet_hours": {"enabled": False}}).unwrap()
    clock.now = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    item = svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"]).unwrap()
    assert "push" in item["channels"]


def test_quiet_hours_follow_the_users_time_zone(svc, clock, ids):
    svc.notifications.update_preferences(ids["worker"],
                                         {"quiet_hours": {"timezone": "America/New_York"}}).unwrap()
    clock.now = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)  # 19:30 in New York
    evening = svc.notifications.notify(ids["worker"], "PROOF_ACCEPTED", task_id=ids["task"]).unwrap()
    clock.now = datetime(2026, 3, 11, 4, 0, tzinfo=UTC)  # 00:00 in New York
    night = svc.notifications.notify(ids["worker"], "TASK_CANCELLED", task_id=ids["task"]).unwrap()
    assert "push" in evening["channels"]
    assert night["channels"] == ["in_app"]
    assert night["metadata"]["push_after"] == "2026-03-11T11:00:00+00:00"  # 07:00 EDT


# -- frequency caps ----------------------------------------------------------------

def test_caps_trust_three_per_hour(svc, clock, conn):
    user = f.user(conn)
    pushed = []
    for _ in range(4):
        item = svc.notifications.notify(user, "TRUST_TIER_UP", metadata={"new_tier": 2}).unwrap()
        pushed.append("push" in item["channels"])
        clock.advance(minutes=1)
    assert pushed == [True, True, True, False]
    assert item["metadata"]["push_held"] == "frequency_cap"
    assert item["metadata"]["push_after"] == (NOON + timedelta(hours=1)).isoformat()
    assert len(rows(conn, user)) == 4
    # TRUST_TIER_DOWN shares the cap.
    assert "push" not in svc.notifications.notify(user, "TRUST_TIER_DOWN").unwrap()["channels"]
    clock.now = NOON + timedelta(hours=1, seconds=1)
    assert "push" in svc.notifications.notify(user, "TRUST_TIER_UP").unwrap()["channels"]


def test_caps_trust_ten_per_day(svc, clock, conn):
    user = f.user(conn)
    pushed = []
    for _ in range(11):
        pushed.append("push" in svc.notifications.notify(user, "TRUST_TIER_UP").unwrap()["channels"])
        clock.advance(minutes=61)
    assert pushed == [True] * 10 + [False]
    clock.now = NOON + timedelta(days=1, seconds=1)
    assert "push" in svc.notifications.notify(user, "TRUST_TIER_UP").unwrap()["channels"]


def test_caps_live_match_ten_per_hour(svc, clock, conn):
    user = f.user(conn)
    pushed = []
    for _ in range(11):
        task = f.task(conn)
        pushed.append("push" in svc.notifications.notify(user, "LIVE_TASK_MATCH",
                                                        task_id=task).unwrap()["channels"])
        clock.advance(seconds=30)
    assert pushed == [True] * 10 + [False]


def test_caps_system_five_per_hour(svc, clock, conn):
    user = f.user(conn)
    svc.notifications.update_preferences(user, {"categories": {"marketing": True}}).unwrap()
    pushed = []
    for _ in range(6):
        pushed.append("push" in svc.notifications.notify(user, "SYSTEM_ANNOUNCEMENT").unwrap()["channels"])
        clock.advance(minutes=1)
    assert pushed == [True] * 5 + [False]


def test_caps_do_not_limit_task_updates(svc, clock, conn):
    user = f.user(conn)
    for _ in range(15):
        ids = f.accepted_task(conn)
        conn.execute("UPDATE tasks SET worker_id = %s WHERE id = %s", (user, ids["task"]))
        item = svc.notifications.notify(user, "PROOF_REJECTED", task_id=ids["task"]).unwrap()
        assert "push" in item["channels"]


# -- dedupe and grouping ---------------------------------------------------------------

def test_dedupe_replay_within_five_minutes_returns_the_first(svc, clock, conn, ids):
    first = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    clock.advance(minutes=4, seconds=59)
    again = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert again["id"] == first["id"]
    assert len(rows(conn, ids["poster"])) == 1
    clock.advance(seconds=2)
    later = svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    assert later["id"] != first["id"]
    assert len(rows(conn, ids["poster"])) == 2


def test_dedupe_is_per_category_and_recipient(svc, conn, ids):
    svc.notifications.notify(ids["poster"], "TASK_ACCEPTED", task_id=ids["task"]).unwrap()
    svc.notifications.notify(ids["poster"], "ESCROW_FUNDED", task_id=ids["task"]).unwrap()
    svc.notifications.notify(ids["worker"], "TASK_WORKER_ASSIGNED", task_id=ids["task"]).unwrap()
    assert len(rows(conn, ids["poster"])) == 2
    assert len(rows(conn, ids["worker"])) == 1


def test_dedupe_tells_badges_and_messages_apart(svc, conn, ids):
    for badge in ("first-task", "level-3", "first-task"):
        svc.notifications.notify(ids["worker"], "BADGE_EARNED", task_id=ids["task"],
                                 metadata={"badge_type": badge}).unwrap()
    for message in ("m1", "m2", "m2"):
        svc.notifications.notify(ids["worker"], "NEW_MESSAGE", task_id=ids["task"],
                                 metadata={"message_id": message, "preview": message}).unwrap()
    stored = rows(conn, ids["worker"])
    assert sorted(r["metadata"].get("badge_type", "") for r in stored if r["category"] == "BADGE_EARNED") \
        == ["first-task", "level-3"]
    assert [r["body"] for r in stored if r["category"] == "NEW_MESSAGE"] == ["m1", "m2"]
    badge = next(r for r in stored if r["metadata"].get("badge_type") == "level-3")
    assert badge["body"] == "You earned the Level 3 badge."


def test_grouping_same_category_within_five_minutes(svc, clock, conn, ids):
    made = []
    for n in range(7):
        made.append(svc.notifications.notify(ids["worker"], "NEW_MESSAGE", task_id=ids["task"],
                                             metadata={"message_id": f"m{n}", "preview": "hi"}).unwrap())
        clock.advance(minutes=1)
    assert [m["group_position"] for m in made] == [1, 2, 3, 4, 5, 1, 2]
    assert {m["group_id"] for m in made[:5]} == {made[0]["id"]}
    assert made[5]["group_id"] == made[5]["id"]
    clock.advance(minutes=6)
    alone = svc.notifications.notify(ids["worker"], "NEW_MESSAGE", task_id=ids["task"],
                                     metadata={"message_id": "late"}).unwrap()
    assert (alone["group_id"], alone["group_position"]) == (alone["id"], 1)


# -- inbox ---------------------------------------------------------------------------

def _fill(svc: Services, clock: Clock, user: Any, n: int) -> list[dict[str, Any]]:
    made = []
    for i in range(n):
        made.append(svc.notifications.notify(user, "XP_EARNED", metadata={"effective_xp": i + 1}).unwrap())
        clock.advance(minutes=10)
    return made


def test_list_pages_newest_first(svc, clock, conn):
    user = f.user(conn)
    made = _fill(svc, clock, user, 25)
    first = svc.notifications.list(user).unwrap()
    assert len(first["notifications"]) == 20
    assert (first["total"], first["unread_count"], first["has_more"]) == (25, 25, True)
    assert [n["id"] for n in first["notifications"]] == [m["id"] for m in reversed(made)][:20]
    second = svc.notifications.list(user, limit=20, offset=20).unwrap()
    assert [n["id"] for n in second["notifications"]] == [m["id"] for m in reversed(made)][20:]
    assert second["has_more"] is False
    item = second["notifications"][0]
    assert set(item) >= {"id", "user_id", "type", "title", "body", "priority", "task_id", "deep_link",
                         "read", "created_at", "metadata"}


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (101, 0), (20, -1)])
def test_list_bad_paging_is_refused(svc, conn, limit, offset):
    assert svc.notifications.list(f.user(conn), limit=limit, offset=offset).code == "VALIDATION_ERROR"


def test_list_unread_only_and_counts(svc, clock, conn):
    user = f.user(conn)
    made = _fill(svc, clock, user, 5)
    assert svc.notifications.mark_read(user, [made[0]["id"], made[1]["id"]]).unwrap() == {"marked_count": 2}
    page = svc.notifications.list(user, unread_only=True).unwrap()
    assert (page["total"], page["unread_count"], len(page["notifications"])) == (3, 3, 3)
    assert all(not n["read"] for n in page["notifications"])
    everything = svc.notifications.list(user).unwrap()
    assert (everything["total"], everything["unread_count"]) == (5, 3)


def test_list_shows_only_own_and_unexpired(svc, clock, conn):
    user, other = f.user(conn), f.user(conn)
    _fill(svc, clock, other, 2)
    _fill(svc, clock, user, 1)
    assert svc.notifications.list(user).unwrap()["total"] == 1
    clock.advance(days=30)
    assert svc.notifications.list(user).unwrap() == {"notifications": [], "unread_count": 0, "total": 0,
                                                     "has_more": False}


def test_mark_read_only_own_unread(svc, clock, conn):
    user, other = f.user(conn), f.user(conn)
    mine, theirs = _fill(svc, clock, user, 2), _fill(svc, clock, other, 1)
    ids = [mine[0]["id"], theirs[0]["id"]]
    assert svc.notifications.mark_read(user, ids).unwrap() == {"marked_count": 1}
    assert svc.notifications.mark_read(user, ids).unwrap() == {"marked_count": 0}
    row = conn.execute("SELECT * FROM notifications WHERE id = %s", (mine[0]["id"],)).fetchone()
    assert row["read_at"] == clock.now
    assert row["sent_at"] is not None and row["delivered_at"] is not None
    assert conn.execute("SELECT read_at FROM notifications WHERE id = %s",
                        (theirs[0]["id"],)).fetchone()["read_at"] is None


def test_mark_read_keeps_the_timestamp_chain(svc, clock, conn):
    user = f.user(conn)
    item = _fill(svc, clock, user, 1)[0]
    # The delivery worker stamped it with its own (later) clock.
    conn.execute("UPDATE notifications SET sent_at = %s, delivered_at = %s WHERE id = %s",
                 (clock.now + timedelta(hours=1), clock.now + timedelta(hours=2), item["id"]))
    assert svc.notifications.mark_read(user, [item["id"]]).unwrap() == {"marked_count": 1}
    row = conn.execute("SELECT * FROM notifications WHERE id = %s", (item["id"],)).fetchone()
    assert row["read_at"] >= row["delivered_at"] >= row["sent_at"] >= row["created_at"]


@pytest.mark.parametrize("bad", [[], ["nope"], "abc", None])
def test_mark_read_bad_ids_are_refused(svc, conn, bad):
    assert svc.notifications.mark_read(f.user(conn), bad).code == "VALIDATION_ERROR"


def test_mark_all_read(svc, clock, conn):
    user, other = f.user(conn), f.user(conn)
    _fill(svc, clock, user, 3)
    _fill(svc, clock, other, 2)
    assert svc.notifications.mark_all_read(user).unwrap() == {"marked_count": 3}
    assert svc.notifications.mark_all_read(user).unwrap() == {"marked_count": 0}
    assert svc.notifications.list(other).unwrap()["unread_count"] == 2
