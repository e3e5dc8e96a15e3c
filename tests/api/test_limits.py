"""Request limits (hustlexp.services.limits) through the app: 429 RATE_LIMITED with Retry-After
and RateLimit-* headers, task creation, failed sign-ins per address, webhooks exempt; and the
devices routes."""

from __future__ import annotations

import uuid
from typing import Any

from hustlexp.services.limits import RULES, judge
from tests.api.conftest import data, error
from tests.api.world import task_body


def test_limits_task_creation_is_refused_past_its_rule_with_headers(client, register):
    _, headers = register(client)
    rule = RULES["tasks.create"]
    for n in range(rule.limit):
        response = client.post("/api/tasks", json=task_body(), headers=headers)
        assert response.status_code == 201
        assert response.headers["RateLimit-Limit"] == str(rule.limit)
        assert response.headers["RateLimit-Remaining"] == str(rule.limit - n - 1)
    refused = client.post("/api/tasks", json=task_body(), headers=headers)
    assert refused.status_code == 429 and error(refused)["code"] == "RATE_LIMITED"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Limit"] == str(rule.limit) and refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == f"{rule.limit};w={rule.seconds}"
    # Another user is not limited by the first one's count, and reads are not writes.
    _, other = register(client)
    assert client.post("/api/tasks", json=task_body(), headers=other).status_code == 201
    assert client.get("/api/tasks", headers=headers).status_code == 200


def test_limits_every_write_counts_against_the_write_rule(client, register, conn):
    user, headers = register(client)
    response = client.patch("/api/notifications/preferences", json={"push_enabled": True}, headers=headers)
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == str(RULES["writes"].limit)
    row = conn.execute("SELECT hits FROM rate_limit_counters WHERE key = %s", (f"writes:{user['id']}",)).fetchone()
    assert row["hits"] == 1


def test_limits_failed_sign_ins_block_the_address_before_checking_tokens(client, register, token_for):
    _, good = register(client)
    bad = {"Authorization": "Bearer not-a-token"}
    for _ in range(RULES["auth_failures"].limit):
        assert error(client.get("/api/users/me", headers=bad))["code"] == "AUTH_INVALID"
    blocked = client.get("/api/users/me", headers=bad)
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    # The address is blocked, whatever token it sends now.
    assert client.get("/api/users/me", headers=good).status_code == 429
    assert client.get("/api/users/me", headers=good, environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 200


def test_limits_webhooks_are_exempt(client, conn):
    conn.execute("INSERT INTO rate_limit_counters (key, window_start, window_seconds, hits) "
                 "VALUES ('auth_failures:127.0.0.1', now(), 300, 1000)")
    response = client.post("/webhooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=bad"})
    assert response.status_code == 400  # refused for its signature, never for a limit


def test_limits_sliding_window_weighs_the_previous_window():
    assert judge("tasks.create", 5, 10, 30.0).allowed  # 10 * 0.5 + 5 = 10
    late = judge("tasks.create", 6, 10, 30.0)
    # 7 fit once the previous 10 weigh 3, 42 s into the window
    assert not late.allowed and late.remaining == 0 and late.retry_after == 12
    full = judge("tasks.create", 11, 0, 10.0)
    assert not full.allowed and full.retry_after == 50 + 11  # next window, once 11 * weight + 1 <= 10


def test_limits_messages_keep_their_own_rule_with_headers(client, register):
    # Messaging's limits are its own (counted from messages); their 429 carries the headers too.
    from hustlexp.api.base import domain_error_response
    from hustlexp.errors import RateLimited

    with client.application.test_request_context():
        _, _, headers = domain_error_response(RateLimited("slow down", retry_after=60, limit=10, window=3600))
    assert headers["RateLimit-Limit"] == "10" and headers["Retry-After"] == "60"


def test_devices_register_move_and_remove(client, register):
    _, alice = register(client)
    _, bob = register(client)
    body: dict[str, Any] = {"token": "fcm:tok-1", "platform": "ios"}
    assert data(client.post("/api/users/me/devices", json=body, headers=alice))["platform"] == "ios"
    assert data(client.post("/api/users/me/devices", json={**body, "platform": "android"}, headers=bob))[
        "platform"] == "android"
    # The token moved to bob: alice cannot remove it any more.
    assert client.delete("/api/users/me/devices/fcm:tok-1", headers=alice).status_code == 404
    assert data(client.delete("/api/users/me/devices/fcm:tok-1", headers=bob)) == {"removed": True}
    assert client.delete("/api/users/me/devices/fcm:tok-1", headers=bob).status_code == 404


def test_devices_bad_input_is_a_validation_error(client, register):
    _, headers = register(client)
    for body, field in (({"token": "t", "platform": "symbian"}, "platform"), ({"platform": "ios"}, "token"),
                        ({"token": "   ", "platform": "web"}, "token")):
        response = client.post("/api/users/me/devices", json=body, headers=headers)
        assert response.status_code == 400 and field in error(response)["details"]


def test_limits_uploads_are_counted_per_user(client, register, conn):
    user, headers = register(client)
    # Far over the rule in this window and the last, so a minute turning meanwhile changes nothing.
    conn.execute("INSERT INTO rate_limit_counters (key, window_start, window_seconds, hits, previous_hits) "
                 "VALUES (%s, date_bin('60 seconds', now(), 'epoch'), 60, 100, 100)", (f"uploads:{user['id']}",))
    response = client.post(f"/api/tasks/{uuid.uuid4()}/proof/photos", headers=headers)
    assert response.status_code == 429 and response.headers["RateLimit-Limit"] == str(RULES["uploads"].limit)


def test_limits_a_blocked_address_is_refused_before_the_user_is_looked_up(client, auth, conn):
    headers = auth("uid-never-registered")
    assert error(client.get("/api/users/me", headers=headers))["code"] == "HX504"  # token verified, kept
    conn.execute("INSERT INTO rate_limit_counters (key, window_start, window_seconds, hits) "
                 "VALUES ('auth_failures:127.0.0.1', now(), 300, 1000)")
    assert error(client.get("/api/users/me", headers=headers))["code"] == "RATE_LIMITED"


def test_limits_a_route_rule_refuses_only_after_the_account_checks(client, register, conn):
    user, headers = register(client)
    rule = RULES["tasks.create"]
    conn.execute("INSERT INTO rate_limit_counters (key, window_start, window_seconds, hits) "
                 "VALUES (%s, now(), %s, %s)", (f"tasks.create:{user['id']}", rule.seconds, rule.limit * 10))
    conn.execute("UPDATE users SET account_status = 'SUSPENDED' WHERE id = %s", (user["id"],))
    assert error(client.post("/api/tasks", json=task_body(), headers=headers))["code"] == "ACCOUNT_SUSPENDED"
    conn.execute("UPDATE users SET account_status = 'ACTIVE' WHERE id = %s", (user["id"],))
    assert error(client.post("/api/tasks", json=task_body(), headers=headers))["code"] == "RATE_LIMITED"
    # Counted once per attempt (writes and the route rule in the same statement as the user).
    rows = conn.execute("SELECT split_part(key, ':', 1) AS rule, hits FROM rate_limit_counters WHERE key LIKE %s",
                        (f"%:{user['id']}",)).fetchall()
    assert {r["rule"]: r["hits"] for r in rows} == {"writes": 2, "tasks.create": rule.limit * 10 + 2}
