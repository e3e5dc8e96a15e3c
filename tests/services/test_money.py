"""Money: webhooks applied once in any order, the outbox's retries, races between release
and refund, and conservation over many random lifecycles."""

from __future__ import annotations

import random
import threading
import uuid

import pytest

from tests.fakes.stripe_fake import FakeStripe
from tests.services import flows
from tests.services.conftest import WEBHOOK_SECRET


def _escrow(services, escrow_id):
    return services.escrows.get_by_id(escrow_id).unwrap()


def _run_threads(n, target):
    barrier = threading.Barrier(n)
    results = []

    def run(i):
        barrier.wait()
        results.append(target(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- webhooks -------------------------------------------------------------------


def test_payment_succeeded_funds_the_escrow_and_notifies_the_poster(services, stripe_fake):
    poster = flows.user(services)
    task = flows.post(services, poster)
    out = flows.deliver(services, stripe_fake.succeed_payment(task["payment_intent_id"]))
    assert out["result"] == "processed"
    escrow = _escrow(services, task["escrow_id"])
    assert escrow["state"] == "FUNDED" and escrow["funded_at"] is not None
    note = flows.row(services, "SELECT user_id FROM notifications WHERE category = 'ESCROW_FUNDED'")
    assert note["user_id"] == poster
    assert flows.row(services, "SELECT result, error_message FROM processed_stripe_events") == {
        "result": "processed", "error_message": None}


def test_each_event_is_recorded_with_its_own_outcome(services, stripe_fake):
    task = flows.post(services, flows.user(services))
    first = stripe_fake.succeed_payment(task["payment_intent_id"])
    again = stripe_fake.event("payment_intent.succeeded", first["data"]["object"])  # a new event id
    assert flows.deliver(services, first)["result"] == "processed"
    assert flows.deliver(services, again)["result"] == "skipped"
    assert flows.row(services, "SELECT result, error_message FROM processed_stripe_events WHERE event_id = %s",
                     again["id"]) == {"result": "skipped", "error_message": "escrow already FUNDED"}


@pytest.mark.parametrize("tamper", ["secret", "body", "missing", "stale"])
def test_webhook_refuses_bad_signatures_and_changes_nothing(services, stripe_fake, tamper):
    task = flows.post(services, flows.user(services))
    event = stripe_fake.succeed_payment(task["payment_intent_id"])
    payload, header = FakeStripe.sign(event, "whsec_wrong" if tamper == "secret" else WEBHOOK_SECRET,
                                      timestamp=1_000_000 if tamper == "stale" else None)
    if tamper == "body":
        payload = payload.replace(b'"amount_received": 4500', b'"amount_received": 450000')
    result = services.webhooks.handle(payload, None if tamper == "missing" else header)
    assert result.code == "WEBHOOK_SIGNATURE_INVALID"
    assert _escrow(services, task["escrow_id"])["state"] == "PENDING"
    assert flows.row(services, "SELECT count(*) AS n FROM processed_stripe_events")["n"] == 0


def test_replayed_event_has_one_effect(services, stripe_fake):
    task = flows.post(services, flows.user(services))
    event = stripe_fake.succeed_payment(task["payment_intent_id"])
    assert flows.deliver(services, event)["result"] == "processed"
    assert flows.deliver(services, event)["result"] == "duplicate"
    assert flows.row(services, "SELECT count(*) AS n FROM notifications WHERE category = 'ESCROW_FUNDED'")["n"] == 1


@pytest.mark.parametrize("metadata", ["escrow id", "none", "unknown escrow id"])
def test_replayed_event_has_one_effect_whatever_its_metadata(services, stripe_fake, metadata):
    # The usual delivery claims the event in the funding's statement; the others claim it alone.
    task = flows.post(services, flows.user(services))
    event = stripe_fake.succeed_payment(task["payment_intent_id"])
    event["data"]["object"]["metadata"] = {"escrow id": {"escrow_id": str(task["escrow_id"])}, "none": {},
                                           "unknown escrow id": {"escrow_id": str(uuid.uuid4())}}[metadata]
    assert flows.deliver(services, event)["result"] == "processed"
    assert flows.deliver(services, event)["result"] == "duplicate"
    assert flows.row(services, "SELECT count(*) AS n FROM notifications WHERE category = 'ESCROW_FUNDED'")["n"] == 1
    assert _escrow(services, task["escrow_id"])["state"] == "FUNDED"
    assert flows.row(services, "SELECT result, error_message FROM processed_stripe_events WHERE event_id = %s",
                     event["id"]) == {"result": "processed", "error_message": None}


def test_same_event_delivered_ten_times_concurrently_has_one_effect(services, stripe_fake):
    task = flows.post(services, flows.user(services))
    payload, header = FakeStripe.sign(stripe_fake.succeed_payment(task["payment_intent_id"]), WEBHOOK_SECRET)
    results = _run_threads(10, lambda _: services.webhooks.handle(payload, header))
    assert all(r.ok for r in results)
    assert sorted(r.data["result"] for r in results) == ["duplicate"] * 9 + ["processed"]
    assert flows.row(services, "SELECT count(*) AS n FROM notifications WHERE category = 'ESCROW_FUNDED'")["n"] == 1
    assert _escrow(services, task["escrow_id"])["state"] == "FUNDED"


def test_wrong_amount_does_not_fund(services, stripe_fake):
    task = flows.post(services, flows.user(services), price=4500)
    out = flows.deliver(services, stripe_fake.succeed_payment(task["payment_intent_id"], amount=4000))
    assert out["result"] == "skipped" and out["reason"] == "amount_mismatch"
    assert _escrow(services, task["escrow_id"])["state"] == "PENDING"


def test_payment_landing_after_cancellation_is_refunded(services, stripe_fake):
    poster = flows.user(services)
    task = flows.post(services, poster)
    # The poster's card goes through just before the cancellation: Stripe then refuses to
    # cancel the intent, and the payment's webhook arrives for an escrow that already ended.
    event = stripe_fake.succeed_payment(task["payment_intent_id"])
    services.tasks.cancel(task["id"], poster).unwrap()
    out = flows.deliver(services, event)
    assert out["action"] == "late_payment_refunded"
    escrow = _escrow(services, task["escrow_id"])
    assert escrow["state"] == "REFUNDED" and escrow["stripe_refund_id"] is not None
    assert stripe_fake.money_out(str(task["escrow_id"])) == {"transferred": 0, "refunded": 4500}


def test_events_out_of_order_end_in_the_right_state(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    flows.submit_proof(services, ids)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    transfer = stripe_fake.transfers[0]
    # transfer.created twice, then a stale payment_intent.succeeded for the already-released escrow.
    created = stripe_fake.event("transfer.created", transfer)
    assert flows.deliver(services, created)["result"] == "processed"
    assert flows.deliver(services, created)["result"] == "duplicate"
    pi_id = _escrow(services, ids["escrow"])["stripe_payment_intent_id"]
    stale = stripe_fake.event("payment_intent.succeeded", stripe_fake.payment_intents[pi_id])
    assert flows.deliver(services, stale)["result"] == "skipped"
    escrow = _escrow(services, ids["escrow"])
    assert escrow["state"] == "RELEASED" and escrow["stripe_transfer_id"] == transfer["id"]
    assert len(stripe_fake.refunds) == 0


def test_canceled_intent_closes_an_escrow_only_when_its_task_ended(services, stripe_fake):
    poster = flows.user(services)
    live = flows.post(services, poster)
    assert flows.deliver(services, stripe_fake.cancel_event(live["payment_intent_id"]))["state"] == "PENDING"
    assert _escrow(services, live["escrow_id"])["state"] == "PENDING"


def test_unknown_event_types_are_recorded_and_ignored(services, stripe_fake):
    out = flows.deliver(services, stripe_fake.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert out["result"] == "ignored"
    assert flows.row(services, "SELECT result FROM processed_stripe_events")["result"] == "ignored"


# -- the outbox ------------------------------------------------------------------


def test_stripe_failure_during_release_is_retried_by_the_job_exactly_once(services, stripe_fake, clock):
    ids = flows.submitted_task(services, stripe_fake, price=4500)
    stripe_fake.fail_next("/v1/transfers", kind="api_error")
    out = services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert out["escrow"]["state"] == "RELEASED"
    [row] = services.outbox.list_for_escrow(ids["escrow"]).unwrap()
    assert (row["status"], row["attempt_count"]) == ("PENDING", 1) and row["last_error"]
    assert stripe_fake.transfers == []
    assert services.outbox.retry_due().unwrap()["due"] == 0  # backing off: not yet
    clock.advance(minutes=5, seconds=1)
    assert services.outbox.retry_due().unwrap()["succeeded"] == 1
    assert services.outbox.retry_due().unwrap()["due"] == 0
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 3825, "refunded": 0}
    assert _escrow(services, ids["escrow"])["stripe_transfer_id"] == stripe_fake.transfers[0]["id"]


def test_lost_response_is_retried_without_paying_twice(services, stripe_fake, clock):
    ids = flows.submitted_task(services, stripe_fake)
    stripe_fake.fail_next("/v1/transfers", kind="network", after_effect=True)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    clock.advance(minutes=6)
    services.outbox.retry_due().unwrap()
    assert len(stripe_fake.transfers) == 1
    assert services.outbox.list_for_escrow(ids["escrow"]).unwrap()[0]["status"] == "SUCCEEDED"


def test_backoff_ends_in_failed_permanent_and_admins_are_told(services, stripe_fake, clock):
    admin = flows.admin(services)
    ids = flows.submitted_task(services, stripe_fake)
    stripe_fake.fail_next("/v1/transfers", times=5, kind="api_error")
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    for minutes in (5, 30, 120, 1440):
        clock.advance(minutes=minutes, seconds=1)
        services.outbox.retry_due().unwrap()
    [row] = services.outbox.list_for_escrow(ids["escrow"]).unwrap()
    assert (row["status"], row["attempt_count"]) == ("FAILED_PERMANENT", 5)
    assert stripe_fake.transfers == []
    note = flows.row(services, "SELECT user_id FROM notifications WHERE category = 'PAYOUT_FAILED_PERMANENT'")
    assert note["user_id"] == admin


@pytest.mark.parametrize("kind", ["invalid_request", "auth"])
def test_refused_request_fails_permanently_at_once_and_admins_are_told(services, stripe_fake, clock, kind):
    """A 400/401 from Stripe will be refused the same way tomorrow: no 24 h of back-off."""
    admin = flows.admin(services)
    ids = flows.submitted_task(services, stripe_fake)
    stripe_fake.fail_next("/v1/transfers", kind=kind)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    [row] = services.outbox.list_for_escrow(ids["escrow"]).unwrap()
    assert (row["status"], row["attempt_count"]) == ("FAILED_PERMANENT", 1) and row["last_error"]
    note = flows.row(services, "SELECT user_id, metadata FROM notifications "
                               "WHERE category = 'PAYOUT_FAILED_PERMANENT'")
    assert note["user_id"] == admin and note["metadata"]["outbox_id"] == str(row["id"])
    clock.advance(days=2)
    assert services.outbox.retry_due().unwrap()["due"] == 0
    assert stripe_fake.transfers == [] and len(flows_calls(stripe_fake, "/v1/transfers")) == 1


@pytest.mark.parametrize("kind", ["api_error", "network", "rate_limit", "lock_timeout", "conflict"])
def test_transient_failures_keep_retrying(services, stripe_fake, clock, kind):
    ids = flows.submitted_task(services, stripe_fake)
    stripe_fake.fail_next("/v1/transfers", kind=kind)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    [row] = services.outbox.list_for_escrow(ids["escrow"]).unwrap()
    assert (row["status"], row["attempt_count"]) == ("PENDING", 1)
    clock.advance(minutes=5, seconds=1)
    assert services.outbox.retry_due().unwrap()["succeeded"] == 1
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 3825, "refunded": 0}


def flows_calls(fake, prefix):
    return [c for c in fake.calls if c[0] == "POST" and c[1].startswith(prefix)]


def test_payout_waits_for_a_worker_without_connected_account(services, stripe_fake):
    worker = flows.user(services, connect=False)
    ids = flows.submitted_task(services, stripe_fake, worker=worker)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    [row] = services.outbox.list_for_escrow(ids["escrow"]).unwrap()
    assert (row["status"], row["last_error"], row["attempt_count"]) == ("PENDING", "NO_PAYOUT_ACCOUNT", 0)
    with services.db.transaction() as conn:
        conn.execute("UPDATE users SET stripe_connect_id = 'acct_late' WHERE id = %s", (worker,))
    assert services.outbox.release_waiting_for(worker).unwrap() == {"due": 1}
    assert stripe_fake.transfers[0]["destination"] == "acct_late"


def test_two_retry_workers_at_once_pay_once(services, stripe_fake, clock):
    ids = flows.submitted_task(services, stripe_fake)
    stripe_fake.fail_next("/v1/transfers", kind="api_error")
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    clock.advance(minutes=6)
    _run_threads(4, lambda _: services.outbox.retry_due())
    assert len(stripe_fake.transfers) == 1


# -- races -------------------------------------------------------------------------


def test_release_racing_cancel_has_one_winner_and_one_money_movement(services, stripe_fake):
    for _ in range(5):
        ids = flows.submitted_task(services, stripe_fake)
        results = _run_threads(2, lambda i, ids=ids: services.proofs.accept(ids["proof"], ids["poster"]) if i == 0
                               else services.disputes.create(ids["task"], ids["worker"], reason="OTHER",
                                                             description="race"))
        assert sum(r.ok for r in results) == 1
        money = stripe_fake.money_out(str(ids["escrow"]))
        moved = [k for k, v in money.items() if v]
        escrow = _escrow(services, ids["escrow"])
        assert len(moved) <= 1 and (escrow["state"] == "RELEASED") == (moved == ["transferred"])


def test_cancel_racing_accept_then_release_never_pays_twice(services, stripe_fake):
    for _ in range(5):
        poster, task = flows.funded_task(services, stripe_fake)
        worker = flows.user(services)
        results = _run_threads(2, lambda i, task=task, worker=worker, poster=poster:
                               services.tasks.accept(task["id"], worker) if i == 0
                               else services.tasks.cancel(task["id"], poster))
        assert sum(r.ok for r in results) >= 1
        escrow = _escrow(services, task["escrow_id"])
        money = stripe_fake.money_out(str(task["escrow_id"]))
        if escrow["state"] == "REFUNDED":
            assert money == {"transferred": 0, "refunded": task["price"]}
        else:
            assert escrow["state"] == "FUNDED" and money == {"transferred": 0, "refunded": 0}


def test_refund_and_release_of_one_escrow_directly_race(services, stripe_fake):
    for _ in range(5):
        ids = flows.submitted_task(services, stripe_fake)
        admin = flows.admin(services)
        dispute = services.disputes.create(ids["task"], ids["poster"], reason="OTHER", description="x").unwrap()
        results = _run_threads(2, lambda i, dispute=dispute, admin=admin: services.disputes.resolve(
            dispute["dispute"]["id"], admin, resolution="HUSTLER_WINS" if i == 0 else "CLIENT_WINS", notes="race"))
        assert sorted(r.code or "OK" for r in results) == ["CONFLICT", "OK"]
        money = stripe_fake.money_out(str(ids["escrow"]))
        assert (money["transferred"] > 0) != (money["refunded"] > 0)
        moves = [c for c in stripe_fake.calls
                 if c[1] in ("/v1/transfers", "/v1/refunds") and str(ids["escrow"]) in (c[3] or "")]
        assert len(moves) == 1


# -- conservation ------------------------------------------------------------------


def test_money_is_conserved_over_random_lifecycles(services, stripe_fake, clock):
    rng = random.Random(20261129)
    admin = flows.admin(services)
    for _ in range(30):
        price = rng.randrange(500, 20000)
        ending = rng.choice(["complete", "cancel_open", "cancel_accepted", "client_wins", "hustler_wins",
                             "split", "reject_then_complete", "transfer_fails"])
        poster = flows.user(services)
        task = flows.post(services, poster, price=price)
        if ending == "cancel_open":
            if rng.random() < 0.5:
                flows.fund(services, stripe_fake, task)
            services.tasks.cancel(task["id"], poster).unwrap()
            continue
        flows.fund(services, stripe_fake, task)
        ids = {"poster": poster, "task": task["id"], "escrow": task["escrow_id"], "worker": flows.user(services)}
        services.tasks.accept(task["id"], ids["worker"]).unwrap()
        if ending == "cancel_accepted":
            services.tasks.cancel(task["id"], poster).unwrap()
            continue
        flows.submit_proof(services, ids)
        if ending == "reject_then_complete":
            services.proofs.reject(ids["proof"], poster, "again").unwrap()
            flows.submit_proof(services, ids)
        if ending == "transfer_fails":
            stripe_fake.fail_next("/v1/transfers", kind="network")
        if ending in ("complete", "reject_then_complete", "transfer_fails"):
            services.proofs.accept(ids["proof"], poster).unwrap()
            continue
        dispute = services.disputes.create(task["id"], poster, reason="OTHER", description="x").unwrap()
        resolution = {"client_wins": "CLIENT_WINS", "hustler_wins": "HUSTLER_WINS", "split": "SPLIT"}[ending]
        services.disputes.resolve(dispute["dispute"]["id"], admin, resolution=resolution, notes="n",
                                  split_percent=rng.randrange(1, 100) if resolution == "SPLIT" else None).unwrap()
    clock.advance(minutes=6)
    services.outbox.retry_due().unwrap()

    with services.db.transaction() as conn:
        escrows = conn.execute("SELECT * FROM escrows").fetchall()
        xp_escrows = {r["escrow_id"] for r in conn.execute("SELECT escrow_id FROM xp_ledger").fetchall()}
    assert len(escrows) == 30
    for e in escrows:
        money = stripe_fake.money_out(str(e["id"]))
        paid = e["funded_at"] is not None
        if e["state"] == "RELEASED":
            released, refunded = e["amount"], 0
        elif e["state"] == "REFUNDED":
            released, refunded = 0, e["amount"] if paid else 0
        else:
            assert e["state"] == "REFUND_PARTIAL"
            released, refunded = e["release_amount"], e["refund_amount"]
        if paid:
            assert released + refunded == e["amount"]
        assert money == {"transferred": released * 85 // 100, "refunded": refunded}, e
        assert (e["id"] in xp_escrows) == (e["state"] == "RELEASED")


def test_connecting_a_payout_account_sends_what_waited(services, stripe_fake):
    worker = flows.user(services, connect=False)
    ids = flows.submitted_task(services, stripe_fake, worker=worker)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert stripe_fake.transfers == []
    services.users.set_connect_account(worker, "acct_1NewWorker").unwrap()
    assert [t["destination"] for t in stripe_fake.transfers] == ["acct_1NewWorker"]
    assert stripe_fake.money_out(str(ids["escrow"]))["transferred"] == ids["price"] * 85 // 100


def test_a_late_retry_finds_a_transfer_stripe_already_made(services, stripe_fake, clock):
    ids = flows.submitted_task(services, stripe_fake, price=4500)
    stripe_fake.fail_next("/v1/transfers", kind="api_error", method="POST")
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    # The first attempt did reach Stripe after all, under a key Stripe has since forgotten.
    paid = services.payments.create_transfer(amount=3825, destination="acct_elsewhere", escrow_id=str(ids["escrow"]),
                                             task_id=str(ids["task"]), worker_id=str(ids["worker"]),
                                             idempotency_key="a-key-stripe-forgot")
    clock.advance(minutes=6)
    assert services.outbox.retry_due().unwrap()["succeeded"] == 1
    assert [t["id"] for t in stripe_fake.transfers] == [paid]
    assert services.escrows.get_by_id(ids["escrow"]).unwrap()["stripe_transfer_id"] == paid
