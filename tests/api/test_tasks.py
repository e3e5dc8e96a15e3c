"""Task, escrow, proof and dispute routes through the Flask test client: the happy path,
unauthenticated, wrong actor, invalid input, and service errors surfacing with their codes."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.conftest import WEBHOOK_SECRET, data, error
from tests.fakes.stripe_fake import FakeStripe

JPEG = b"\xff\xd8\xff\xe0" + bytes(300)


def task_body(**overrides: Any) -> dict[str, Any]:
    return {"title": "Walk my dog", "description": "30 minutes around the park", "price": 4500,
            "location": "Central Park", "category": "pet_care",
            "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()} | overrides


class World:
    """Two registered users and helpers to move one task along, as the app would."""

    def __init__(self, client, register, conn, stripe_fake):
        self.client, self.conn, self.fake = client, conn, stripe_fake
        self.poster, self.ph = register(client)
        self.worker, self.wh = register(client)
        self.stranger, self.sh = register(client)
        conn.execute("UPDATE users SET stripe_connect_id = 'acct_worker' WHERE id = %s", (self.worker["id"],))

    def post(self, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/api/tasks", json=task_body(**overrides), headers=self.ph)
        assert response.status_code == 201, response.get_json()
        return data(response)

    def webhook(self, event: dict[str, Any]) -> Any:
        payload, header = FakeStripe.sign(event, WEBHOOK_SECRET)
        return self.client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": header,
                                                                           "Content-Type": "application/json"})

    def funded(self, **overrides: Any) -> dict[str, Any]:
        task = self.post(**overrides)
        assert self.webhook(self.fake.succeed_payment(task["payment_intent_id"])).status_code == 200
        return task

    def accepted(self, **overrides: Any) -> dict[str, Any]:
        task = self.funded(**overrides)
        assert self.client.post(f"/api/tasks/{task['id']}/accept", headers=self.wh).status_code == 200
        return task

    def submitted(self, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        task = self.accepted(**overrides)
        upload = self.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=self.wh,
                                  data={"file": (io.BytesIO(JPEG), "shelf.jpg")}, content_type="multipart/form-data")
        assert upload.status_code == 201, upload.get_json()
        response = self.client.post(f"/api/tasks/{task['id']}/proof", json={"description": "Walked him"},
                                    headers=self.wh)
        assert response.status_code == 200, response.get_json()
        return task, data(response)["proof"]


@pytest.fixture
def world(client, register, conn, stripe_fake) -> World:
    return World(client, register, conn, stripe_fake)


# -- tasks -----------------------------------------------------------------------

def test_create_task(world):
    task = world.post()
    assert task["state"] == "OPEN" and task["poster_id"] == world.poster["id"] and task["price"] == 4500
    assert task["payment_intent_id"] in world.fake.payment_intents and task["client_secret"]


@pytest.mark.parametrize("overrides,field", [
    ({"price": 499}, "price"), ({"price": "4500"}, "price"), ({"price": 45.5}, "price"), ({"title": ""}, "title"),
    ({"category": "juggling"}, "category"), ({"deadline": "2020-01-01T00:00:00+00:00"}, "deadline"),
    ({"deadline": "2030-01-01T00:00:00"}, "deadline"), ({"surprise": 1}, "surprise"), ({"location": None}, "location"),
])
def test_create_task_rejects_bad_input_with_field_details(world, overrides, field):
    response = world.client.post("/api/tasks", json=task_body(**overrides), headers=world.ph)
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR" and field in str(err["details"])
    assert world.conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_task_routes_need_a_token(client):
    some = uuid.uuid4()
    for method, path in [("post", "/api/tasks"), ("get", "/api/tasks"), ("get", f"/api/tasks/{some}"),
                         ("post", f"/api/tasks/{some}/accept"), ("post", f"/api/tasks/{some}/complete"),
                         ("post", f"/api/tasks/{some}/cancel"), ("get", f"/api/tasks/{some}/escrow"),
                         ("post", f"/api/tasks/{some}/escrow/payment-intent"), ("get", f"/api/tasks/{some}/proof"),
                         ("post", f"/api/tasks/{some}/proof"), ("post", f"/api/tasks/{some}/dispute"),
                         ("get", f"/api/tasks/{some}/dispute"), ("post", f"/api/escrows/{some}/release"),
                         ("post", f"/api/escrows/{some}/refund"), ("post", f"/api/proofs/{some}/accept"),
                         ("post", f"/api/proofs/{some}/reject"), ("post", f"/api/disputes/{some}/resolve")]:
        response = getattr(client, method)(path, json={})
        assert response.status_code == 401, (method, path)
        assert error(response)["code"] == "AUTH_REQUIRED"


def test_list_and_get_tasks(world):
    world.post(price=900, category="cleaning")
    world.post(price=600, category="cleaning")
    response = world.client.get("/api/tasks?category=cleaning&sort=price&order=asc&limit=1", headers=world.sh)
    page = data(response)
    assert [t["price"] for t in page["tasks"]] == [600] and page["total"] == 2 and page["has_more"] is True
    assert page["tasks"][0]["poster"]["id"] == world.poster["id"]
    one = data(world.client.get(f"/api/tasks/{page['tasks'][0]['id']}", headers=world.sh))
    assert one["escrow"]["state"] == "PENDING" and one["worker"] is None
    assert world.client.get("/api/tasks?limit=101", headers=world.sh).status_code == 400
    assert world.client.get("/api/tasks?state=BOGUS", headers=world.sh).status_code == 400
    assert world.client.get("/api/tasks?colour=red", headers=world.sh).status_code == 400


def test_get_task_404_and_403(world):
    assert error(world.client.get(f"/api/tasks/{uuid.uuid4()}", headers=world.sh))["code"] == "NOT_FOUND"
    assert world.client.get("/api/tasks/not-a-uuid", headers=world.sh).status_code == 404
    task = world.accepted()
    assert error(world.client.get(f"/api/tasks/{task['id']}", headers=world.sh))["code"] == "FORBIDDEN"


def test_accept_rules(world):
    task = world.post()
    response = world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.wh)
    assert response.status_code == 409 and error(response)["code"] == "CONFLICT"  # not funded yet
    world.webhook(world.fake.succeed_payment(task["payment_intent_id"]))
    assert error(world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.ph))["code"] == "FORBIDDEN"
    accepted = data(world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.wh))
    assert accepted["state"] == "ACCEPTED" and accepted["worker_id"] == world.worker["id"]
    assert world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.sh).status_code == 409


def test_full_flow_over_the_api(world):
    task, proof = world.submitted(price=5000)
    assert proof["state"] == "SUBMITTED" and proof["photos"][0]["url"].startswith("/api/proofs/photos/")
    photo = world.client.get(proof["photos"][0]["url"], headers=world.ph)
    assert photo.status_code == 200 and photo.data == JPEG and photo.mimetype == "image/jpeg"
    assert world.client.get(proof["photos"][0]["url"], headers=world.sh).status_code == 403
    # Completing before the proof is approved surfaces INV-3's code.
    response = world.client.post(f"/api/tasks/{task['id']}/complete", headers=world.ph)
    assert response.status_code == 409 and error(response)["code"] == "HX301"
    assert error(world.client.post(f"/api/proofs/{proof['id']}/accept", headers=world.wh))["code"] == "FORBIDDEN"
    review = data(world.client.post(f"/api/proofs/{proof['id']}/accept", headers=world.ph))
    assert review["state"] == "ACCEPTED" and review["task"]["state"] == "COMPLETED"
    assert review["escrow"]["state"] == "RELEASED" and review["xp_awarded"]["base_xp"] == 50
    done = data(world.client.post(f"/api/tasks/{task['id']}/complete", headers=world.ph))
    assert done["task"]["state"] == "COMPLETED" and done["xp_awarded"]["effective_xp"] == 50
    escrow = data(world.client.get(f"/api/tasks/{task['id']}/escrow", headers=world.wh))
    assert escrow["state"] == "RELEASED" and escrow["stripe_transfer_id"] == world.fake.transfers[0]["id"]
    assert world.fake.money_out(escrow["id"]) == {"transferred": 4250, "refunded": 0}
    latest = data(world.client.get(f"/api/tasks/{task['id']}/proof", headers=world.ph))
    assert latest["id"] == proof["id"] and latest["reviewed_by"] == world.poster["id"]
    # Releasing again returns the escrow as it is; refunding it is a conflict.
    assert data(world.client.post(f"/api/escrows/{escrow['id']}/release", headers=world.ph))["state"] == "RELEASED"
    assert world.client.post(f"/api/escrows/{escrow['id']}/refund", json={}, headers=world.ph).status_code == 409


def test_proof_submission_errors(world):
    task = world.accepted()
    no_photo = world.client.post(f"/api/tasks/{task['id']}/proof", json={"description": "done"}, headers=world.wh)
    assert no_photo.status_code in (400, 409)
    assert world.client.post(f"/api/tasks/{task['id']}/proof", json={}, headers=world.wh).status_code == 400
    bad = world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                            data={"file": (io.BytesIO(b"GIF89a..."), "x.gif")}, content_type="multipart/form-data")
    assert bad.status_code == 400 and error(bad)["code"] == "VALIDATION_ERROR"
    assert world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                             data={}, content_type="multipart/form-data").status_code == 400
    stranger = world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.sh,
                                 data={"file": (io.BytesIO(JPEG), "x.jpg")}, content_type="multipart/form-data")
    assert stranger.status_code == 403
    wrong_keys = world.client.post(f"/api/tasks/{task['id']}/proof", headers=world.wh,
                                   json={"description": "done", "photo_keys": ["proofs/elsewhere/1.jpg"]})
    assert wrong_keys.status_code == 400


def test_reject_then_dispute_then_split(world, make_admin):
    task, proof = world.submitted(price=5000)
    assert world.client.post(f"/api/proofs/{proof['id']}/reject", json={}, headers=world.ph).status_code == 400
    rejected = data(world.client.post(f"/api/proofs/{proof['id']}/reject", json={"reason": "Too short a walk"},
                                      headers=world.ph))
    assert rejected["state"] == "REJECTED" and rejected["task"]["state"] == "ACCEPTED"
    assert world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.sh,
                             json={"reason": "OTHER", "description": "x"}).status_code == 403
    assert world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.wh,
                             json={"reason": "MEH", "description": "x"}).status_code == 400
    opened = world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.wh,
                               json={"reason": "QUALITY_ISSUE", "description": "I walked 30 minutes"})
    assert opened.status_code == 201
    dispute = data(opened)["dispute"]
    assert dispute["opened_by"] == world.worker["id"] and data(opened)["escrow"]["state"] == "LOCKED_DISPUTE"
    shown = data(world.client.get(f"/api/tasks/{task['id']}/dispute", headers=world.ph))
    assert shown["id"] == dispute["id"] and shown["state"] == "OPEN"
    ruling = {"resolution": "SPLIT", "split_percent": 60, "notes": "Half the walk"}
    assert world.client.post(f"/api/disputes/{dispute['id']}/resolve", json=ruling, headers=world.ph).status_code == 403
    make_admin(world.stranger["id"], can_resolve_disputes=True)
    assert world.client.post(f"/api/disputes/{dispute['id']}/resolve", headers=world.sh,
                             json={"resolution": "SPLIT", "notes": "x"}).status_code == 400
    resolved = data(world.client.post(f"/api/disputes/{dispute['id']}/resolve", json=ruling, headers=world.sh))
    assert resolved["dispute"]["state"] == "RESOLVED" and resolved["escrow"]["state"] == "REFUND_PARTIAL"
    assert world.fake.money_out(resolved["escrow"]["id"]) == {"transferred": 2550, "refunded": 2000}
    again = world.client.post(f"/api/disputes/{dispute['id']}/resolve", json=ruling, headers=world.sh)
    assert again.status_code == 409
    action = world.conn.execute("SELECT result FROM admin_actions WHERE target_dispute_id = %s",
                                (dispute["id"],)).fetchone()
    assert action["result"] == "SPLIT"


def test_cancel_and_refund(world):
    task = world.accepted(price=1200)
    assert world.client.post(f"/api/tasks/{task['id']}/cancel", json={}, headers=world.wh).status_code == 403
    assert world.client.post(f"/api/tasks/{task['id']}/cancel", json={"reason": 5}, headers=world.ph).status_code == 400
    out = data(world.client.post(f"/api/tasks/{task['id']}/cancel", json={"reason": "rain"}, headers=world.ph))
    assert out["task"]["state"] == "CANCELLED" and out["escrow"]["state"] == "REFUNDED"
    assert world.fake.money_out(out["escrow"]["id"]) == {"transferred": 0, "refunded": 1200}
    assert world.client.post(f"/api/tasks/{task['id']}/cancel", json={}, headers=world.ph).status_code == 409
    refund = world.client.post(f"/api/escrows/{out['escrow']['id']}/refund", json={}, headers=world.ph)
    assert refund.status_code == 409 and error(refund)["code"] == "HX002"


def test_payment_intent_route(world):
    task = world.post()
    again = data(world.client.post(f"/api/tasks/{task['id']}/escrow/payment-intent", headers=world.ph))
    assert again["payment_intent_id"] == task["payment_intent_id"] and again["amount"] == 4500
    assert world.client.post(f"/api/tasks/{task['id']}/escrow/payment-intent", headers=world.sh).status_code == 403
    world.webhook(world.fake.succeed_payment(task["payment_intent_id"]))
    assert world.client.post(f"/api/tasks/{task['id']}/escrow/payment-intent", headers=world.ph).status_code == 409
    assert world.client.get(f"/api/tasks/{task['id']}/escrow", headers=world.sh).status_code == 403


def test_release_needs_completed_task(world, make_admin):
    task = world.accepted()
    escrow = data(world.client.get(f"/api/tasks/{task['id']}/escrow", headers=world.ph))
    response = world.client.post(f"/api/escrows/{escrow['id']}/release", headers=world.ph)
    assert response.status_code == 409 and error(response)["code"] == "HX201"
    assert world.client.post(f"/api/escrows/{escrow['id']}/release", headers=world.wh).status_code == 403
    assert world.client.post(f"/api/escrows/{uuid.uuid4()}/release", headers=world.ph).status_code == 404


def test_webhook_route(world):
    task = world.post()
    event = world.fake.succeed_payment(task["payment_intent_id"])
    payload, header = FakeStripe.sign(event, "whsec_not_ours")
    bad = world.client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": header})
    assert bad.status_code == 400 and error(bad)["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert world.webhook(event).status_code == 200
    replay = world.webhook(event)
    assert replay.status_code == 200 and replay.get_json()["result"] == "duplicate"


def test_create_task_idempotency_key_header(world):
    headers = world.ph | {"Idempotency-Key": "tap-123"}
    body = task_body()
    first = world.client.post("/api/tasks", json=body, headers=headers)
    again = world.client.post("/api/tasks", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert data(first)["id"] == data(again)["id"] and data(again)["replayed"] is True
    changed = world.client.post("/api/tasks", json=body | {"price": 9900}, headers=headers)
    assert changed.status_code == 409 and error(changed)["code"] == "CONFLICT"
    bad = world.client.post("/api/tasks", json=task_body(), headers=world.ph | {"Idempotency-Key": "x" * 101})
    assert bad.status_code == 400
