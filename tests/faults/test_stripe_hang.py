"""Stripe accepts the connection and never answers. No request waits on it: an approval or a
cancellation answers success at once (the money leaves through the outbox afterwards), the
dispatcher's attempt gives up within its Stripe budget and leaves the row PENDING for a retry
(it never holds a row, or a thread, for as long as Stripe hangs), and once Stripe is back the
payouts job moves the money exactly once. Creating a task, whose PaymentIntent the app needs
now, still creates the task within the request's Stripe budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.system import World, data
from tests.e2e.test_stripe import make_due, paid_task
from tests.faults.conftest import json_answer, stripe_calls, until


@pytest.mark.parametrize("kind", ["TRANSFER", "REFUND"])
def test_hung_stripe_answers_at_once_and_the_money_moves_once_after(world: World, kind: str) -> None:
    poster, worker, task = paid_task(world, price=7000)
    world.accept(task, worker)
    fake = world.served.fake
    path = "/v1/transfers" if kind == "TRANSFER" else "/v1/refunds"
    if kind == "TRANSFER":
        proof = world.submit_proof(task, worker)
        # The worst case: Stripe pays, and the answer never comes back (nor to the retries).
        fake.fail_next(path, times=10, kind="hang", method="POST", after_effect=True)
        expected = {"transferred": 5950, "refunded": 0}
    else:
        fake.fail_next(path, times=10, kind="hang", method="POST")
        expected = {"transferred": 0, "refunded": 7000}
    try:
        if kind == "TRANSFER":
            done = json_answer(poster.post(f"/api/proofs/{proof['id']}/accept"))["data"]
            assert done["task"]["state"] == "COMPLETED" and done["escrow"]["state"] == "RELEASED"
        else:
            done = json_answer(poster.post(f"/api/tasks/{task['id']}/cancel"))["data"]
            assert done["task"]["state"] == "CANCELLED" and done["escrow"]["state"] == "REFUNDED"

        # The dispatcher takes the row and hangs in Stripe...
        until(lambda: stripe_calls(world.served, path), "the dispatcher to call Stripe")
        # ...for its budget, not for as long as Stripe hangs: the attempt fails as retryable
        # and the row backs off, while Stripe still hangs.
        [row] = until(lambda: [r for r in world.outbox(task["escrow_id"])
                               if r["status"] == "PENDING" and r["last_error"]], "the hung attempt to give up")
        assert (row["kind"], row["attempt_count"]) == (kind, 1), row
        assert row["next_attempt_at"] > datetime.now(UTC) + timedelta(minutes=4), row
    finally:
        fake.unhang()
    assert fake.money_out(task["escrow_id"]) == (expected if kind == "TRANSFER" else {"transferred": 0,
                                                                                       "refunded": 0})

    make_due(world, task["escrow_id"], kind)
    world.run_job("payouts")
    [row] = world.outbox(task["escrow_id"])
    assert (row["status"], row["attempt_count"]) == ("SUCCEEDED", 2)
    assert fake.money_out(task["escrow_id"]) == expected
    world.check_money()


def test_hung_stripe_at_task_creation_still_creates_the_task(world: World) -> None:
    poster, worker = world.register("poster"), world.worker()
    fake = world.served.fake
    fake.fail_next("/v1/payment_intents", times=10, kind="hang", method="POST")
    try:
        response = poster.post("/api/tasks", json={
            "title": "Hang on", "description": "Posted while Stripe hangs", "price": 3000, "location": "2 Slow St",
            "category": "assembly", "deadline": "2030-01-01T18:00:00Z"})
    finally:
        fake.unhang()
    task = json_answer(response)["data"]
    assert response.status_code == 201 and task["state"] == "OPEN" and task["payment_intent_id"] is None
    world.escrows.append(task["escrow_id"])

    # The app asks for the PaymentIntent again once Stripe answers; the task is paid for as usual.
    intent = data(poster.post(f"/api/tasks/{task['id']}/escrow/payment-intent"))
    world.fund({**task, "payment_intent_id": intent["payment_intent_id"]})
    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    assert data(poster.post(f"/api/proofs/{proof['id']}/accept"))["escrow"]["state"] == "RELEASED"
    world.check_money()
