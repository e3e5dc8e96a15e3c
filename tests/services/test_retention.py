"""Retention passes: per rule, rows older than the window go, newer ones stay, a second run
removes nothing, a run is bounded, and the ledgers are untouched."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from psycopg import sql

from hustlexp import cli
from hustlexp.jobs import run_pass
from tests import factories

LEDGERS = ("xp_ledger", "trust_ledger", "badges", "admin_actions", "money_outbox")


@pytest.fixture
def ledgers(conn):
    """Rows in every append-only ledger, and a check that a pass left them all alone."""
    ids = factories.completed_task(conn)
    factories.xp_row(conn, ids)
    factories.badge(conn, ids["worker"])
    factories.trust_change(conn, ids["worker"], 2)
    factories.admin_action(conn)
    factories.outbox(conn, ids["escrow"], "TRANSFER", 4500 * 85 // 100)

    def snapshot():
        return {t: [tuple(r.values()) for r in conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(t)))] for t in LEDGERS}

    before = snapshot()
    yield lambda: snapshot() == before


def _ended(conn, task_id, days):
    """Backdate the end of a terminal task by `days`."""
    conn.execute("UPDATE tasks SET completed_at = now() - make_interval(days => %s), "
                 "cancelled_at = CASE WHEN cancelled_at IS NOT NULL THEN now() - make_interval(days => %s) END "
                 "WHERE id = %s", (days, days, task_id))


def _count(conn, query, *params):
    return conn.execute(query, params).fetchone()["n"]


def test_notifications_older_than_30_days_go(services, conn, ledgers):
    user = factories.user(conn)
    for days in (31, 45, 29, 1):
        conn.execute("""INSERT INTO notifications (user_id, category, title, body, deep_link, priority, created_at)
                        VALUES (%s, 'system', 'Hi', 'Body', 'hustlexp://trust', 'LOW',
                                now() - make_interval(days => %s))""", (user, days))
    assert run_pass("purge-notifications", services)["removed"] == 2
    assert _count(conn, "SELECT count(*) AS n FROM notifications WHERE created_at < now() - interval '30 days'") == 0
    assert _count(conn, "SELECT count(*) AS n FROM notifications") == 2
    assert run_pass("purge-notifications", services)["removed"] == 0
    assert ledgers()


def test_message_locations_are_cleared_after_their_ttl(services, conn, ledgers):
    ids = factories.accepted_task(conn)
    old = factories.message(conn, ids["task"], ids["worker"], ids["poster"], message_type="LOCATION",
                            content=None, location_latitude=40.1, location_longitude=-73.2,
                            location_expires_at="2020-01-01T00:00:00Z")
    live = factories.message(conn, ids["task"], ids["worker"], ids["poster"], message_type="LOCATION",
                             content=None, location_latitude=40.1, location_longitude=-73.2,
                             location_expires_at="2999-01-01T00:00:00Z")
    assert run_pass("purge-message-locations", services)["removed"] == 1
    rows = {r["id"]: r for r in conn.execute("SELECT * FROM task_messages")}
    assert rows[old]["location_latitude"] is None and rows[old]["location_longitude"] is None
    assert rows[live]["location_latitude"] is not None
    assert run_pass("purge-message-locations", services)["removed"] == 0
    assert ledgers()


def test_messages_and_their_photos_go_90_days_after_the_task_ended(services, conn, ledgers):
    services.storage.put("messages/a/1.jpg", b"old", "image/jpeg")
    services.storage.put("messages/b/1.jpg", b"new", "image/jpeg")
    old, recent, live = factories.accepted_task(conn), factories.accepted_task(conn), factories.accepted_task(conn)
    for ids, key in ((old, "messages/a/1.jpg"), (recent, "messages/b/1.jpg"), (live, None)):
        factories.message(conn, ids["task"], ids["poster"], ids["worker"])
        if key:
            factories.message(conn, ids["task"], ids["worker"], ids["poster"], message_type="PHOTO", content=None,
                              photo_urls=[key], photo_count=1)
    for ids, days in ((old, 91), (recent, 89)):
        conn.execute("UPDATE tasks SET state = 'CANCELLED', cancelled_at = now() WHERE id = %s", (ids["task"],))
        _ended(conn, ids["task"], days)
    out = run_pass("purge-messages", services)
    assert out == {"removed": 2, "batches": 1, "photos": 1}
    assert _count(conn, "SELECT count(*) AS n FROM task_messages WHERE task_id = %s", old["task"]) == 0
    assert _count(conn, "SELECT count(*) AS n FROM task_messages WHERE task_id = %s", recent["task"]) == 2
    assert _count(conn, "SELECT count(*) AS n FROM task_messages WHERE task_id = %s", live["task"]) == 1
    assert not services.storage.exists("messages/a/1.jpg") and services.storage.exists("messages/b/1.jpg")
    assert run_pass("purge-messages", services)["removed"] == 0
    assert ledgers()


def test_proof_photos_are_soft_deleted_90_days_after_the_task_ended_unless_disputed(services, conn, ledgers):
    old = factories.task_in(conn, "COMPLETED")
    recent = factories.task_in(conn, "COMPLETED")
    disputed = factories.task_in(conn, "DISPUTED")
    conn.execute("""INSERT INTO disputes (task_id, escrow_id, initiated_by, poster_id, worker_id, reason, description)
                    VALUES (%s, %s, %s, %s, %s, 'quality', 'not done')""",
                 (disputed["task"], disputed["escrow"], disputed["poster"], disputed["poster"], disputed["worker"]))
    conn.execute("UPDATE tasks SET updated_at = now() - interval '200 days' WHERE id = %s", (disputed["task"],))
    _ended(conn, old["task"], 120)
    _ended(conn, recent["task"], 30)
    photos = {r["task_id"]: r for r in conn.execute(
        "SELECT p.task_id, ph.id, ph.storage_key FROM proof_photos ph JOIN proofs p ON p.id = ph.proof_id")}
    for row in photos.values():
        services.storage.put(row["storage_key"], b"jpeg", "image/jpeg")
    assert run_pass("purge-proof-photos", services)["removed"] == 1
    deleted = {r["id"] for r in conn.execute("SELECT id FROM proof_photos WHERE deleted_at IS NOT NULL")}
    assert deleted == {photos[old["task"]]["id"]}
    assert not services.storage.exists(photos[old["task"]]["storage_key"])
    assert services.storage.exists(photos[recent["task"]]["storage_key"])
    assert services.storage.exists(photos[disputed["task"]]["storage_key"])
    assert run_pass("purge-proof-photos", services)["removed"] == 0
    assert ledgers()


def test_message_photos_take_their_evidence_and_upload_rows_with_them(services, conn, ledgers):
    ids = factories.accepted_task(conn)
    key = factories.confirmed_upload(conn, ids["worker"], ids["task"])
    services.storage.put(key, b"jpeg", "image/jpeg")
    services.messaging.send(ids["task"], ids["worker"], message_type="PHOTO", photo_keys=[key]).unwrap()
    assert _count(conn, "SELECT count(*) AS n FROM evidence WHERE storage_key = %s", key) == 1
    conn.execute("UPDATE tasks SET state = 'CANCELLED', cancelled_at = now() WHERE id = %s", (ids["task"],))
    _ended(conn, ids["task"], 91)
    assert run_pass("purge-messages", services)["photos"] == 1
    assert _count(conn, "SELECT count(*) AS n FROM evidence WHERE storage_key = %s", key) == 0
    assert _count(conn, "SELECT count(*) AS n FROM uploads WHERE storage_key = %s", key) == 0
    assert not services.storage.exists(key)
    assert ledgers()


def test_stale_upload_intents_go_with_their_objects(services, clock, conn, ledgers):
    ids = factories.accepted_task(conn)
    now = clock()
    rows = {
        "pending, expired": ("PENDING", now - timedelta(minutes=1), True),
        "confirmed, never used": ("CONFIRMED", now - timedelta(minutes=1), True),
        "pending, in time": ("PENDING", now + timedelta(minutes=10), False),
        "confirmed, in time": ("CONFIRMED", now + timedelta(hours=10), False),
        "attached long ago": ("ATTACHED", now - timedelta(days=30), False),
    }
    keys = {}
    for name, (state, expires, _) in rows.items():
        pending = state == "PENDING"
        keys[name] = factories.confirmed_upload(
            conn, ids["worker"], ids["task"], state=state, expires_at=expires,
            checksum_sha256=None if pending else "0" * 64, confirmed_at=None if pending else now,
            attached_at=now if state == "ATTACHED" else None)
        services.storage.put(keys[name], b"jpeg", "image/jpeg")
    assert run_pass("purge-upload-intents", services)["removed"] == 2
    left = {r["storage_key"] for r in conn.execute("SELECT storage_key FROM uploads")}
    assert left == {keys[n] for n, (_, _, gone) in rows.items() if not gone}
    for name, (_, _, gone) in rows.items():
        assert services.storage.exists(keys[name]) is not gone, name
    assert run_pass("purge-upload-intents", services)["removed"] == 0
    assert services.retention.purge_upload_intents(max_rows=1).unwrap()["removed"] == 0
    assert ledgers()


def test_processed_stripe_events_go_after_the_retry_window(services, conn, ledgers):
    for name, days in (("evt_old", 4), ("evt_older", 40), ("evt_recent", 2)):
        conn.execute("INSERT INTO processed_stripe_events (event_id, event_type, result, processed_at) "
                     "VALUES (%s, 'payment_intent.succeeded', 'applied', now() - make_interval(days => %s))",
                     (name, days))
    assert run_pass("purge-stripe-events", services)["removed"] == 2
    assert [r["event_id"] for r in conn.execute("SELECT event_id FROM processed_stripe_events")] == ["evt_recent"]
    assert ledgers()


def test_a_run_is_bounded(services, conn):
    for _ in range(5):
        conn.execute("INSERT INTO processed_stripe_events (event_id, event_type, result, processed_at) "
                     "VALUES (gen_random_uuid()::text, 'charge.refunded', 'applied', now() - interval '10 days')")
    assert services.retention.purge_stripe_events(max_rows=3).unwrap() == {"removed": 3, "batches": 1}
    assert services.retention.purge_stripe_events(max_rows=3).unwrap()["removed"] == 2


@pytest.mark.parametrize("name", ["purge-notifications", "purge-message-locations", "purge-messages",
                                  "purge-proof-photos", "purge-stripe-events",
                                  "purge-upload-intents"])
def test_each_pass_runs_from_the_command_line(name, db_url, conn, monkeypatch, capsys, tmp_path):
    conn.execute("INSERT INTO processed_stripe_events (event_id, event_type, result, processed_at) "
                 "VALUES ('evt_cli', 'charge.refunded', 'applied', now() - interval '10 days')")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("HUSTLEXP_STORAGE_DIR", str(tmp_path))
    assert cli.main(["jobs", "run", name]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["job"] == name and out["removed"] == (1 if name == "purge-stripe-events" else 0)
