"""Escrow routes: the PaymentIntent, reading the escrow, release and refund, and funding by webhook."""

from __future__ import annotations

import uuid

from tests.api.conftest import data, error
from tests.fakes.stripe_fake import FakeStripe


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


def test_escrow_by_id_and_by_task(world):
    task = world.accepted(price=2000)
    by_task = data(world.client.get(f"/api/tasks/{task['id']}/escrow", headers=world.wh))
    assert (by_task["amount"], by_task["state"]) == (2000, "FUNDED") and by_task["funded_at"]
    by_id = data(world.client.get(f"/api/escrows/{by_task['id']}", headers=world.ph))
    assert by_id["id"] == by_task["id"] and by_id["transfer_id"] is None
    assert error(world.client.get(f"/api/escrows/{by_task['id']}", headers=world.sh))["code"] == "FORBIDDEN"
    assert world.client.get(f"/api/escrows/{uuid.uuid4()}", headers=world.ph).status_code == 404
    assert world.client.get(f"/api/escrows/{by_task['id']}").status_code == 401
    assert world.client.get(f"/api/tasks/{uuid.uuid4()}/escrow", headers=world.ph).status_code == 404


def test_refund_input_and_actor(world, make_admin):
    task, _ = world.submitted(price=3000)
    escrow = data(world.client.get(f"/api/tasks/{task['id']}/escrow", headers=world.ph))
    too_long = world.client.post(f"/api/escrows/{escrow['id']}/refund", json={"reason": "x" * 501}, headers=world.ph)
    assert too_long.status_code == 400 and "reason" in error(too_long)["details"]
    assert world.client.post(f"/api/escrows/{escrow['id']}/refund", json={"extra": 1},
                             headers=world.ph).status_code == 400
    # The poster cannot take the money back while the worker's proof awaits review.
    live = world.client.post(f"/api/escrows/{escrow['id']}/refund", json={}, headers=world.ph)
    assert live.status_code == 409
    assert world.client.post(f"/api/escrows/{escrow['id']}/refund", json={}, headers=world.wh).status_code == 403
    assert world.fake.refunds == []


def test_admin_refunds_a_disputed_escrow(world, make_admin):
    task, _ = world.submitted(price=3000)
    opened = world.client.post(f"/api/tasks/{task['id']}/dispute", headers=world.ph,
                               json={"reason": "WORK_NOT_DONE", "description": "Nothing was done"})
    escrow_id = data(opened)["escrow"]["id"]
    make_admin(world.stranger["id"], can_override_escrow=True)
    # The task is still DISPUTED: refunds follow a ruling, so the escrow's own refund refuses.
    response = world.client.post(f"/api/escrows/{escrow_id}/refund", json={"reason": "ops"}, headers=world.sh)
    assert response.status_code == 409 and error(response)["code"] == "HX203"
    assert world.fake.refunds == []
