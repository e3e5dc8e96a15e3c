"""Issue 12: a new worker onboards through Stripe Connect's link flow, over real HTTP against the
served system. Their first payout waits (never fails) until account.updated says payouts are on,
then goes out exactly once; the wallet shows each step; the money reconciles."""

from __future__ import annotations

import time

import requests

from tests.e2e.system import DISPATCH_TIMEOUT, HTTP_TIMEOUT, Row, World, acknowledged, data, payout


def wait_for_transfer(world: World, escrow_id: str) -> Row:
    deadline = time.monotonic() + DISPATCH_TIMEOUT
    while True:
        (row,) = [r for r in world.outbox(escrow_id) if r["kind"] == "TRANSFER"]
        if row["status"] == "SUCCEEDED":
            return row
        assert time.monotonic() < deadline, f"the transfer never went out: {row}"
        time.sleep(0.05)


def test_a_new_worker_onboards_and_their_waiting_payout_goes_out_once(world: World) -> None:
    fake = world.served.fake
    poster, worker = world.register("poster"), world.register("newworker")
    assert data(worker.get("/api/users/me/payout-account"))["status"] == "NOT_STARTED"

    # 1. The app asks for an onboarding link; the worker opens it later.
    link = data(worker.post("/api/users/me/payout-account/onboarding"))
    account_id = link["stripe_account_id"]
    assert link["url"].startswith(fake.base_url or "-")
    status = data(worker.get("/api/users/me/payout-account"))
    assert (status["status"], status["payouts_enabled"], status["stripe_account_id"]) == (
        "INCOMPLETE", False, account_id)

    # 2. Meanwhile the worker does a task and the poster approves it: the transfer waits.
    task, proof = world.proven_task(poster, worker, price=6000)
    assert data(poster.post(f"/api/proofs/{proof['id']}/accept"))["escrow"]["state"] == "RELEASED"
    (waiting,) = world.settle(task["escrow_id"])
    assert (waiting["status"], waiting["last_error"], waiting["attempt_count"]) == ("PENDING", "PAYOUTS_DISABLED", 0)
    assert fake.money_out(task["escrow_id"])["transferred"] == 0
    assert not [c for c in fake.calls if c[:2] == ("POST", "/v1/transfers") and c[2].get("destination") == account_id]
    wallet = data(worker.get("/api/users/me/earnings"))
    assert wallet["totals"] == {"paid": 0, "on_the_way": 0, "waiting_for_payout_account": payout(6000), "failed": 0}

    # 3. The worker's browser follows the link through Stripe's forms and back to the app.
    back = requests.get(link["url"], allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert back.status_code == 302 and back.headers["Location"].endswith("/settings/payments?success=true")
    (event,) = [e for e in fake.events if e["type"] == "account.updated" and e["data"]["object"]["id"] == account_id]

    # 4. Stripe tells us; the waiting transfer becomes due and the dispatcher sends it.
    ack = acknowledged(world.deliver(event))
    assert (ack["result"], ack["payouts_enabled"], ack["transfers_due"]) == ("processed", True, 1)
    sent = wait_for_transfer(world, task["escrow_id"])
    assert acknowledged(world.deliver(event))["result"] == "duplicate"
    transfers = [t for t in fake.transfers if t["metadata"].get("escrow_id") == task["escrow_id"]]
    assert [(t["destination"], t["amount"], t["id"]) for t in transfers] == [
        (account_id, payout(6000), sent["stripe_object_id"])]

    status = data(worker.get("/api/users/me/payout-account"))
    assert (status["status"], status["payouts_enabled"], status["currently_due"]) == ("COMPLETE", True, [])
    wallet = data(worker.get("/api/users/me/earnings"))
    assert wallet["totals"] == {"paid": payout(6000), "on_the_way": 0, "waiting_for_payout_account": 0, "failed": 0}
    assert wallet["payouts"][0]["stripe_transfer_id"] == sent["stripe_object_id"]
    assert wallet["payouts"][0]["fee_kept"] == 6000 - payout(6000)
    spent = data(poster.get("/api/users/me/payments"))
    assert spent["totals"] == {"charged": 6000, "held": 0, "released": 6000, "refunded": 0}
    assert "PAYOUT_ACCOUNT_READY" in {n["type"] for n in worker.notifications()}
    world.check_money()
