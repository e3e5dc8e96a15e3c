"""The fake Stripe keeps the promises the payment tests lean on: Stripe-shaped answers,
idempotency, failure injection, webhook signing, thread safety."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe

from tests.fakes.stripe_fake import FakeStripe, NetworkFailure, decode_form

AUTH = {"Authorization": "Bearer sk_test_fake"}


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe_fake:
        yield stripe_fake


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_fake", http_client=fake.http_client(), max_network_retries=0)


def post(fake: FakeStripe, path: str, body: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = dict(AUTH, **({"Idempotency-Key": key} if key else {}))
    status, text, _ = fake.handle("POST", path, "", headers, body)
    return status, json.loads(text)


def test_decode_form_undoes_stripe_encoding() -> None:
    assert decode_form("amount=500&metadata[escrow_id]=e1&metadata[task_id]=t1&expand[0]=a&expand[1]=b"
                       "&automatic_payment_methods[enabled]=true") == {
        "amount": "500", "metadata": {"escrow_id": "e1", "task_id": "t1"}, "expand": ["a", "b"],
        "automatic_payment_methods": {"enabled": "true"}}
    assert decode_form("") == {}


def test_unknown_path_is_a_stripe_404(fake: FakeStripe, client: stripe.StripeClient) -> None:
    status, body = post(fake, "/v1/charges_nope", "amount=1")
    assert status == 404
    assert body["error"]["type"] == "invalid_request_error"

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payouts.create({"amount": 100, "currency": "usd"})
    assert caught.value.http_status == 404


def test_unknown_path_over_http_is_a_stripe_404(fake: FakeStripe) -> None:
    base_url = fake.serve()
    response = requests.get(f"{base_url}/v1/nothing_here", headers=AUTH, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_api_key_is_401(fake: FakeStripe) -> None:
    status, text, _ = fake.handle("POST", "/v1/payment_intents", "", {}, "amount=500&currency=usd")
    assert status == 401
    assert json.loads(text)["error"]["type"] == "invalid_request_error"
    assert fake.payment_intents == {}


def test_unknown_parameter_is_refused(fake: FakeStripe) -> None:
    status, body = post(fake, "/v1/payment_intents", "amount=500&currency=usd&amonut=5")
    assert status == 400
    assert (body["error"]["code"], body["error"]["param"]) == ("parameter_unknown", "amonut")
    assert fake.payment_intents == {}


def test_idempotency_replays_and_refuses_mismatch(fake: FakeStripe) -> None:
    first_status, first = post(fake, "/v1/payment_intents", "amount=500&currency=usd", key="k1")
    status, text, headers = fake.handle("POST", "/v1/payment_intents", "", dict(AUTH, **{"Idempotency-Key": "k1"}),
                                        "amount=500&currency=usd")
    assert (first_status, status) == (200, 200)
    assert json.loads(text) == first
    assert headers["Idempotent-Replayed"] == "true"

    other_params = post(fake, "/v1/payment_intents", "amount=501&currency=usd", key="k1")
    other_endpoint = post(fake, "/v1/transfers", "amount=500&currency=usd&destination=acct_1", key="k1")
    for status, body in (other_params, other_endpoint):
        assert status == 400
        assert body["error"]["type"] == "idempotency_error"
    assert len(fake.payment_intents) == 1
    assert fake.transfers == []


def test_refusals_are_not_stored_under_the_key(fake: FakeStripe) -> None:
    _, pi = post(fake, "/v1/payment_intents", "amount=500&currency=usd", key="pi")
    body = f"payment_intent={pi['id']}&amount=500"
    assert post(fake, "/v1/refunds", body, key="refund")[0] == 400
    fake.succeed_payment(pi["id"])

    status, refund = post(fake, "/v1/refunds", body, key="refund")

    assert (status, refund["amount"], refund["status"]) == (200, 500, "succeeded")
    assert post(fake, "/v1/refunds", f"payment_intent={pi['id']}&amount=1", key="refund-2")[1]["error"][
        "code"] == "charge_already_refunded"


def test_fail_next_counts_and_filters(fake: FakeStripe) -> None:
    fake.fail_next("/v1/transfers", times=2, kind="api_error", method="POST")
    body = "amount=100&currency=usd&destination=acct_1"

    assert fake.handle("GET", "/v1/transfers", "", AUTH, "")[0] == 200
    assert post(fake, "/v1/payment_intents", "amount=500&currency=usd")[0] == 200
    assert [post(fake, "/v1/transfers", body)[0] for _ in range(3)] == [500, 500, 200]
    assert len(fake.transfers) == 1


def test_fail_next_network_raises_before_effect(fake: FakeStripe) -> None:
    fake.fail_next("/v1/transfers", kind="network")
    with pytest.raises(NetworkFailure):
        post(fake, "/v1/transfers", "amount=100&currency=usd&destination=acct_1", key="t")
    assert fake.transfers == []
    assert [c[3] for c in fake.calls] == ["t"]


def test_fail_next_after_effect_keeps_the_effect_for_replay(fake: FakeStripe) -> None:
    fake.fail_next("/v1/transfers", kind="api_error", after_effect=True)
    body = "amount=100&currency=usd&destination=acct_1&metadata[escrow_id]=e1"

    assert post(fake, "/v1/transfers", body, key="t")[0] == 500
    status, replayed = post(fake, "/v1/transfers", body, key="t")

    assert status == 200
    assert [t["id"] for t in fake.transfers] == [replayed["id"]]
    assert fake.money_out("e1") == {"transferred": 100, "refunded": 0}


def test_a_replay_meeting_a_remaining_failure_loses_its_answer_too(fake: FakeStripe) -> None:
    fake.fail_next("/v1/transfers", times=2, kind="api_error", after_effect=True)
    body = "amount=100&currency=usd&destination=acct_1&metadata[escrow_id]=e1"

    assert post(fake, "/v1/transfers", body, key="t")[0] == 500
    assert post(fake, "/v1/transfers", body, key="t")[0] == 500  # replayed, answer lost again
    status, replayed = post(fake, "/v1/transfers", body, key="t")

    assert status == 200
    assert [t["id"] for t in fake.transfers] == [replayed["id"]]


def test_network_failure_surfaces_as_api_connection_error(fake: FakeStripe, client: stripe.StripeClient
                                                          ) -> None:
    fake.fail_next("/v1/payment_intents", kind="network")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.payment_intents.retrieve("pi_any")


def test_money_out_counts_only_that_escrow(fake: FakeStripe, client: stripe.StripeClient) -> None:
    client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": "acct_1",
                                "metadata": {"escrow_id": "e1"}})
    client.v1.transfers.create({"amount": 300, "currency": "usd", "destination": "acct_1",
                                "metadata": {"escrow_id": "e2"}})
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    fake.succeed_payment(pi.id, amount=1000)
    client.v1.refunds.create({"payment_intent": pi.id, "amount": 250, "metadata": {"escrow_id": "e1"}})

    assert fake.money_out("e1") == {"transferred": 100, "refunded": 250}
    assert fake.money_out("e2") == {"transferred": 300, "refunded": 0}
    assert fake.money_out("e3") == {"transferred": 0, "refunded": 0}


def test_payment_events(fake: FakeStripe, client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    other = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})

    succeeded = fake.succeed_payment(pi.id, amount=900)
    failed = fake.fail_payment(other.id)
    canceled = fake.cancel_event(other.id)

    assert (succeeded["type"], succeeded["data"]["object"]["amount_received"]) == (
        "payment_intent.succeeded", 900)
    assert failed["data"]["object"]["last_payment_error"]["code"] == "card_declined"
    assert (canceled["type"], canceled["data"]["object"]["status"]) == ("payment_intent.canceled", "canceled")
    assert len({e["id"] for e in fake.events}) == 3
    assert all(e["id"].startswith("evt_") for e in fake.events)
    with pytest.raises(ValueError):
        fake.succeed_payment(other.id)
    with pytest.raises(ValueError):
        fake.cancel_event(pi.id)


def test_sign_uses_stripes_scheme() -> None:
    payload, header = FakeStripe.sign({"id": "evt_1", "type": "x"}, "whsec_s", timestamp=1700000000)

    expected = hmac.new(b"whsec_s", b"1700000000." + payload, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert json.loads(payload) == {"id": "evt_1", "type": "x"}
    assert FakeStripe.sign(payload, "whsec_s", timestamp=1700000000) == (payload, header)


def test_concurrent_requests_all_land(fake: FakeStripe) -> None:
    base_url = fake.serve()
    in_process = stripe.StripeClient("sk_test_fake", http_client=fake.http_client(), max_network_retries=0)
    over_http = stripe.StripeClient("sk_test_fake", base_addresses={"api": base_url}, max_network_retries=0)
    ids: list[str] = []
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        client = in_process if n % 2 else over_http
        try:
            for i in range(5):
                pi = client.v1.payment_intents.create({"amount": 500 + i, "currency": "usd"},
                                                      {"idempotency_key": f"k-{n}-{i}"})
                ids.append(pi.id)
                client.v1.payment_intents.create({"amount": 500 + i, "currency": "usd"},
                                                 {"idempotency_key": f"k-{n}-{i}"})
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(ids) == len(set(ids)) == 50
    assert set(fake.payment_intents) == set(ids)
    assert len(fake.calls) == 100


# -- Connect: accounts, account links (issue 12a) -------------------------------------------


def test_an_express_account_starts_restricted_and_its_link_completes_it_once(fake: FakeStripe,
                                                                            client: stripe.StripeClient) -> None:
    account = client.v1.accounts.create({"type": "express", "business_type": "individual",
                                         "capabilities": {"transfers": {"requested": True}},
                                         "metadata": {"hustlexp_user_id": "u1"}})
    assert (account.payouts_enabled, account.details_submitted, account.capabilities.to_dict()) == (
        False, False, {"transfers": "inactive"})
    assert account.requirements.currently_due and account.metadata.to_dict() == {"hustlexp_user_id": "u1"}
    link = client.v1.account_links.create({"account": account.id, "type": "account_onboarding",
                                           "refresh_url": "https://app.test/r", "return_url": "https://app.test/ok"})
    assert link.expires_at > link.created
    back, event = fake.follow_link(link.url)
    assert back == "https://app.test/ok" and event is not None and event["type"] == "account.updated"
    assert event["data"]["object"]["payouts_enabled"] is True
    assert event["data"]["object"]["requirements"]["currently_due"] == []
    assert fake.follow_link(link.url) == ("https://app.test/r", None)
    assert client.v1.accounts.retrieve(account.id).payouts_enabled is True


def test_transfers_follow_the_accounts_transfers_capability(fake: FakeStripe, client: stripe.StripeClient) -> None:
    account = client.v1.accounts.create({"type": "express", "capabilities": {"transfers": {"requested": True}}})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": account.id})
    assert caught.value.code == "insufficient_capabilities_for_transfer"
    fake.complete_onboarding(account.id)
    assert client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": account.id}).amount == 100
    fake.restrict_account(account.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": account.id})
    # An account id the fake never made is taken as given (accounts set by hand).
    assert client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": "acct_elsewhere"}).id


def test_account_calls_refuse_what_stripe_refuses(fake: FakeStripe, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.accounts.retrieve("acct_missing")
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.account_links.create({"account": "acct_missing", "type": "account_onboarding",
                                        "return_url": "https://app.test/ok"})
    assert caught.value.param == "account"
    account = client.v1.accounts.create({"type": "express"})
    for params, param in (({"type": "nope", "return_url": "https://a.test"}, "type"),
                          ({"type": "account_onboarding"}, "return_url"),
                          ({"type": "account_onboarding", "return_url": "hustlexp://x"}, "return_url")):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.account_links.create({"account": account.id, **params})  # type: ignore[arg-type]
        assert caught.value.param == param
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.accounts.create({"type": "express", "bank": "x"})  # type: ignore[typeddict-unknown-key]
    assert caught.value.param == "bank"


def test_a_served_link_redirects_the_browser(fake: FakeStripe) -> None:
    base_url = fake.serve()
    client = stripe.StripeClient("sk_test_fake", base_addresses={"api": base_url}, max_network_retries=0)
    account = client.v1.accounts.create({"type": "express"})
    link = client.v1.account_links.create({"account": account.id, "type": "account_onboarding",
                                           "return_url": "https://app.test/ok"})
    assert link.url.startswith(base_url)
    first = requests.get(link.url, allow_redirects=False, timeout=10)
    assert (first.status_code, first.headers["Location"]) == (302, "https://app.test/ok")
    again = requests.get(link.url, allow_redirects=False, timeout=10)
    assert (again.status_code, again.headers["Location"]) == (302, "https://app.test/ok")  # no refresh_url given
    assert [e["type"] for e in fake.events] == ["account.updated"]
