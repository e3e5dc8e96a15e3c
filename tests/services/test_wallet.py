"""The wallet (issue 12): a worker's earnings and a poster's payments, read from the escrows and
the outbox, reconciled to the cent with what fake Stripe moved."""

from __future__ import annotations

import random
import uuid
from typing import Any

from tests.services import flows


def earnings(services: Any, user: Any, **kw: Any) -> dict[str, Any]:
    return services.wallet.earnings(user, **kw).unwrap()


def payments(services: Any, user: Any, **kw: Any) -> dict[str, Any]:
    return services.wallet.payments(user, **kw).unwrap()


def test_earnings_show_each_payout_status_and_the_fee(services, stripe_fake):
    worker = flows.user(services)
    paid = flows.completed_task(services, stripe_fake, worker=worker, price=4500)
    stripe_fake.fail_next("/v1/transfers", kind="network")
    retrying = flows.completed_task(services, stripe_fake, worker=worker, price=1000)
    stripe_fake.fail_next("/v1/transfers", kind="invalid_request")
    failed = flows.completed_task(services, stripe_fake, worker=worker, price=2001)
    out = earnings(services, worker)
    assert out["totals"] == {"paid": 3825, "on_the_way": 850, "waiting_for_payout_account": 0, "failed": 1700}
    by_task = {p["task_id"]: p for p in out["payouts"]}
    assert (by_task[paid["task"]]["status"], by_task[paid["task"]]["amount"], by_task[paid["task"]]["fee_kept"]) \
        == ("PAID", 3825, 675)
    assert by_task[paid["task"]]["stripe_transfer_id"] == stripe_fake.transfers[0]["id"]
    assert by_task[paid["task"]]["paid_at"] is not None and by_task[paid["task"]]["released_at"] is not None
    on_the_way = by_task[retrying["task"]]
    assert (on_the_way["status"], on_the_way["stripe_transfer_id"]) == ("ON_THE_WAY", None)
    assert (by_task[failed["task"]]["status"], by_task[failed["task"]]["fee_kept"]) == ("FAILED", 301)
    assert [p["task_id"] for p in out["payouts"]] == [failed["task"], retrying["task"], paid["task"]]


def test_earnings_waiting_for_a_payout_account_move_on_when_it_exists(services, stripe_fake):
    worker = flows.user(services, connect=False)
    flows.completed_task(services, stripe_fake, worker=worker, price=2000)
    assert earnings(services, worker)["totals"] == {"paid": 0, "on_the_way": 0, "waiting_for_payout_account": 1700,
                                                    "failed": 0}
    assert earnings(services, worker)["payouts"][0]["status"] == "WAITING_FOR_PAYOUT_ACCOUNT"
    services.users.set_connect_account(worker, "acct_1Wallet").unwrap()
    assert earnings(services, worker)["totals"]["paid"] == 1700


def test_earnings_of_a_split_keep_the_fee_of_the_released_share(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake, price=1001)
    dispute = services.disputes.create(ids["task"], ids["poster"], reason="OTHER", description="x").unwrap()
    services.disputes.resolve(dispute["dispute"]["id"], flows.admin(services), resolution="SPLIT", notes="n",
                              split_percent=40).unwrap()
    (payout,) = earnings(services, ids["worker"])["payouts"]
    assert (payout["amount"], payout["fee_kept"]) == (400 * 85 // 100, 400 - 400 * 85 // 100)
    (payment,) = payments(services, ids["poster"])["payments"]
    assert {k: payment[k] for k in ("charged", "held", "released", "refunded", "refund_status")} == {
        "charged": 1001, "held": 0, "released": 400, "refunded": 601, "refund_status": "SUCCEEDED"}


def test_pages_follow_the_cursor_without_repeats(services, stripe_fake):
    worker = flows.user(services)
    tasks = {flows.completed_task(services, stripe_fake, worker=worker, price=1000 + n)["task"] for n in range(5)}
    seen, cursor = [], None
    while True:
        page = earnings(services, worker, limit=2, cursor=cursor)
        assert page["totals"]["paid"] == sum((1000 + n) * 85 // 100 for n in range(5))
        seen += [p["task_id"] for p in page["payouts"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert len(seen) == 5 and set(seen) == tasks


def test_bad_cursor_limit_and_user_are_refused(services):
    user = flows.user(services)
    for call in (services.wallet.earnings, services.wallet.payments):
        assert call(user, cursor="not-a-cursor").code == "VALIDATION_ERROR"
        assert call(user, cursor="MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHxub3QtYS11dWlk").code == "VALIDATION_ERROR"
        assert call(user, limit=0).code == "VALIDATION_ERROR"
        assert call(uuid.uuid4()).code == "HX504"


def test_payments_show_what_each_task_cost_the_poster(services, stripe_fake):
    poster = flows.user(services)
    unpaid = flows.post(services, poster, price=1100)
    held = flows.post(services, poster, price=1200)
    flows.fund(services, stripe_fake, held)
    cancelled = flows.post(services, poster, price=1300)
    flows.fund(services, stripe_fake, cancelled)
    services.tasks.cancel(cancelled["id"], poster).unwrap()
    done = flows.post(services, poster, price=1400)
    flows.fund(services, stripe_fake, done)
    ids = {"poster": poster, "task": done["id"], "escrow": done["escrow_id"], "worker": flows.user(services)}
    services.tasks.accept(done["id"], ids["worker"]).unwrap()
    flows.submit_proof(services, ids)
    services.proofs.accept(ids["proof"], poster).unwrap()

    out = payments(services, poster)
    rows = {p["task_id"]: p for p in out["payments"]}
    money = {t: (r["escrow_state"], r["charged"], r["held"], r["released"], r["refunded"], r["refund_status"])
             for t, r in rows.items()}
    assert money == {unpaid["id"]: ("PENDING", 0, 0, 0, 0, None), held["id"]: ("FUNDED", 1200, 1200, 0, 0, None),
                     cancelled["id"]: ("REFUNDED", 1300, 0, 0, 1300, "SUCCEEDED"),
                     done["id"]: ("RELEASED", 1400, 0, 1400, 0, None)}
    assert out["totals"] == {"charged": 3900, "held": 1200, "released": 1400, "refunded": 1300}
    assert rows[cancelled["id"]]["stripe_refund_id"] == stripe_fake.refunds[0]["id"]
    assert payments(services, flows.user(services))["payments"] == []


def test_wallets_reconcile_with_what_stripe_moved_over_random_lifecycles(services, stripe_fake, clock):
    rng = random.Random(20261130)
    admin = flows.admin(services)
    posters = [flows.user(services) for _ in range(3)]
    workers = [flows.user(services), flows.user(services), flows.user(services, connect=False)]
    for _ in range(16):
        poster, worker, price = rng.choice(posters), rng.choice(workers), rng.randrange(500, 9000)
        ending = rng.choice(["complete", "cancel_open", "cancel_accepted", "client_wins", "split", "unfunded",
                             "transfer_fails"])
        task = flows.post(services, poster, price=price)
        if ending == "unfunded":
            continue
        if ending == "transfer_fails":
            worker = workers[0]  # the injected failure must meet this very transfer
        flows.fund(services, stripe_fake, task)
        if ending == "cancel_open":
            services.tasks.cancel(task["id"], poster).unwrap()
            continue
        ids = {"poster": poster, "task": task["id"], "escrow": task["escrow_id"], "worker": worker}
        services.tasks.accept(task["id"], worker).unwrap()
        if ending == "cancel_accepted":
            services.tasks.cancel(task["id"], poster).unwrap()
            continue
        flows.submit_proof(services, ids)
        if ending == "transfer_fails":
            stripe_fake.fail_next("/v1/transfers", kind="api_error")
        if ending in ("complete", "transfer_fails"):
            services.proofs.accept(ids["proof"], poster).unwrap()
            continue
        dispute = services.disputes.create(task["id"], poster, reason="OTHER", description="x").unwrap()
        services.disputes.resolve(dispute["dispute"]["id"], admin, resolution=ending.upper(), notes="n",
                                  split_percent=rng.randrange(1, 100) if ending == "split" else None).unwrap()

    for worker in workers:
        totals = earnings(services, worker, limit=100)["totals"]
        sent = sum(t["amount"] for t in stripe_fake.transfers if t["metadata"]["worker_user_id"] == str(worker))
        assert totals["paid"] == sent
    clock.advance(minutes=6)
    services.outbox.retry_due().unwrap()
    for worker in workers:
        out = earnings(services, worker, limit=100)
        sent = sum(t["amount"] for t in stripe_fake.transfers if t["metadata"]["worker_user_id"] == str(worker))
        assert out["totals"]["paid"] == sent and out["totals"]["on_the_way"] == 0 and out["totals"]["failed"] == 0
        assert out["totals"]["waiting_for_payout_account"] == sum(
            p["amount"] for p in out["payouts"] if p["status"] == "WAITING_FOR_PAYOUT_ACCOUNT")
    for poster in posters:
        out = payments(services, poster, limit=100)
        for row in out["payments"]:
            assert row["charged"] == row["held"] + row["released"] + row["refunded"], row
            moved = stripe_fake.money_out(str(row["escrow_id"]))
            assert moved["refunded"] == (row["refunded"] if row["refund_status"] == "SUCCEEDED" else 0), row
            intent = next(pi for pi in stripe_fake.payment_intents.values()
                          if pi["metadata"]["escrow_id"] == str(row["escrow_id"]))
            assert row["charged"] == intent["amount_received"], row
        charged = sum(pi["amount_received"] for pi in stripe_fake.payment_intents.values()
                      if pi["metadata"]["poster_user_id"] == str(poster))
        assert out["totals"]["charged"] == charged
        assert out["totals"]["refunded"] == sum(r["amount"] for r in stripe_fake.refunds
                                                if r["metadata"]["escrow_id"] in {str(p["escrow_id"])
                                                                                  for p in out["payments"]})


def test_a_worker_paid_by_many_posters_sees_only_their_own(services, stripe_fake):
    mine, other = flows.user(services), flows.user(services)
    flows.completed_task(services, stripe_fake, worker=mine, price=1000)
    flows.completed_task(services, stripe_fake, worker=other, price=3000)
    assert earnings(services, mine)["totals"]["paid"] == 850
    assert [p["amount"] for p in earnings(services, other)["payouts"]] == [2550]
    assert earnings(services, mine)["payouts"][0]["task_title"] == "Assemble a bookshelf"
