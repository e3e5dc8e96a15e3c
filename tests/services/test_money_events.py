"""Money events (issue 12): chargebacks hold or record, Radar flags and blocks, reversed
transfers and failed payouts are recorded and told, unknown events are acknowledged once.
Every event replayed, several out of order; money is conserved in each test."""

from __future__ import annotations

import logging

import pytest

from tests.fakes.stripe_fake import FakeStripe
from tests.ledger import assert_money_conserved
from tests.services import flows


@pytest.fixture(autouse=True)
def conserved(services, stripe_fake):
    yield
    assert_money_conserved(lambda q: _rows(services, q), stripe_fake)


@pytest.fixture
def admin(services):
    return flows.admin(services, can_access_financials=True)


def _rows(services, query, *params):
    with services.db.transaction() as conn:
        return conn.execute(query, params).fetchall()


def _escrow(services, escrow_id):
    return flows.row(services, "SELECT * FROM escrows WHERE id = %s", escrow_id)


def _alerts(services, category):
    return _rows(services, "SELECT * FROM notifications WHERE category = %s ORDER BY created_at", category)


def _pi(services, ids):
    return _escrow(services, ids["escrow"])["stripe_payment_intent_id"]


# -- chargebacks on money we still hold ---------------------------------------------------


def test_chargeback_on_a_funded_escrow_holds_it_and_alerts_admins(services, stripe_fake, admin):
    ids = flows.submitted_task(services, stripe_fake)
    event = stripe_fake.open_dispute(_pi(services, ids))
    out = flows.deliver(services, event)
    assert out["result"] == "processed" and out["money_held"] is True
    assert _escrow(services, ids["escrow"])["chargeback_hold"] == "CHARGEBACK"
    assert [a["user_id"] for a in _alerts(services, "CHARGEBACK_OPENED")] == [admin]
    # Neither the completion chain nor a cancellation moves the held money.
    refused = services.proofs.accept(ids["proof"], ids["poster"])
    assert refused.code == "HX204" and refused.error.status == 409
    assert _escrow(services, ids["escrow"])["state"] == "FUNDED"
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", ids["task"])["state"] == "PROOF_SUBMITTED"
    assert stripe_fake.transfers == [] and stripe_fake.refunds == []
    assert flows.deliver(services, event)["result"] == "duplicate"
    again = flows.deliver(services, stripe_fake.event("charge.dispute.created", stripe_fake.disputes[
        event["data"]["object"]["id"]]))
    assert again["result"] == "skipped"
    assert len(_alerts(services, "CHARGEBACK_OPENED")) == 1


def test_a_held_escrow_blocks_acceptance_and_refunds(services, stripe_fake, admin):
    poster, task = flows.funded_task(services, stripe_fake)
    flows.deliver(services, stripe_fake.open_dispute(task["payment_intent_id"]))
    taken = services.tasks.accept(task["id"], flows.user(services))
    assert taken.code == "CONFLICT" and taken.error.details == {"reason": "PAYMENT_UNDER_REVIEW"}
    cancelled = services.tasks.cancel(task["id"], poster)
    assert cancelled.code == "HX204"
    assert _escrow(services, task["escrow_id"])["state"] == "FUNDED"


def test_chargeback_won_lifts_the_hold_and_the_worker_is_paid_once(services, stripe_fake, admin):
    ids = flows.submitted_task(services, stripe_fake, price=6000)
    opened = flows.deliver(services, stripe_fake.open_dispute(_pi(services, ids)))
    dispute_id = next(iter(stripe_fake.disputes))
    closed = stripe_fake.close_dispute(dispute_id, "won")
    assert flows.deliver(services, closed)["status"] == "WON"
    assert flows.deliver(services, closed)["result"] == "duplicate"
    assert _escrow(services, ids["escrow"])["chargeback_hold"] is None
    row = flows.row(services, "SELECT * FROM chargebacks WHERE id = %s", opened["chargeback_id"])
    assert row["status"] == "WON" and row["loss_amount"] == 0 and row["closed_at"] is not None
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert [t["amount"] for t in stripe_fake.transfers] == [6000 * 85 // 100]
    assert len(_alerts(services, "CHARGEBACK_CLOSED")) == 1


def test_chargeback_lost_keeps_the_money_held_for_good_and_ends_the_task(services, stripe_fake, admin):
    ids = flows.submitted_task(services, stripe_fake)
    flows.deliver(services, stripe_fake.open_dispute(_pi(services, ids)))
    dispute_id = next(iter(stripe_fake.disputes))
    assert flows.deliver(services, stripe_fake.close_dispute(dispute_id, "lost"))["status"] == "LOST"
    escrow = _escrow(services, ids["escrow"])
    assert escrow["chargeback_hold"] == "CHARGEBACK_LOST" and escrow["state"] == "FUNDED"
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", ids["task"])["state"] == "CANCELLED"
    notified = {n["user_id"] for n in _alerts(services, "TASK_CANCELLED")}
    assert notified == {ids["poster"], ids["worker"]}
    chargeback = flows.row(services, "SELECT * FROM chargebacks")
    assert chargeback["money_held"] and chargeback["loss_amount"] == 0
    refunded = services.escrows.refund(ids["escrow"])
    assert refunded.code == "HX204"
    # A late "won" for the same dispute changes nothing: the chargeback is closed.
    late = stripe_fake.event("charge.dispute.closed", {**stripe_fake.disputes[dispute_id], "status": "won"})
    assert flows.deliver(services, late)["result"] == "skipped"
    assert _escrow(services, ids["escrow"])["chargeback_hold"] == "CHARGEBACK_LOST"
    assert stripe_fake.transfers == [] and stripe_fake.refunds == []


def test_dispute_closed_before_created_applies_the_outcome_once(services, stripe_fake, admin):
    _, task = flows.funded_task(services, stripe_fake)
    created = stripe_fake.open_dispute(task["payment_intent_id"])
    closed = stripe_fake.close_dispute(created["data"]["object"]["id"], "lost")
    assert flows.deliver(services, closed)["status"] == "LOST"
    assert flows.deliver(services, created)["result"] == "skipped"
    assert _escrow(services, task["escrow_id"])["chargeback_hold"] == "CHARGEBACK_LOST"
    assert flows.row(services, "SELECT count(*) AS n FROM chargebacks")["n"] == 1
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", task["id"])["state"] == "CANCELLED"


def test_dispute_before_the_payment_event_holds_the_escrow_it_then_funds(services, stripe_fake, admin):
    poster = flows.user(services)
    task = flows.post(services, poster)
    funded = stripe_fake.succeed_payment(task["payment_intent_id"])
    flows.deliver(services, stripe_fake.open_dispute(task["payment_intent_id"]))
    assert _escrow(services, task["escrow_id"])["chargeback_hold"] == "CHARGEBACK"
    flows.deliver(services, funded)
    escrow = _escrow(services, task["escrow_id"])
    assert escrow["state"] == "FUNDED" and escrow["chargeback_hold"] == "CHARGEBACK"


def test_chargeback_holds_a_released_transfer_not_yet_sent(services, stripe_fake, admin):
    worker = flows.user(services, connect=False)
    ids = flows.submitted_task(services, stripe_fake, worker=worker)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert _escrow(services, ids["escrow"])["state"] == "RELEASED" and stripe_fake.transfers == []
    out = flows.deliver(services, stripe_fake.open_dispute(_pi(services, ids)))
    assert out["money_held"] is True
    # The worker connects an account: the transfer is due but held, so nothing goes out.
    services.users.set_connect_account(worker, "acct_1Later").unwrap()
    assert services.outbox.retry_due().unwrap()["due"] == 0
    assert stripe_fake.transfers == []
    desk = services.payout_desk.payouts(admin, status="LOCKED", limit=10).unwrap()
    assert [p["escrow_id"] for p in desk["payouts"]] == [ids["escrow"]]
    flows.deliver(services, stripe_fake.close_dispute(next(iter(stripe_fake.disputes)), "won"))
    assert [t["destination"] for t in stripe_fake.transfers] == ["acct_1Later"]


def test_chargeback_lost_cancels_a_held_transfer(services, stripe_fake, admin):
    worker = flows.user(services, connect=False)
    ids = flows.submitted_task(services, stripe_fake, worker=worker)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    flows.deliver(services, stripe_fake.open_dispute(_pi(services, ids)))
    flows.deliver(services, stripe_fake.close_dispute(next(iter(stripe_fake.disputes)), "lost"))
    row = flows.row(services, "SELECT status, last_error FROM money_outbox WHERE escrow_id = %s", ids["escrow"])
    assert row == {"status": "CANCELLED", "last_error": "CHARGEBACK_LOST"}
    services.users.set_connect_account(worker, "acct_1Later").unwrap()
    assert stripe_fake.transfers == []
    # The task had completed: it stays so, and the worker keeps the XP of the released escrow.
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", ids["task"])["state"] == "COMPLETED"


# -- chargebacks on money already paid out --------------------------------------------------


@pytest.mark.parametrize("outcome, loss", [("lost", 4500), ("won", 0), ("warning_closed", 0)])
def test_chargeback_after_payout_records_the_loss(services, stripe_fake, admin, outcome, loss):
    ids = flows.completed_task(services, stripe_fake, price=4500)
    assert len(stripe_fake.transfers) == 1
    out = flows.deliver(services, stripe_fake.open_dispute(_pi(services, ids)))
    assert out["money_held"] is False
    row = flows.row(services, "SELECT * FROM chargebacks")
    assert row["status"] == "OPEN" and row["loss_amount"] == 4500 and row["escrow_id"] == ids["escrow"]
    assert _escrow(services, ids["escrow"])["chargeback_hold"] is None
    flows.deliver(services, stripe_fake.close_dispute(row["stripe_dispute_id"], outcome))
    row = flows.row(services, "SELECT * FROM chargebacks")
    assert row["status"] == ("LOST" if outcome == "lost" else "WON") and row["loss_amount"] == loss
    assert row["stripe_status"] == outcome
    assert len(_alerts(services, "CHARGEBACK_OPENED")) == len(_alerts(services, "CHARGEBACK_CLOSED")) == 1


def test_dispute_of_an_unknown_charge_is_recorded_and_alerted(services, stripe_fake, admin):
    event = stripe_fake.event("charge.dispute.created", {
        "id": "dp_unknown", "object": "dispute", "amount": 1200, "charge": "ch_elsewhere",
        "payment_intent": "pi_elsewhere", "reason": "fraudulent", "status": "needs_response"})
    assert flows.deliver(services, event)["money_held"] is False
    row = flows.row(services, "SELECT * FROM chargebacks")
    assert row["escrow_id"] is None and row["loss_amount"] == 1200
    assert len(_alerts(services, "CHARGEBACK_OPENED")) == 1


def test_dispute_closed_with_a_status_that_is_not_final_is_ignored(services, stripe_fake, admin):
    event = stripe_fake.event("charge.dispute.closed", {"id": "dp_odd", "object": "dispute", "amount": 10,
                                                        "status": "under_review"})
    assert flows.deliver(services, event)["result"] == "ignored"
    assert flows.row(services, "SELECT count(*) AS n FROM chargebacks")["n"] == 0


# -- reversed transfers and failed payouts -------------------------------------------------------


def test_transfer_reversed_is_recorded_and_told_once_per_amount(services, stripe_fake, admin):
    ids = flows.completed_task(services, stripe_fake, price=10000)
    transfer = stripe_fake.transfers[0]
    first = stripe_fake.reverse_transfer(transfer["id"], 1000)
    assert flows.deliver(services, first)["result"] == "processed"
    assert flows.deliver(services, first)["result"] == "duplicate"
    # The same state under a new event id, then a second reversal that grows the amount.
    assert flows.deliver(services, stripe_fake.event("transfer.reversed", transfer))["result"] == "skipped"
    assert flows.deliver(services, stripe_fake.reverse_transfer(transfer["id"], 500))["result"] == "processed"
    row = flows.row(services, "SELECT * FROM payout_incidents")
    assert (row["kind"], row["amount"], row["user_id"], row["escrow_id"]) == \
        ("TRANSFER_REVERSED", 1500, ids["worker"], ids["escrow"])
    told = _alerts(services, "PAYOUT_REVERSED")
    assert [n["user_id"] for n in told] == [ids["worker"], ids["worker"]] and told[0]["task_id"] == ids["task"]
    assert [n["user_id"] for n in _alerts(services, "PAYOUT_INCIDENT")] == [admin, admin]


def test_payout_failed_on_a_connected_account_tells_its_worker_and_admins(services, stripe_fake, admin):
    worker = flows.user(services, stripe_connect_id="acct_1Bank")
    event = stripe_fake.fail_payout("acct_1Bank", 3825, "account_closed")
    assert flows.deliver(services, event)["result"] == "processed"
    assert flows.deliver(services, event)["result"] == "duplicate"
    row = flows.row(services, "SELECT * FROM payout_incidents")
    assert (row["kind"], row["user_id"], row["amount"], row["failure_code"]) == \
        ("PAYOUT_FAILED", worker, 3825, "account_closed")
    assert [n["user_id"] for n in _alerts(services, "PAYOUT_FAILED")] == [worker]
    assert [n["user_id"] for n in _alerts(services, "PAYOUT_INCIDENT")] == [admin]


def test_payout_failed_for_an_account_we_do_not_know_yet_alerts_admins_only(services, stripe_fake, admin):
    flows.deliver(services, stripe_fake.fail_payout("acct_1Stranger", 100))
    assert flows.row(services, "SELECT user_id, stripe_account_id FROM payout_incidents") == \
        {"user_id": None, "stripe_account_id": "acct_1Stranger"}
    assert _alerts(services, "PAYOUT_FAILED") == [] and len(_alerts(services, "PAYOUT_INCIDENT")) == 1


# -- Radar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["normal", "elevated"])
def test_payment_risk_normal_or_elevated_funds_and_allows_acceptance(services, stripe_fake, admin, level):
    poster = flows.user(services)
    task = flows.post(services, poster)
    stripe_fake.set_risk(task["payment_intent_id"], level)
    flows.fund(services, stripe_fake, task)
    escrow = _escrow(services, task["escrow_id"])
    assert (escrow["state"], escrow["payment_risk_level"]) == ("FUNDED", level)
    assert len(_alerts(services, "PAYMENT_RISK_REVIEW")) == (1 if level == "elevated" else 0)
    services.tasks.accept(task["id"], flows.user(services)).unwrap()


def test_payment_risk_highest_blocks_acceptance_until_an_admin_clears_it(services, stripe_fake, admin):
    poster = flows.user(services)
    task = flows.post(services, poster)
    stripe_fake.set_risk(task["payment_intent_id"], "highest")
    event = stripe_fake.succeed_payment(task["payment_intent_id"])
    assert flows.deliver(services, event)["flagged"] is True
    assert flows.deliver(services, event)["result"] == "duplicate"
    assert len(_alerts(services, "PAYMENT_RISK_REVIEW")) == 1
    worker = flows.user(services)
    assert services.tasks.accept(task["id"], worker).error.details == {"reason": "PAYMENT_UNDER_REVIEW"}
    in_feed = lambda: task["id"] in [t["id"] for t in services.feed.feed(worker).unwrap()["items"]]  # noqa: E731
    assert not in_feed()
    assert services.payment_risk.clear(poster, task["escrow_id"]).code == "FORBIDDEN"
    cleared = services.payment_risk.clear(admin, task["escrow_id"], note="called the poster").unwrap()
    assert cleared["risk_cleared_by"] == admin
    action = flows.row(services, "SELECT * FROM admin_actions WHERE id = %s", cleared["action_id"])
    assert action["action_type"] == "PAYMENT_RISK_CLEAR" and action["target_escrow_id"] == task["escrow_id"]
    assert services.payment_risk.clear(admin, task["escrow_id"]).code == "CONFLICT"
    assert in_feed()
    services.tasks.accept(task["id"], worker).unwrap()


def test_risk_read_from_an_expanded_charge_needs_no_stripe_call(services, stripe_fake, admin):
    task = flows.post(services, flows.user(services))
    event = stripe_fake.succeed_payment(task["payment_intent_id"])
    stripe_fake.set_risk(task["payment_intent_id"], "highest")
    event["data"]["object"]["latest_charge"] = {"id": "ch_x", "outcome": {"risk_level": "elevated"}}
    before = len(stripe_fake.calls)
    flows.deliver(services, event)
    assert len(stripe_fake.calls) == before
    assert _escrow(services, task["escrow_id"])["payment_risk_level"] == "elevated"


def test_a_charge_stripe_cannot_read_fails_the_delivery_for_a_retry(services, stripe_fake):
    task = flows.post(services, flows.user(services))
    event = stripe_fake.succeed_payment(task["payment_intent_id"])
    stripe_fake.fail_next("/v1/charges", kind="api_error")
    payload, header = FakeStripe.sign(event, "whsec_test_services")
    assert services.webhooks.handle(payload, header).code == "PAYMENT_PROVIDER_ERROR"
    assert flows.row(services, "SELECT count(*) AS n FROM processed_stripe_events")["n"] == 0
    assert _escrow(services, task["escrow_id"])["state"] == "PENDING"
    assert flows.deliver(services, event)["state"] == "FUNDED"


# -- unknown events -------------------------------------------------------------------------------


def test_unknown_event_is_acknowledged_and_logged_once(services, stripe_fake, caplog):
    event = stripe_fake.event("customer.created", {"id": "cus_1", "object": "customer"})
    with caplog.at_level(logging.WARNING, logger="hustlexp.services.stripe_webhooks"):
        assert flows.deliver(services, event)["result"] == "ignored"
        assert flows.deliver(services, event)["result"] == "duplicate"
    assert len([r for r in caplog.records if "unhandled type customer.created" in r.getMessage()]) == 1
    assert flows.row(services, "SELECT result FROM processed_stripe_events")["result"] == "ignored"


@pytest.mark.parametrize("obj, field", [
    ({"id": "dp_1", "amount": 10, "reason": "x" * 101}, "data.object.reason"),
    ({"id": "dp_1", "amount": 10, "charge": "ch\x00"}, "data.object.charge"),
    ({"id": "dp_1", "amount": "10"}, "data.object.amount"),
])
def test_malformed_dispute_is_refused_once(services, stripe_fake, obj, field):
    payload, header = FakeStripe.sign(stripe_fake.event("charge.dispute.created", obj), "whsec_test_services")
    result = services.webhooks.handle(payload, header)
    assert result.code == "VALIDATION_ERROR" and field in result.error.details
    assert flows.row(services, "SELECT count(*) AS n FROM processed_stripe_events")["n"] == 0


def test_a_charge_stripe_will_never_show_funds_without_a_verdict(services, stripe_fake):
    task = flows.post(services, flows.user(services))
    stripe_fake.fail_next("/v1/charges", kind="invalid_request")
    assert flows.deliver(services, stripe_fake.succeed_payment(task["payment_intent_id"]))["state"] == "FUNDED"
    assert _escrow(services, task["escrow_id"])["payment_risk_level"] is None
