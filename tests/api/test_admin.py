"""/api/admin: every route refuses callers without a token (401), non-admins and admins
without the route's right (403), bad input (400), and audits each mutation."""

from __future__ import annotations

import uuid

import pytest

from tests import factories
from tests.api.conftest import data, error

NOBODY = uuid.uuid4()
ROUTES = [  # (method, path, body, the admin_roles right it needs or None for any admin)
    ("get", "/api/admin/disputes", None, "can_resolve_disputes"),
    ("post", f"/api/admin/disputes/{NOBODY}/request-evidence", {"party": "worker", "note": "more"},
     "can_resolve_disputes"),
    ("get", "/api/admin/users", None, None),
    ("post", f"/api/admin/users/{NOBODY}/suspend", {"reason": "fraud"}, "can_ban_users"),
    ("post", f"/api/admin/users/{NOBODY}/unsuspend", {"reason": "appeal"}, "can_ban_users"),
    ("put", f"/api/admin/users/{NOBODY}/trust-tier", {"tier": 2, "reason": "checked"}, "can_modify_trust"),
    ("post", f"/api/admin/users/{NOBODY}/verify", {"note": "passport seen"}, "can_modify_trust"),
    ("get", "/api/admin/moderation/messages", None, "can_ban_users"),
    ("post", f"/api/admin/moderation/messages/{NOBODY}/release", {}, "can_ban_users"),
    ("delete", f"/api/admin/moderation/messages/{NOBODY}", None, "can_ban_users"),
    ("get", "/api/admin/tasks/review", None, None),
    ("get", "/api/admin/metrics", None, "can_access_financials"),
    ("get", "/api/admin/payouts?status=PENDING", None, "can_access_financials"),
    ("post", f"/api/admin/payouts/{NOBODY}/retry", None, "can_override_escrow"),
    ("get", "/api/admin/chargebacks", None, "can_access_financials"),
    ("post", f"/api/admin/escrows/{NOBODY}/clear-risk", {}, "can_override_escrow"),
]
ALL_RIGHTS = {"can_resolve_disputes": True, "can_override_escrow": True, "can_modify_trust": True,
              "can_ban_users": True, "can_access_financials": True}


@pytest.fixture
def admin(client, register, make_admin):
    user, headers = register(client)
    make_admin(user["id"], **ALL_RIGHTS)
    return user, headers


def _call(client, method, path, body, headers=None):
    kwargs = {"headers": headers or {}}
    if body is not None:
        kwargs["json"] = body
    return getattr(client, method)(path, **kwargs)


def _actions(conn, kind):
    return conn.execute("SELECT * FROM admin_actions WHERE action_type = %s ORDER BY performed_at",
                        (kind,)).fetchall()


def test_every_route_needs_a_token_an_admin_and_its_right(client, register, make_admin):
    _, stranger = register(client)
    support, support_headers = register(client)
    make_admin(support["id"], role="support")
    for method, path, body, right in ROUTES:
        assert _call(client, method, path, body).status_code == 401, path
        refused = _call(client, method, path, body, stranger)
        assert refused.status_code == 403 and error(refused)["code"] == "FORBIDDEN", path
        as_support = _call(client, method, path, body, support_headers)
        assert (as_support.status_code == 403) == (right is not None), path


def test_admin_routes_are_their_own_openapi_section(client):
    doc = client.get("/openapi.json").get_json()
    assert any(t["name"] == "admin" for t in doc["tags"])
    admin_paths = [p for p in doc["paths"] if p.startswith("/api/admin/")]
    assert len(admin_paths) == len(ROUTES)
    for path in admin_paths:
        for operation in doc["paths"][path].values():
            if isinstance(operation, dict) and "tags" in operation:
                assert operation["tags"] == ["admin"], path


def test_dispute_queue_oldest_first_with_parties_proof_messages(world, admin):
    _, headers = admin
    first, proof = world.submitted(price=4000)
    second, _ = world.submitted(price=5000)
    world.client.post(f"/api/tasks/{first['id']}/messages", headers=world.wh,
                      json={"message_type": "TEXT", "content": "All done, see the photos"})
    for task in (first, second):
        opened = world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.ph,
                                   json={"reason": "QUALITY_ISSUE", "description": "Not what I asked"})
        assert opened.status_code == 201
    queue = data(world.client.get("/api/admin/disputes", headers=headers))
    assert queue["total"] == 2 and [d["task_id"] for d in queue["disputes"]] == [first["id"], second["id"]]
    case = queue["disputes"][0]
    assert case["poster"]["id"] == world.poster["id"] and case["worker"]["id"] == world.worker["id"]
    assert case["proofs"][0]["id"] == proof["id"] and len(case["proofs"][0]["photos"]) == 1
    assert [m["content"] for m in case["messages"]] == ["All done, see the photos"]
    assert case["escrow"]["state"] == "LOCKED_DISPUTE" and case["evidence"] == []
    assert world.client.get("/api/admin/disputes?limit=0", headers=headers).status_code == 400
    paged = data(world.client.get("/api/admin/disputes?limit=1&offset=1", headers=headers))
    assert [d["task_id"] for d in paged["disputes"]] == [second["id"]]


def test_request_more_evidence_then_rule(world, admin):
    admin_user, headers = admin
    task, _ = world.submitted()
    dispute = data(world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.ph,
                                     json={"reason": "WORK_NOT_DONE", "description": "Nothing done"}))["dispute"]
    path = f"/api/admin/disputes/{dispute['id']}/request-evidence"
    bad = world.client.post(path, headers=headers, json={"party": "judge", "note": ""})
    assert bad.status_code == 400 and set(error(bad)["details"]) == {"party", "note"}
    missing = world.client.post(f"/api/admin/disputes/{NOBODY}/request-evidence", headers=headers,
                                json={"party": "worker", "note": "Photos of the hallway"})
    assert missing.status_code == 404
    asked = data(world.client.post(path, headers=headers, json={"party": "worker", "note": "Photos of the hallway"}))
    assert asked["state"] == "EVIDENCE_REQUESTED" and asked["evidence_requested_from"] == world.worker["id"]
    note = world.conn.execute("SELECT body FROM notifications WHERE user_id = %s AND category = "
                              "'DISPUTE_EVIDENCE_REQUESTED'", (world.worker["id"],)).fetchone()
    assert "Photos of the hallway" in note["body"]
    [action] = _actions(world.conn, "DISPUTE_EVIDENCE_REQUEST")
    assert action["id"] == uuid.UUID(asked["action_id"]) and action["admin_user_id"] == uuid.UUID(admin_user["id"])
    ruled = world.client.post(f"/api/disputes/{dispute['id']}/resolve", headers=headers,
                              json={"resolution": "CLIENT_WINS", "notes": "No evidence came"})
    assert ruled.status_code == 200
    assert world.client.post(path, headers=headers, json={"party": "poster", "note": "late"}).status_code == 409
    assert data(world.client.get("/api/admin/disputes", headers=headers))["total"] == 0


def test_users_search(client, register, admin, conn):
    _, headers = admin
    register(client, email="alice.smith@example.test", full_name="Alice Smith")
    bob, _ = register(client, email="bob@example.test", full_name="Bob 100% Jones")
    conn.execute("UPDATE users SET account_status = 'PAUSED' WHERE id = %s", (bob["id"],))
    found = data(client.get("/api/admin/users?q=alice", headers=headers))
    assert found["total"] == 1 and found["users"][0]["email"] == "alice.smith@example.test"
    assert data(client.get(f"/api/admin/users?q={bob['id']}", headers=headers))["users"][0]["id"] == bob["id"]
    assert [u["id"] for u in data(client.get("/api/admin/users?status=PAUSED", headers=headers))["users"]] \
        == [bob["id"]]
    assert data(client.get("/api/admin/users?q=100%25", headers=headers))["total"] == 1
    assert data(client.get("/api/admin/users?q=1_0", headers=headers))["total"] == 0
    assert data(client.get("/api/admin/users", headers=headers))["total"] == 3
    assert client.get("/api/admin/users?status=GONE", headers=headers).status_code == 400
    assert client.get("/api/admin/users?sort=name", headers=headers).status_code == 400


def test_suspend_cancels_open_tasks_flags_accepted_ones_and_locks_the_user_out(world, admin):
    admin_user, headers = admin
    open_task = world.funded(price=3000)
    accepted = world.accepted(price=4000)
    path = f"/api/admin/users/{world.poster['id']}/suspend"
    assert world.client.post(path, headers=headers, json={}).status_code == 400
    assert world.client.post(f"/api/admin/users/{NOBODY}/suspend", headers=headers,
                             json={"reason": "fraud"}).status_code == 404
    assert world.client.post(f"/api/admin/users/{admin_user['id']}/suspend", headers=headers,
                             json={"reason": "oops"}).status_code == 403
    done = data(world.client.post(path, headers=headers, json={"reason": "Chargeback fraud"}))
    assert done["previous_status"] == "ACTIVE" and done["new_status"] == "SUSPENDED"
    assert done["cancelled_task_ids"] == [open_task["id"]] and done["review_task_ids"] == [accepted["id"]]
    states = {r["id"]: r for r in world.conn.execute("SELECT id, state, review_reason FROM tasks")}
    assert states[uuid.UUID(open_task["id"])]["state"] == "CANCELLED"
    assert states[uuid.UUID(accepted["id"])]["state"] == "ACCEPTED"
    assert states[uuid.UUID(accepted["id"])]["review_reason"] == "party_suspended"
    escrow = world.conn.execute("SELECT id, state FROM escrows WHERE task_id = %s", (open_task["id"],)).fetchone()
    assert escrow["state"] == "REFUNDED"
    assert world.send_money(str(escrow["id"])) == {"transferred": 0, "refunded": 3000}
    assert world.conn.execute("SELECT 1 FROM notifications WHERE user_id = %s AND category = 'TASK_UNDER_REVIEW'",
                              (world.worker["id"],)).fetchone()
    refused = world.client.get("/api/users/me", headers=world.ph)
    assert refused.status_code == 403 and error(refused)["code"] == "ACCOUNT_SUSPENDED"
    review = data(world.client.get("/api/admin/tasks/review", headers=headers))
    assert [t["id"] for t in review["tasks"]] == [accepted["id"]]
    again = data(world.client.post(path, headers=headers, json={"reason": "still"}))
    assert again["previous_status"] == "SUSPENDED" and again["cancelled_task_ids"] == []
    assert [a["result"] for a in _actions(world.conn, "USER_SUSPEND")] == ["SUCCESS", "NO_CHANGE"]
    lifted = data(world.client.post(f"/api/admin/users/{world.poster['id']}/unsuspend", headers=headers,
                                    json={"reason": "Cleared"}))
    assert lifted["new_status"] == "ACTIVE"
    assert world.client.get("/api/users/me", headers=world.ph).status_code == 200
    assert world.client.post(f"/api/admin/users/{world.poster['id']}/unsuspend", headers=headers,
                             json={"reason": "Cleared"}).status_code == 409
    assert len(_actions(world.conn, "USER_UNSUSPEND")) == 1


def test_trust_tier_override_is_logged_by_the_trigger_and_audited(world, admin):
    _, headers = admin
    path = f"/api/admin/users/{world.worker['id']}/trust-tier"
    assert world.client.put(path, headers=headers, json={"tier": 5, "reason": "x"}).status_code == 400
    assert world.client.put(path, headers=headers, json={"tier": 3}).status_code == 400
    done = data(world.client.put(path, headers=headers, json={"tier": 3, "reason": "Verified in person"}))
    assert done == {"old_tier": 1, "new_tier": 3, "changed": True, "admin_action_id": done["admin_action_id"]}
    ledger = world.conn.execute("SELECT * FROM trust_ledger WHERE user_id = %s", (world.worker["id"],)).fetchone()
    assert ledger["new_tier"] == 3 and ledger["reason"] == "ADMIN_OVERRIDE"
    assert _actions(world.conn, "TRUST_TIER_OVERRIDE")[0]["id"] == uuid.UUID(done["admin_action_id"])


def test_moderation_queue_release_and_delete(world, admin):
    _, headers = admin
    task = world.accepted()
    ids = [factories.message(world.conn, task["id"], world.worker["id"], world.poster["id"],
                             content=f"call me {n}", moderation_status="quarantined") for n in range(2)]
    factories.message(world.conn, task["id"], world.worker["id"], world.poster["id"], moderation_status="approved")
    queue = data(world.client.get("/api/admin/moderation/messages", headers=headers))
    assert queue["total_pending"] == 2 and [m["id"] for m in queue["items"]] == [str(i) for i in ids]
    released = data(world.client.post(f"/api/admin/moderation/messages/{ids[0]}/release", headers=headers))
    assert released["moderation_status"] == "approved" and released["decision"] == "release"
    thread = data(world.client.get(f"/api/tasks/{task['id']}/messages", headers=world.ph))
    assert "call me 0" in [m["content"] for m in thread["messages"]]
    assert world.client.post(f"/api/admin/moderation/messages/{ids[0]}/release", headers=headers).status_code == 409
    assert world.client.post(f"/api/admin/moderation/messages/{ids[1]}/release", headers=headers,
                             json={"notes": "x" * 1001}).status_code == 400
    deleted = data(world.client.delete(f"/api/admin/moderation/messages/{ids[1]}", headers=headers))
    assert deleted["deleted_at"] is not None and deleted["decision"] == "delete"
    assert world.client.delete(f"/api/admin/moderation/messages/{NOBODY}", headers=headers).status_code == 404
    assert data(world.client.get("/api/admin/moderation/messages", headers=headers))["total_pending"] == 0
    assert len(_actions(world.conn, "MESSAGE_RELEASE")) == 1 and len(_actions(world.conn, "MESSAGE_DELETE")) == 1


def test_metrics_summary(world, admin):
    _, headers = admin
    world.post(price=2000)
    world.funded(price=3000)
    summary = data(world.client.get("/api/admin/metrics", headers=headers))
    assert summary["tasks_by_state"] == {"OPEN": 2}
    assert summary["escrows_by_state"] == {"PENDING": {"count": 1, "amount_cents": 2000},
                                           "FUNDED": {"count": 1, "amount_cents": 3000}}
    assert summary["outbox"]["backlog"] == 0 and summary["disputes"]["open"] == 0
    assert summary["moderation_queue"] == 0 and summary["users_by_status"] == {"ACTIVE": 4}
