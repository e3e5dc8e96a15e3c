"""B054: Stripe as it really behaves, against the served system. Webhooks with bad signatures
are refused and change nothing; a replayed event is acknowledged and changes nothing; events
arriving out of order still end in the right state; a payout or refund that fails at Stripe
leaves the state change standing with a pending outbox row, and `hustlexp jobs run payouts`
(once the back-off has passed) moves the money exactly once."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from tests.e2e.system import Actor, Row, World, acknowledged, data, error


def paid_task(world: World, price: int = 5000) -> tuple[Actor, Actor, Row]:
    poster, worker = world.register("poster"), world.worker()
    task = world.post_task(poster, price=price)
    world.fund(task)
    return poster, worker, task


def released_task(world: World, price: int = 5000) -> tuple[Actor, Actor, Row]:
    poster, worker, task = paid_task(world, price)
    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    assert data(poster.post(f"/api/proofs/{proof['id']}/accept"))["escrow"]["state"] == "RELEASED"
    world.settle(task["escrow_id"])
    return poster, worker, task


def snapshot(world: World, task: Row) -> dict[str, Any]:
    """Everything a webhook could change about one task."""
    # updated_at is left out: a no-op UPDATE (recording an id we already hold) may touch it.
    return {
        "task": _without(world.task_row(task["id"]), "updated_at"),
        "escrow": _without(world.escrow(task["escrow_id"]), "updated_at"),
        "outbox": world.outbox(task["escrow_id"]),
        "notifications": world.one("SELECT count(*) AS n FROM notifications WHERE task_id = %s",
                                   (task["id"],))["n"],
        "events": world.one("SELECT count(*) AS n FROM processed_stripe_events")["n"],
        "money": world.served.fake.money_out(task["escrow_id"]),
    }


def _without(row: Row, *keys: str) -> Row:
    return {k: v for k, v in row.items() if k not in keys}


def processed(world: World, event_id: str) -> list[Row]:
    return world.sql("SELECT * FROM processed_stripe_events WHERE event_id = %s", (event_id,))


def make_due(world: World, escrow_id: str, kind: str) -> None:
    """Skip the back-off: the job runs in its own process with the real clock."""
    world.sql("UPDATE money_outbox SET next_attempt_at = now() - interval '1 second' "
              "WHERE escrow_id = %s AND kind = %s", (escrow_id, kind))


# -- signatures ------------------------------------------------------------------------

def test_webhooks_with_bad_signatures_are_refused_and_change_nothing(world: World) -> None:
    poster = world.register("poster")
    task = world.post_task(poster, price=2200)
    fake = world.served.fake
    event = fake.succeed_payment(task["payment_intent_id"])
    body = json.dumps(event)
    before = snapshot(world, task)

    _, good_header = fake.sign(body, world.served.webhook_secret)
    forged = json.loads(body)
    forged["data"]["object"]["amount_received"] = 1
    stale = int(time.time()) - 3600
    deliveries = {
        "wrong secret": world.deliver(event, secret="whsec_not_ours"),
        "no signature": world.deliver(event, signature=""),
        "not a signature": world.deliver(event, signature="t=1,v1=deadbeef"),
        "body changed after signing": world.deliver(json.dumps(forged).encode(), signature=good_header),
        "signed an hour ago": world.deliver(event, timestamp=stale),
        "signed, but not an event": world.deliver(b"[1, 2, 3]"),
    }
    for why, response in deliveries.items():
        assert response.status_code == 400, (why, response.text)
        error(response, 400, "WEBHOOK_SIGNATURE_INVALID")
    assert snapshot(world, task) == before
    assert processed(world, event["id"]) == []
    assert data(poster.get(f"/api/tasks/{task['id']}/escrow"))["state"] == "PENDING"

    # The same event, signed properly, is what funds the escrow.
    ack = acknowledged(world.deliver(event))
    assert ack["result"] == "processed" and ack["event_id"] == event["id"]
    assert data(poster.get(f"/api/tasks/{task['id']}/escrow"))["state"] == "FUNDED"
    world.check_money()


# -- replays ---------------------------------------------------------------------------

def test_replayed_events_are_acknowledged_and_change_nothing(world: World) -> None:
    poster, worker = world.register("poster"), world.worker()
    task = world.post_task(poster, price=5000)
    fake = world.served.fake
    paid = fake.succeed_payment(task["payment_intent_id"])
    assert acknowledged(world.deliver(paid))["result"] == "processed"
    funded = snapshot(world, task)
    for _ in range(2):  # Stripe redelivers: same event, same or fresh signature
        assert acknowledged(world.deliver(paid))["result"] == "duplicate"
        assert acknowledged(world.deliver(paid, timestamp=int(time.time())))["result"] == "duplicate"
    assert snapshot(world, task) == funded
    [row] = processed(world, paid["id"])
    assert (row["event_type"], row["result"]) == ("payment_intent.succeeded", "processed")
    assert [n["type"] for n in poster.notifications() if n["task_id"] == task["id"]].count("ESCROW_FUNDED") == 1

    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    world.settle(task["escrow_id"])
    [transfer] = [t for t in fake.transfers if t["metadata"]["escrow_id"] == task["escrow_id"]]
    created = fake.event("transfer.created", transfer)
    assert acknowledged(world.deliver(created))["result"] == "processed"
    released = snapshot(world, task)
    # Days later the old payment event is replayed again: still nothing happens.
    for event in (paid, created, paid):
        assert acknowledged(world.deliver(event))["result"] == "duplicate"
    assert snapshot(world, task) == released
    assert released["escrow"]["state"] == "RELEASED" and released["escrow"]["stripe_transfer_id"] == transfer["id"]
    world.check_money()


# -- order -----------------------------------------------------------------------------

def test_transfer_created_before_we_recorded_the_transfer(world: World) -> None:
    """The transfer happens at Stripe but its response is lost; transfer.created arrives first,
    then the payouts job retries with the same idempotency key: one transfer, its id kept."""
    poster, worker, task = paid_task(world)
    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    fake = world.served.fake
    fake.fail_next("/v1/transfers", kind="network", method="POST", after_effect=True)
    review = data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    assert review["task"]["state"] == "COMPLETED" and review["escrow"]["state"] == "RELEASED"
    world.settle(task["escrow_id"])
    [transfer] = [t for t in fake.transfers if t["metadata"]["escrow_id"] == task["escrow_id"]]
    assert world.escrow(task["escrow_id"])["stripe_transfer_id"] is None
    [row] = world.outbox(task["escrow_id"])
    assert (row["kind"], row["status"], row["attempt_count"]) == ("TRANSFER", "PENDING", 1)

    ack = acknowledged(world.deliver(fake.event("transfer.created", transfer)))
    assert ack["result"] == "processed"
    assert world.escrow(task["escrow_id"])["stripe_transfer_id"] == transfer["id"]

    make_due(world, task["escrow_id"], "TRANSFER")
    world.run_job("payouts")
    [row] = world.outbox(task["escrow_id"])
    assert (row["status"], row["stripe_object_id"]) == ("SUCCEEDED", transfer["id"])
    assert fake.money_out(task["escrow_id"]) == {"transferred": 4250, "refunded": 0}
    assert world.escrow(task["escrow_id"])["stripe_transfer_id"] == transfer["id"]
    world.check_money()


def test_late_events_after_release_change_nothing(world: World) -> None:
    """transfer.created after we recorded the transfer, and a stale payment_intent.succeeded
    (a new event id) for an escrow already released."""
    _, _, task = released_task(world)
    fake = world.served.fake
    [transfer] = [t for t in fake.transfers if t["metadata"]["escrow_id"] == task["escrow_id"]]
    before = snapshot(world, task)

    assert acknowledged(world.deliver(fake.event("transfer.created", transfer)))["result"] == "processed"
    bogus = dict(transfer, id="tr_not_ours")
    acknowledged(world.deliver(fake.event("transfer.created", bogus)))
    stale = acknowledged(world.deliver(fake.event("payment_intent.succeeded",
                                                  fake.payment_intents[task["payment_intent_id"]])))
    assert stale["result"] == "skipped"

    after = snapshot(world, task)
    assert after["events"] == before["events"] + 3
    assert {k: v for k, v in after.items() if k != "events"} == {k: v for k, v in before.items() if k != "events"}
    assert after["escrow"]["stripe_transfer_id"] == transfer["id"] and after["escrow"]["state"] == "RELEASED"
    world.check_money()


def test_payment_intent_canceled_for_a_live_task_then_paid_with_a_new_intent(world: World) -> None:
    poster, worker = world.register("poster"), world.worker()
    task = world.post_task(poster, price=3300)
    fake = world.served.fake
    old_pi = task["payment_intent_id"]

    acknowledged(world.deliver(fake.cancel_event(old_pi)))  # e.g. abandoned by the card flow
    assert world.task_row(task["id"])["state"] == "OPEN"
    assert data(poster.get(f"/api/tasks/{task['id']}/escrow"))["state"] == "PENDING"

    fresh = data(poster.post(f"/api/tasks/{task['id']}/escrow/payment-intent"))
    assert fresh["payment_intent_id"] != old_pi and fresh["amount"] == 3300
    assert fake.payment_intents[fresh["payment_intent_id"]]["status"] == "requires_payment_method"
    assert data(poster.post(f"/api/tasks/{task['id']}/escrow/payment-intent"))["payment_intent_id"] == \
        fresh["payment_intent_id"]  # reused while live
    world.fund({**task, "payment_intent_id": fresh["payment_intent_id"]})
    assert data(poster.get(f"/api/tasks/{task['id']}/escrow"))["stripe_payment_intent_id"] == \
        fresh["payment_intent_id"]

    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    world.settle(task["escrow_id"])
    assert fake.money_out(task["escrow_id"]) == {"transferred": 2805, "refunded": 0}
    world.check_money()


def test_payment_landing_after_cancellation_is_refunded(world: World) -> None:
    """The poster cancels an unpaid task, but Stripe cannot cancel the intent (it errors), and
    the card payment then goes through: the late payment is refunded in full, and the
    cancellation retried by the payouts job gives up cleanly instead of looping."""
    poster = world.register("poster")
    task = world.post_task(poster, price=1900)
    fake = world.served.fake
    fake.fail_next("/v1/payment_intents/", kind="api_error", method="POST")
    out = data(poster.post(f"/api/tasks/{task['id']}/cancel"))
    assert out["task"]["state"] == "CANCELLED" and out["escrow"]["state"] == "REFUNDED"
    [row] = world.settle(task["escrow_id"])
    assert (row["kind"], row["status"]) == ("CANCEL_INTENT", "PENDING")

    late = acknowledged(world.deliver(fake.succeed_payment(task["payment_intent_id"])))
    assert late["result"] == "processed"
    world.settle(task["escrow_id"])
    assert fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 1900}

    make_due(world, task["escrow_id"], "CANCEL_INTENT")
    world.run_job("payouts")
    statuses = {r["kind"]: r["status"] for r in world.outbox(task["escrow_id"])}
    assert statuses == {"CANCEL_INTENT": "CANCELLED", "REFUND": "SUCCEEDED"}
    escrow = world.escrow(task["escrow_id"])
    assert escrow["state"] == "REFUNDED" and escrow["funded_at"] is not None
    assert world.task_row(task["id"])["state"] == "CANCELLED"
    world.check_money()


# -- failures at Stripe ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["TRANSFER", "REFUND"])
def test_money_call_failing_at_stripe_is_paid_once_by_the_payouts_job(world: World, kind: str) -> None:
    poster, worker, task = paid_task(world, price=6100)
    world.accept(task, worker)
    fake = world.served.fake
    fake.fail_next("/v1/transfers" if kind == "TRANSFER" else "/v1/refunds", kind="api_error")
    if kind == "TRANSFER":
        proof = world.submit_proof(task, worker)
        done = data(poster.post(f"/api/proofs/{proof['id']}/accept"))
        assert done["task"]["state"] == "COMPLETED" and done["escrow"]["state"] == "RELEASED"
        expected = {"transferred": 5185, "refunded": 0}  # floor(6100 x 0.85)
        # XP does not wait for the money.
        assert data(worker.get("/api/users/me/xp"))["total_xp"] == 61
    else:
        done = data(poster.post(f"/api/tasks/{task['id']}/cancel"))
        assert done["task"]["state"] == "CANCELLED" and done["escrow"]["state"] == "REFUNDED"
        expected = {"transferred": 0, "refunded": 6100}

    world.settle(task["escrow_id"])
    escrow = world.escrow(task["escrow_id"])
    assert escrow["state"] == ("RELEASED" if kind == "TRANSFER" else "REFUNDED")
    assert fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 0}
    [row] = world.outbox(task["escrow_id"])
    assert (row["kind"], row["status"], row["attempt_count"]) == (kind, "PENDING", 1) and row["last_error"]
    now = world.one("SELECT now() AS now")["now"]
    assert row["next_attempt_at"] > now + timedelta(minutes=4)  # first back-off: 5 minutes

    # Not due yet: the job leaves it alone.
    world.run_job("payouts")
    assert fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 0}

    make_due(world, task["escrow_id"], kind)
    world.run_job("payouts")
    assert fake.money_out(task["escrow_id"]) == expected
    [row] = world.outbox(task["escrow_id"])
    assert (row["status"], row["attempt_count"]) == ("SUCCEEDED", 2)

    make_due(world, task["escrow_id"], kind)  # even if someone forces it again
    world.run_job("payouts")
    assert fake.money_out(task["escrow_id"]) == expected
    world.check_money()


def test_concurrent_redeliveries_apply_once(world: World) -> None:
    """Stripe retries racing each other across both server workers: one delivery applies the
    event, the others find it already recorded."""
    poster = world.register("poster")
    task = world.post_task(poster, price=2600)
    event = world.served.fake.succeed_payment(task["payment_intent_id"])
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = [acknowledged(r)["result"] for r in pool.map(lambda _: world.deliver(event), range(6))]
    assert sorted(results) == ["duplicate"] * 5 + ["processed"], results
    assert len(processed(world, event["id"])) == 1
    assert world.escrow(task["escrow_id"])["state"] == "FUNDED"
    assert [n["type"] for n in poster.notifications() if n["task_id"] == task["id"]].count("ESCROW_FUNDED") == 1
    world.check_money()


def test_worker_without_payout_account_is_paid_once_the_account_exists(world: World) -> None:
    """Releasing to a worker with no Stripe Connect account yet: the transfer waits (not a
    failure), and goes out once the worker has connected one."""
    poster, worker = world.register("poster"), world.register("worker")
    task, proof = world.proven_task(poster, worker, price=4000)
    assert data(poster.post(f"/api/proofs/{proof['id']}/accept"))["escrow"]["state"] == "RELEASED"
    fake = world.served.fake
    [row] = world.settle(task["escrow_id"])
    assert (row["status"], row["attempt_count"], row["last_error"]) == ("PENDING", 0, "NO_PAYOUT_ACCOUNT")
    assert fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 0}

    # Saving the account makes the transfer due at once; the dispatcher sends it (the request
    # itself calls no Stripe).
    data(worker.put("/api/users/me/payout-account", json={"stripe_connect_id": "acct_lateworker01"}))
    deadline = time.monotonic() + 60
    while world.outbox(task["escrow_id"])[0]["status"] != "SUCCEEDED" and time.monotonic() < deadline:
        time.sleep(0.05)
    [row] = world.outbox(task["escrow_id"])
    assert (row["status"], row["attempt_count"], row["last_error"]) == ("SUCCEEDED", 1, None)
    assert fake.money_out(task["escrow_id"]) == {"transferred": 3400, "refunded": 0}
    assert [t["destination"] for t in fake.transfers if t["metadata"]["escrow_id"] == task["escrow_id"]] == [
        "acct_lateworker01"]
    world.check_money()
