"""The fake Stripe's money events (issue 12): charges with Radar outcomes read through the real
stripe library (in process and over HTTP), disputes that open and close, transfer reversals,
failed payouts on a connected account, and the accounts of money that came back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.fakes.stripe_fake import FakeStripe


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe_fake:
        yield stripe_fake


def _paid(client: stripe.StripeClient, fake: FakeStripe, amount: int = 5000, escrow: str = "e1") -> str:
    pi = client.v1.payment_intents.create({"amount": amount, "currency": "usd", "metadata": {"escrow_id": escrow}})
    fake.succeed_payment(pi.id)
    return str(pi.id)


@pytest.mark.parametrize("over_http", [False, True])
def test_charge_carries_the_radar_level_set_for_its_intent(fake, over_http):
    client = stripe.StripeClient("sk_test_fake", max_network_retries=0,
                                 **({"base_addresses": {"api": fake.serve()}} if over_http
                                    else {"http_client": fake.http_client()}))
    pi_id = _paid(client, fake)
    charge_id = fake.payment_intents[pi_id]["latest_charge"]
    assert client.v1.charges.retrieve(charge_id).outcome.risk_level == "normal"
    fake.set_risk(pi_id, "highest")
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.outcome.risk_level, charge.outcome.risk_score, charge.payment_intent) == ("highest", 90, pi_id)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.charges.retrieve("ch_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_dispute_opens_and_closes_with_events_and_counts_a_lost_charge(fake):
    client = stripe.StripeClient("sk_test_fake", http_client=fake.http_client())
    pi_id = _paid(client, fake, 5000, "e1")
    opened = fake.open_dispute(pi_id, reason="fraudulent")
    dispute = opened["data"]["object"]
    assert opened["type"] == "charge.dispute.created" and dispute["status"] == "needs_response"
    assert (dispute["amount"], dispute["payment_intent"], dispute["charge"]) == \
        (5000, pi_id, fake.payment_intents[pi_id]["latest_charge"])
    assert fake.charge_of(pi_id)["disputed"] is True
    assert fake.money_back("e1") == {"reversed": 0, "charged_back": 0}
    closed = fake.close_dispute(dispute["id"], "lost")
    assert closed["type"] == "charge.dispute.closed" and closed["data"]["object"]["status"] == "lost"
    assert fake.money_back("e1") == {"reversed": 0, "charged_back": 5000}
    assert fake.money_back("e2") == {"reversed": 0, "charged_back": 0}
    with pytest.raises(ValueError):
        fake.open_dispute(client.v1.payment_intents.create({"amount": 100, "currency": "usd"}).id)


def test_transfer_reversals_add_up_and_never_exceed_the_transfer(fake):
    client = stripe.StripeClient("sk_test_fake", http_client=fake.http_client())
    transfer = client.v1.transfers.create({"amount": 1000, "currency": "usd", "destination": "acct_1",
                                           "metadata": {"escrow_id": "e1"}})
    first = fake.reverse_transfer(transfer.id, 400)
    assert first["type"] == "transfer.reversed" and first["data"]["object"]["amount_reversed"] == 400
    assert first["data"]["object"]["reversed"] is False
    with pytest.raises(ValueError):
        fake.reverse_transfer(transfer.id, 601)
    rest = fake.reverse_transfer(transfer.id)
    assert rest["data"]["object"]["amount_reversed"] == 1000 and rest["data"]["object"]["reversed"] is True
    assert rest["data"]["object"]["reversals"]["total_count"] == 2
    assert fake.money_back("e1") == {"reversed": 1000, "charged_back": 0}
    assert fake.money_out("e1") == {"transferred": 1000, "refunded": 0}


def test_failed_payout_is_an_event_of_the_connected_account(fake):
    event = fake.fail_payout("acct_1W", 2500, "no_account")
    assert event["type"] == "payout.failed" and event["account"] == "acct_1W"
    assert event["data"]["object"]["status"] == "failed" and event["data"]["object"]["failure_code"] == "no_account"
    assert fake.events[-1]["account"] == "acct_1W"
    assert fake.payouts[event["data"]["object"]["id"]]["amount"] == 2500
