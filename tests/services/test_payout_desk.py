"""The admin payout desk over money_outbox: each desk status maps onto exactly the rows it
names, pages are keyset-stable, and a retry goes back to PENDING once, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.ledger import assert_money_conserved
from tests.services import flows


@pytest.fixture(autouse=True)
def conserved(services, stripe_fake):
    yield
    with services.db.transaction() as conn:
        assert_money_conserved(lambda q: conn.execute(q).fetchall(), stripe_fake)


@pytest.fixture
def admin(services):
    return flows.admin(services, can_access_financials=True)


def _desk(services, admin, status, **kw):
    return [p["id"] for p in services.payout_desk.payouts(admin, status=status, limit=10, **kw).unwrap()["payouts"]]


def _failed_for_good(services, stripe_fake):
    """A completed task whose transfer Stripe refused for good (FAILED_PERMANENT at once)."""
    stripe_fake.fail_next("/v1/transfers", kind="invalid_request", method="POST")
    ids = flows.completed_task(services, stripe_fake)
    ids["outbox"] = flows.row(services, "SELECT id, status FROM money_outbox WHERE escrow_id = %s", ids["escrow"])
    assert ids["outbox"]["status"] == "FAILED_PERMANENT"
    return ids


def test_each_desk_status_lists_exactly_its_rows(services, stripe_fake, admin):
    failed = _failed_for_good(services, stripe_fake)
    waiting = flows.completed_task(services, stripe_fake, worker=flows.user(services, connect=False))
    stripe_fake.fail_next("/v1/transfers", kind="api_error", method="POST")
    backing_off = flows.completed_task(services, stripe_fake)
    sent = flows.completed_task(services, stripe_fake)
    outbox = {name: flows.row(services, "SELECT id FROM money_outbox WHERE escrow_id = %s", ids["escrow"])["id"]
              for name, ids in (("waiting", waiting), ("backing_off", backing_off), ("sent", sent))}
    assert _desk(services, admin, "FAILED_PERMANENT") == [failed["outbox"]["id"]]
    assert _desk(services, admin, "WAITING_FOR_ACCOUNT") == [outbox["waiting"]]
    assert _desk(services, admin, "PENDING") == [outbox["backing_off"]]
    assert _desk(services, admin, "LOCKED") == []
    # A chargeback moves the failed row from FAILED_PERMANENT to LOCKED.
    flows.deliver(services, stripe_fake.open_dispute(
        flows.row(services, "SELECT stripe_payment_intent_id AS pi FROM escrows WHERE id = %s",
                  failed["escrow"])["pi"]))
    assert _desk(services, admin, "LOCKED") == [failed["outbox"]["id"]]
    assert _desk(services, admin, "FAILED_PERMANENT") == []
    for status in ("PENDING", "WAITING_FOR_ACCOUNT", "FAILED_PERMANENT", "LOCKED"):
        assert outbox["sent"] not in _desk(services, admin, status)


def test_an_attempt_that_died_mid_send_on_a_held_escrow_is_locked(services, stripe_fake, admin, clock):
    """A claim raced the chargeback (the hold saw the row unsent, the attempt had started) and its
    process died mid-send: the row stays PROCESSING, no new attempt may start while the escrow is
    held, so the desk lists it under LOCKED once its lease is over."""
    ids = _failed_for_good(services, stripe_fake)
    flows.deliver(services, stripe_fake.open_dispute(
        flows.row(services, "SELECT stripe_payment_intent_id AS pi FROM escrows WHERE id = %s", ids["escrow"])["pi"]))
    with services.db.transaction() as conn:  # what the racing claim left behind when its process died
        conn.execute("UPDATE money_outbox SET status = 'PROCESSING', next_attempt_at = %s WHERE id = %s",
                     (clock() + timedelta(minutes=1), ids["outbox"]["id"]))
    assert _desk(services, admin, "LOCKED") == []  # its lease still runs: it may yet report
    clock.advance(minutes=2)
    assert _desk(services, admin, "LOCKED") == [ids["outbox"]["id"]]
    assert services.payout_desk.retry(admin, ids["outbox"]["id"]).code == "HX204"


def test_desk_pages_are_keyset_paged_oldest_first(services, stripe_fake, admin):
    workers = [flows.completed_task(services, stripe_fake, worker=flows.user(services, connect=False))
               for _ in range(3)]
    everything = _desk(services, admin, "WAITING_FOR_ACCOUNT")
    assert len(everything) == 3 and {r for r in everything} == {
        flows.row(services, "SELECT id FROM money_outbox WHERE escrow_id = %s", w["escrow"])["id"] for w in workers}
    first = services.payout_desk.payouts(admin, status="WAITING_FOR_ACCOUNT", limit=2).unwrap()
    assert [p["id"] for p in first["payouts"]] == everything[:2] and first["has_more"]
    rest = services.payout_desk.payouts(admin, status="WAITING_FOR_ACCOUNT", limit=2,
                                        after=first["next_after"]).unwrap()
    assert [p["id"] for p in rest["payouts"]] == everything[2:] and not rest["has_more"] and rest["next_after"] is None


def test_retry_sends_a_failed_payout_exactly_once_and_is_audited(services, stripe_fake, admin):
    ids = _failed_for_good(services, stripe_fake)
    assert stripe_fake.transfers == []
    out = services.payout_desk.retry(admin, ids["outbox"]["id"]).unwrap()
    assert out["previous_status"] == "FAILED_PERMANENT" and out["status"] == "PENDING"
    assert [t["amount"] for t in stripe_fake.transfers] == [ids["price"] * 85 // 100]
    row = flows.row(services, "SELECT status FROM money_outbox WHERE id = %s", ids["outbox"]["id"])
    assert row["status"] == "SUCCEEDED"
    action = flows.row(services, "SELECT * FROM admin_actions WHERE id = %s", out["action_id"])
    assert action["action_type"] == "PAYOUT_RETRY" and action["target_escrow_id"] == ids["escrow"]
    assert action["action_details"]["previous_status"] == "FAILED_PERMANENT"
    again = services.payout_desk.retry(admin, ids["outbox"]["id"])
    assert again.code == "CONFLICT" and again.error.details == {"status": "SUCCEEDED"}
    assert len(stripe_fake.transfers) == 1
    assert flows.row(services, "SELECT count(*) AS n FROM admin_actions WHERE action_type = 'PAYOUT_RETRY'")["n"] == 1


def test_retry_refuses_locked_unknown_and_non_admins(services, stripe_fake, admin):
    ids = _failed_for_good(services, stripe_fake)
    pi = flows.row(services, "SELECT stripe_payment_intent_id AS pi FROM escrows WHERE id = %s", ids["escrow"])["pi"]
    flows.deliver(services, stripe_fake.open_dispute(pi))
    locked = services.payout_desk.retry(admin, ids["outbox"]["id"])
    assert locked.code == "HX204" and locked.error.status == 409
    assert services.payout_desk.retry(admin, ids["task"]).code == "NOT_FOUND"
    assert services.payout_desk.retry(ids["poster"], ids["outbox"]["id"]).code == "FORBIDDEN"
    assert services.payout_desk.payouts(ids["poster"], status="PENDING", limit=5).code == "FORBIDDEN"
    assert flows.row(services, "SELECT count(*) AS n FROM admin_actions")["n"] == 0
    assert stripe_fake.transfers == []


def test_retry_of_a_waiting_transfer_is_due_now_and_still_waits_for_the_account(services, stripe_fake, admin):
    ids = flows.completed_task(services, stripe_fake, worker=flows.user(services, connect=False))
    outbox_id = flows.row(services, "SELECT id FROM money_outbox WHERE escrow_id = %s", ids["escrow"])["id"]
    assert services.payout_desk.retry(admin, outbox_id).unwrap()["previous_status"] == "PENDING"
    assert stripe_fake.transfers == []
    assert _desk(services, admin, "WAITING_FOR_ACCOUNT") == [outbox_id]
