"""Connect onboarding (issue 12): the worker's Express account, our copy of it from account.updated
(replayed, out of order, before our row exists) and refreshes, and transfers that wait while the
account cannot be paid and go out exactly once when it can."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hustlexp.services.connect import FRESH_WHILE_ONBOARDING
from tests.fakes.stripe_fake import FakeStripe
from tests.services import flows


def onboard(services: Any, worker: Any) -> dict[str, Any]:
    return services.connect.start_onboarding(worker).unwrap()


def finish(services: Any, fake: FakeStripe, link: dict[str, Any]) -> dict[str, Any]:
    """The worker follows the link to the end; Stripe tells us."""
    back, event = fake.follow_link(link["url"])
    assert back.endswith("/settings/payments?success=true") and event is not None
    return flows.deliver(services, event)


def outbox_row(services: Any, escrow: Any) -> dict[str, Any]:
    row = flows.row(services, "SELECT * FROM money_outbox WHERE escrow_id = %s AND kind = 'TRANSFER'", escrow)
    assert row is not None
    return row


def released_to_new_worker(services: Any, fake: FakeStripe, **kw: Any) -> dict[str, Any]:
    worker = flows.user(services, connect=False)
    return flows.completed_task(services, fake, worker=worker, **kw)


def notes(services: Any, user: Any, category: str) -> int:
    row = flows.row(services, "SELECT count(*) AS n FROM notifications WHERE user_id = %s AND category = %s",
                    user, category)
    assert row is not None
    return int(row["n"])


# -- onboarding ---------------------------------------------------------------------------


def test_onboarding_creates_one_express_account_and_a_new_link_each_time(services, stripe_fake):
    worker = flows.user(services, connect=False)
    first = onboard(services, worker)
    second = onboard(services, worker)
    assert first["stripe_account_id"] == second["stripe_account_id"]
    assert first["url"] != second["url"] and first["expires_at"] > services.clock()
    creates = [c for c in stripe_fake.calls if c[:2] == ("POST", "/v1/accounts")]
    assert len(creates) == 1
    params, key = creates[0][2], creates[0][3]
    assert key == f"connect-account-{worker}"
    assert params["type"] == "express" and params["business_type"] == "individual"
    assert params["capabilities"] == {"transfers": {"requested": "true"}}
    assert params["metadata"] == {"hustlexp_user_id": str(worker)}
    links = [c[2] for c in stripe_fake.calls if c[:2] == ("POST", "/v1/account_links")]
    assert links[0]["type"] == "account_onboarding"
    assert links[0]["return_url"] == "http://localhost:8081/settings/payments?success=true"
    assert links[0]["refresh_url"] == "http://localhost:8081/settings/payments?refresh=true"
    user = flows.row(services, "SELECT stripe_connect_id FROM users WHERE id = %s", worker)
    assert user == {"stripe_connect_id": first["stripe_account_id"]}


def test_onboarding_when_stripe_fails_stores_nothing(services, stripe_fake):
    worker = flows.user(services, connect=False)
    stripe_fake.fail_next("/v1/accounts", kind="invalid_request")
    assert services.connect.start_onboarding(worker).code == "PAYMENT_PROVIDER_ERROR"
    assert flows.row(services, "SELECT stripe_connect_id FROM users WHERE id = %s", worker)["stripe_connect_id"] is None
    assert flows.row(services, "SELECT count(*) AS n FROM payout_accounts")["n"] == 0


def test_onboarding_of_an_unknown_user_is_hx504(services):
    import uuid

    assert services.connect.start_onboarding(uuid.uuid4()).code == "HX504"
    assert services.connect.status(uuid.uuid4()).code == "HX504"


def test_status_goes_not_started_incomplete_complete(services, stripe_fake):
    worker = flows.user(services, connect=False)
    assert services.connect.status(worker).unwrap() | {"synced_at": None} == {
        "status": "NOT_STARTED", "stripe_account_id": None, "payouts_enabled": False, "details_submitted": False,
        "charges_enabled": False, "currently_due": [], "disabled_reason": None, "synced_at": None}
    link = onboard(services, worker)
    started = services.connect.status(worker).unwrap()
    assert started["status"] == "INCOMPLETE" and not started["payouts_enabled"]
    assert "external_account" in started["currently_due"]
    finish(services, stripe_fake, link)
    done = services.connect.status(worker).unwrap()
    assert (done["status"], done["payouts_enabled"], done["currently_due"]) == ("COMPLETE", True, [])


def test_a_used_link_sends_the_worker_to_refresh(services, stripe_fake):
    link = onboard(services, flows.user(services, connect=False))
    stripe_fake.follow_link(link["url"])
    back, event = stripe_fake.follow_link(link["url"])
    assert back.endswith("?refresh=true") and event is None


# -- transfers wait for payouts -----------------------------------------------------------


def test_transfer_waits_until_account_updated_enables_payouts_then_goes_once(services, stripe_fake):
    worker = flows.user(services, connect=False)
    link = onboard(services, worker)
    ids = flows.completed_task(services, stripe_fake, worker=worker, price=4500)
    row = outbox_row(services, ids["escrow"])
    assert (row["status"], row["last_error"]) == ("PENDING", "PAYOUTS_DISABLED")
    assert not [c for c in stripe_fake.calls if c[:2] == ("POST", "/v1/transfers")]  # not even tried
    out = finish(services, stripe_fake, link)
    assert out["result"] == "processed" and out["transfers_due"] == 1
    assert [(t["destination"], t["amount"]) for t in stripe_fake.transfers] == [(link["stripe_account_id"], 3825)]
    assert notes(services, worker, "PAYOUT_ACCOUNT_READY") == 1
    # Stripe delivers the same event again, and a later one saying the same: nothing moves twice.
    assert flows.deliver(services, stripe_fake.events[-1])["result"] == "duplicate"
    again = flows.deliver(services, stripe_fake.event("account.updated",
                                                      stripe_fake.accounts[link["stripe_account_id"]]))
    assert again["result"] == "processed" and "transfers_due" not in again
    assert len(stripe_fake.transfers) == 1 and notes(services, worker, "PAYOUT_ACCOUNT_READY") == 1
    assert outbox_row(services, ids["escrow"])["status"] == "SUCCEEDED"


def test_account_updated_before_our_row_exists_links_the_account(services, stripe_fake):
    worker = flows.user(services, connect=False)
    ids = flows.completed_task(services, stripe_fake, worker=worker)
    # Stripe made the account, but the request that asked died before storing it.
    account = services.payments.create_express_account(user_id=str(worker), email=None, idempotency_key="k1")
    out = flows.deliver(services, stripe_fake.complete_onboarding(account["id"]))
    assert out["result"] == "processed" and out["user_id"] == worker
    assert flows.row(services, "SELECT stripe_connect_id FROM users WHERE id = %s", worker)["stripe_connect_id"] \
        == account["id"]
    assert [t["destination"] for t in stripe_fake.transfers] == [account["id"]]
    # Onboarding again finds the account and makes no second one.
    assert onboard(services, worker)["stripe_account_id"] == account["id"]
    assert len([c for c in stripe_fake.calls if c[:2] == ("POST", "/v1/accounts")]) == 1
    assert stripe_fake.money_out(str(ids["escrow"]))["transferred"] == ids["price"] * 85 // 100


def test_an_older_event_delivered_late_changes_nothing(services, stripe_fake):
    worker = flows.user(services, connect=False)
    link = onboard(services, worker)
    account_id = link["stripe_account_id"]
    enabled = stripe_fake.complete_onboarding(account_id)
    restricted = stripe_fake.restrict_account(account_id)
    enabled["created"] = restricted["created"] - 10
    assert flows.deliver(services, restricted)["result"] == "processed"
    assert flows.deliver(services, enabled) | {"event_id": None} == {
        "event_id": None, "type": "account.updated", "result": "skipped", "reason": "older_than_stored",
        "account_id": account_id}
    held = flows.row(services, "SELECT payouts_enabled, currently_due FROM payout_accounts")
    assert held == {"payouts_enabled": False, "currently_due": ["individual.verification.document"]}


def test_payouts_turning_off_make_new_transfers_wait_and_tell_the_worker(services, stripe_fake):
    worker = flows.user(services, connect=False)
    link = onboard(services, worker)
    finish(services, stripe_fake, link)
    flows.deliver(services, stripe_fake.restrict_account(link["stripe_account_id"]))
    assert notes(services, worker, "PAYOUT_ACCOUNT_RESTRICTED") == 1
    ids = flows.completed_task(services, stripe_fake, worker=worker)
    row = outbox_row(services, ids["escrow"])
    assert (row["status"], row["attempt_count"], row["last_error"]) == ("PENDING", 0, "PAYOUTS_DISABLED")
    assert not [c for c in stripe_fake.calls if c[:2] == ("POST", "/v1/transfers")]
    assert flows.deliver(services, stripe_fake.complete_onboarding(link["stripe_account_id"]))["transfers_due"] == 1
    assert len(stripe_fake.transfers) == 1 and outbox_row(services, ids["escrow"])["status"] == "SUCCEEDED"


def test_stripe_refusing_a_transfer_for_capabilities_makes_it_wait_not_fail(services, stripe_fake):
    worker = flows.user(services, connect=False)
    link = onboard(services, worker)
    finish(services, stripe_fake, link)
    # Stripe restricted the account; its account.updated has not reached us yet.
    stripe_fake.restrict_account(link["stripe_account_id"])
    ids = flows.completed_task(services, stripe_fake, worker=worker)
    row = outbox_row(services, ids["escrow"])
    assert (row["status"], row["last_error"]) == ("PENDING", "PAYOUTS_DISABLED")
    assert [c for c in stripe_fake.calls if c[:2] == ("POST", "/v1/transfers")]  # tried, refused by Stripe
    assert flows.row(services, "SELECT count(*) AS n FROM notifications WHERE category = 'PAYOUT_FAILED_PERMANENT'"
                     )["n"] == 0


def test_an_account_of_nobody_is_acknowledged_and_ignored(services, stripe_fake):
    account = services.payments.create_express_account(user_id="00000000-0000-0000-0000-000000000000", email=None,
                                                       idempotency_key="nobody")
    out = flows.deliver(services, stripe_fake.complete_onboarding(account["id"]))
    assert (out["result"], out["reason"]) == ("ignored", "unknown_account")
    assert flows.row(services, "SELECT count(*) AS n FROM payout_accounts")["n"] == 0


@pytest.mark.parametrize(("path", "value"), [
    (("data", "object", "payouts_enabled"), "yes"),
    (("data", "object", "requirements", "currently_due"), "external_account"),
    (("data", "object", "requirements", "currently_due"), ["ok", "bad\x00"]),
    (("created",), None),
    (("created",), "1700000000"),
    (("created",), 10**15),
    (("data", "object", "requirements", "disabled_reason"), "x" * 256),
])
def test_a_malformed_account_event_is_refused_and_nothing_recorded(services, stripe_fake, path, value):
    link = onboard(services, flows.user(services, connect=False))
    event = copy.deepcopy(stripe_fake.complete_onboarding(link["stripe_account_id"]))
    node = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    payload, header = FakeStripe.sign(event, services.webhook_secret)
    assert services.webhooks.handle(payload, header).code == "VALIDATION_ERROR"
    assert flows.row(services, "SELECT count(*) AS n FROM processed_stripe_events")["n"] == 0
    assert flows.row(services, "SELECT payouts_enabled FROM payout_accounts")["payouts_enabled"] is False


# -- refreshing our copy --------------------------------------------------------------------


def test_a_stale_copy_is_refreshed_from_stripe_and_sends_what_waited(services, stripe_fake, clock):
    worker = flows.user(services, connect=False)
    link = onboard(services, worker)
    ids = flows.completed_task(services, stripe_fake, worker=worker)
    stripe_fake.complete_onboarding(link["stripe_account_id"])  # its webhook never arrives
    assert services.connect.status(worker).unwrap()["status"] == "INCOMPLETE"  # still fresh: not asked
    assert not [c for c in stripe_fake.calls if c[0] == "GET" and c[1].startswith("/v1/accounts/")]
    clock.advance(seconds=FRESH_WHILE_ONBOARDING.total_seconds() + 1)
    refreshed = services.connect.status(worker).unwrap()
    assert (refreshed["status"], refreshed["payouts_enabled"]) == ("COMPLETE", True)
    assert stripe_fake.money_out(str(ids["escrow"]))["transferred"] == ids["price"] * 85 // 100


def test_status_answers_from_our_copy_when_stripe_is_away(services, stripe_fake, clock):
    worker = flows.user(services, connect=False)
    onboard(services, worker)
    clock.advance(minutes=5)
    stripe_fake.fail_next("/v1/accounts/", kind="api_error", times=3)
    status = services.connect.status(worker).unwrap()
    assert status["status"] == "INCOMPLETE" and status["synced_at"] is not None


def test_a_hand_set_account_reads_as_ready_and_is_paid(services, stripe_fake):
    worker = flows.user(services)  # connected by id, no onboarding
    status = services.connect.status(worker).unwrap()
    assert (status["status"], status["payouts_enabled"], status["synced_at"]) == ("COMPLETE", True, None)
    ids = flows.completed_task(services, stripe_fake, worker=worker)
    assert stripe_fake.money_out(str(ids["escrow"]))["transferred"] == ids["price"] * 85 // 100


def test_events_signed_by_the_connect_endpoint_are_accepted(db, stripe_fake, tmp_path):
    from hustlexp.services import Services
    from hustlexp.services.payments import PaymentsGateway

    gateway = PaymentsGateway("sk_test_connect", http_client=stripe_fake.http_client(),
                              webhook_secret="whsec_platform", connect_webhook_secret="whsec_connect")
    services = Services(db, payments=gateway, storage_dir=tmp_path, send_inline=True)
    worker = flows.user(services, connect=False)
    link = onboard(services, worker)
    event = stripe_fake.complete_onboarding(link["stripe_account_id"])
    assert services.webhooks.handle(*FakeStripe.sign(event, "whsec_other")).code == "WEBHOOK_SIGNATURE_INVALID"
    assert services.webhooks.handle(*FakeStripe.sign(event, "whsec_connect")).unwrap()["result"] == "processed"
    assert services.webhooks.handle(*FakeStripe.sign(event, "whsec_platform")).unwrap()["result"] == "duplicate"


def test_an_anonymised_worker_is_never_linked_again(services, stripe_fake):
    worker = flows.user(services, connect=False)
    account = services.payments.create_express_account(user_id=str(worker), email=None, idempotency_key="gone")
    with services.db.transaction() as conn:
        conn.execute("UPDATE users SET account_status = 'CLOSED', closed_at = now(), anonymized_at = now() "
                     "WHERE id = %s", (worker,))
    assert flows.deliver(services, stripe_fake.complete_onboarding(account["id"]))["result"] == "processed"
    assert flows.row(services, "SELECT stripe_connect_id FROM users WHERE id = %s", worker)["stripe_connect_id"] is None
    assert notes(services, worker, "PAYOUT_ACCOUNT_READY") == 0


def test_a_hand_set_account_stripe_restricts_stops_payouts_and_tells_the_worker(services, stripe_fake):
    account = services.payments.create_express_account(user_id="x", email=None, idempotency_key="hand")
    stripe_fake.complete_onboarding(account["id"])  # finished long ago; we never heard of it
    worker = flows.user(services, stripe_connect_id=account["id"])  # set by hand, no copy yet
    paid = flows.completed_task(services, stripe_fake, worker=worker)
    assert stripe_fake.money_out(str(paid["escrow"]))["transferred"] == paid["price"] * 85 // 100
    out = flows.deliver(services, stripe_fake.restrict_account(account["id"]))
    assert (out["result"], out["user_id"], out["payouts_enabled"]) == ("processed", worker, False)
    assert notes(services, worker, "PAYOUT_ACCOUNT_RESTRICTED") == 1
    ids = flows.completed_task(services, stripe_fake, worker=worker)
    assert outbox_row(services, ids["escrow"])["last_error"] == "PAYOUTS_DISABLED"
    status = services.connect.status(worker).unwrap()
    assert (status["status"], status["payouts_enabled"], status["currently_due"]) == (
        "COMPLETE", False, ["individual.verification.document"])
