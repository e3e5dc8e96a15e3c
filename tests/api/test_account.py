"""The owner's account rights: pause/resume (PRODUCT_SPEC §20), export (§16.3) and deletion
with its grace period (§16.4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hustlexp.jobs import run_pass
from tests import factories
from tests.api import uploading
from tests.api.conftest import data, error


def test_pause_and_resume_routes(client, register, conn):
    user, headers = register(client)
    assert client.post("/api/users/me/pause").status_code == 401
    assert client.post("/api/users/me/pause", headers=headers, json={"reason": "x" * 201}).status_code == 400
    paused = data(client.post("/api/users/me/pause", headers=headers, json={"reason": "Exams"}))
    assert paused["account_status"] == "PAUSED"
    assert data(client.post("/api/users/me/pause", headers=headers))["account_status"] == "PAUSED"
    refused = client.patch("/api/users/me", headers=headers, json={"full_name": "New"})
    assert refused.status_code == 403 and error(refused)["code"] == "HX602"
    row = conn.execute("SELECT pause_reason, pause_streak_snapshot FROM users WHERE id = %s", (user["id"],)).fetchone()
    assert row["pause_reason"] == "Exams" and row["pause_streak_snapshot"] == 0
    assert client.post("/api/users/me/resume").status_code == 401
    assert data(client.post("/api/users/me/resume", headers=headers))["account_status"] == "ACTIVE"
    assert data(client.post("/api/users/me/resume", headers=headers))["account_status"] == "ACTIVE"


def _paused_for(conn, user_id, days, *, streak, tier):
    conn.execute("UPDATE users SET current_streak = %s WHERE id = %s", (streak, user_id))
    factories.trust_change(conn, user_id, tier)
    conn.execute("UPDATE users SET account_status = 'PAUSED', paused_at = now() - make_interval(days => %s) "
                 "WHERE id = %s", (days, user_id))


def test_resume_applies_the_pause_length_rules(client, register, conn):
    short, short_h = register(client)
    medium, medium_h = register(client)
    long_, long_h = register(client)
    _paused_for(conn, short["id"], 14, streak=6, tier=3)
    _paused_for(conn, medium["id"], 30, streak=6, tier=3)
    _paused_for(conn, long_["id"], 91, streak=6, tier=3)
    results = {name: data(client.post("/api/users/me/resume", headers=h))
               for name, h in (("short", short_h), ("medium", medium_h), ("long", long_h))}
    assert {k: (v["current_streak"], v["trust_tier"]) for k, v in results.items()} == {
        "short": (6, 3), "medium": (1, 3), "long": (1, 2)}
    ledger = conn.execute("SELECT reason, old_tier, new_tier FROM trust_ledger WHERE user_id = %s "
                          "ORDER BY changed_at DESC LIMIT 1", (long_["id"],)).fetchone()
    assert (ledger["reason"], ledger["old_tier"], ledger["new_tier"]) == ("PAUSE_OVER_90_DAYS", 3, 2)


def test_export_streams_everything_we_hold(world):
    task = world.accepted()
    world.client.post(f"/api/tasks/{task['id']}/messages", headers=world.wh,
                      json={"message_type": "TEXT", "content": "Running five minutes late"})
    assert world.client.get("/api/users/me/export").status_code == 401
    response = world.client.get("/api/users/me/export", headers=world.wh)
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Type"].startswith("application/json")
    doc = json.loads(response.get_data())
    assert doc["profile"]["id"] == world.worker["id"] and doc["profile"]["email"] == world.worker["email"]
    assert [t["id"] for t in doc["tasks"]] == [task["id"]]
    assert [m["content"] for m in doc["messages"]] == ["Running five minutes late"]
    assert {"escrows", "proofs", "disputes", "xp_ledger", "badges", "trust_history", "notifications",
            "notification_preferences", "payouts", "ratings"} <= set(doc)
    assert any(n["category"] == "TASK_WORKER_ASSIGNED" for n in doc["notifications"])
    other = json.loads(world.client.get("/api/users/me/export", headers=world.sh).get_data())
    assert other["tasks"] == [] and other["messages"] == []


def test_delete_is_refused_while_anything_is_live(world):
    task = world.accepted()
    refused = world.client.delete("/api/users/me", headers=world.wh)
    assert refused.status_code == 409 and error(refused)["details"]["tasks"] == [task["id"]]
    assert error(world.client.delete("/api/users/me", headers=world.ph))["code"] == "CONFLICT"
    assert world.client.delete("/api/users/me").status_code == 401


def test_delete_closes_now_resume_restores_within_grace(client, register, conn):
    user, headers = register(client)
    closed = data(client.delete("/api/users/me", headers=headers))
    assert closed["account_status"] == "CLOSED"
    assert datetime.fromisoformat(closed["anonymize_after"]) - datetime.fromisoformat(closed["closed_at"]) \
        == timedelta(days=7)
    locked = client.get("/api/users/me", headers=headers)
    assert locked.status_code == 403 and error(locked)["code"] == "ACCOUNT_CLOSED"
    assert error(client.post("/api/users/me/pause", headers=headers))["code"] == "ACCOUNT_CLOSED"
    assert data(client.post("/api/users/me/resume", headers=headers))["account_status"] == "ACTIVE"
    assert data(client.get("/api/users/me", headers=headers))["id"] == user["id"]


def test_after_the_grace_the_job_anonymises_and_resume_is_too_late(client, register, conn, services):
    user, headers = register(client, phone="+1 555 010 0199")
    avatar = uploading.upload(client, headers, "avatars")["upload"]["storage_key"]
    data(client.delete("/api/users/me", headers=headers))
    assert run_pass("anonymize-accounts", services) == {"anonymized": 0}  # still in its grace
    assert services.storage.exists(avatar)
    conn.execute("UPDATE users SET closed_at = %s WHERE id = %s",
                 (datetime.now(UTC) - timedelta(days=7, minutes=1), user["id"]))
    assert run_pass("anonymize-accounts", services) == {"anonymized": 1}
    row = conn.execute("SELECT * FROM users WHERE id = %s", (user["id"],)).fetchone()
    assert row["firebase_uid"] is None and row["phone"] is None and row["full_name"] == "Deleted user"
    assert row["email"] == f"deleted+{user['id']}@deleted.invalid" and row["anonymized_at"] is not None
    # The face went with the name: the avatar object and its upload record are gone.
    assert row["avatar_url"] is None and not services.storage.exists(avatar)
    assert conn.execute("SELECT count(*) AS n FROM uploads WHERE user_id = %s", (user["id"],)).fetchone()["n"] == 0
    assert error(client.get("/api/users/me", headers=headers))["code"] == "HX504"
    assert run_pass("anonymize-accounts", services) == {"anonymized": 0}
