"""The payments gateway against the fake Stripe, through the real stripe library: in-process via
the library's custom HTTP client, and once over real HTTP with api_base."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from hustlexp.errors import PaymentProviderError
from hustlexp.services.payments import (
    Intent,
    PaymentError,
    PaymentsGateway,
    WebhookSignatureError,
    to_payment_error,
)
from hustlexp.services.stripe_http import stripe_budget
from tests.fakes.stripe_fake import FakeStripe

SECRET = "whsec_test_payments"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe_fake:
        yield stripe_fake


@pytest.fixture
def gateway(fake: FakeStripe) -> PaymentsGateway:
    return PaymentsGateway("sk_test_x", http_client=fake.http_client(), webhook_secret=SECRET)


def create_intent(gateway: PaymentsGateway, escrow_id: str = "esc_1", amount: int = 5000,
                  key: str | None = None) -> Intent:
    return gateway.create_payment_intent(amount=amount, escrow_id=escrow_id, task_id="task_1",
                                         poster_id="user_poster", idempotency_key=key or f"pi-{escrow_id}")


def paid_intent(gateway: PaymentsGateway, fake: FakeStripe, escrow_id: str = "esc_1",
                amount: int = 5000) -> Intent:
    intent = create_intent(gateway, escrow_id, amount)
    fake.succeed_payment(intent.id)
    return intent


def transfer(gateway: PaymentsGateway, escrow_id: str = "esc_1", amount: int = 4250,
             key: str = "transfer-esc_1-1") -> str:
    return gateway.create_transfer(amount=amount, destination="acct_worker", escrow_id=escrow_id,
                                   task_id="task_1", worker_id="user_worker", idempotency_key=key)


def calls_to(fake: FakeStripe, method: str, path: str) -> list[tuple[str, str, dict[str, Any], str | None]]:
    return [c for c in fake.calls if c[0] == method and c[1] == path]


# -- PaymentIntents -----------------------------------------------------------------------------


def test_create_payment_intent_charges_price_with_escrow_metadata(gateway: PaymentsGateway,
                                                                  fake: FakeStripe) -> None:
    intent = create_intent(gateway, "esc_1", 5000)

    assert intent.id.startswith("pi_")
    assert intent.client_secret is not None and intent.client_secret.startswith(intent.id + "_secret_")
    assert (intent.status, intent.amount, intent.currency) == ("requires_payment_method", 5000, "usd")
    assert intent.metadata == {"escrow_id": "esc_1", "task_id": "task_1", "poster_user_id": "user_poster"}
    stored = fake.payment_intents[intent.id]
    assert stored["capture_method"] == "automatic"
    assert stored["transfer_group"] == "esc_1"
    [(_, _, params, key)] = calls_to(fake, "POST", "/v1/payment_intents")
    assert key == "pi-esc_1"
    assert "radar_options" not in params
    assert params["amount"] == "5000"


def test_create_payment_intent_same_key_returns_same_intent_once(gateway: PaymentsGateway,
                                                                 fake: FakeStripe) -> None:
    first = create_intent(gateway, "esc_1")
    second = create_intent(gateway, "esc_1")

    assert second == first
    assert second.client_secret == first.client_secret
    assert len(fake.payment_intents) == 1
    assert [c[3] for c in calls_to(fake, "POST", "/v1/payment_intents")] == ["pi-esc_1", "pi-esc_1"]


def test_create_payment_intent_same_key_other_amount_is_refused(gateway: PaymentsGateway,
                                                                fake: FakeStripe) -> None:
    create_intent(gateway, "esc_1", 5000)

    with pytest.raises(PaymentError) as caught:
        create_intent(gateway, "esc_1", 6000)

    assert caught.value.http_status == 400
    assert caught.value.retryable is False
    assert isinstance(caught.value.__cause__, stripe.IdempotencyError)
    assert len(fake.payment_intents) == 1


def test_create_payment_intent_concurrent_same_key_creates_one(gateway: PaymentsGateway,
                                                               fake: FakeStripe) -> None:
    results: list[str] = []
    barrier = threading.Barrier(12)

    def create() -> None:
        barrier.wait()
        results.append(create_intent(gateway, "esc_race").id)

    threads = [threading.Thread(target=create) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 12
    assert len(set(results)) == 1
    assert list(fake.payment_intents) == results[:1]


def test_threads_sharing_a_gateway_keep_their_connections_alive(fake: FakeStripe) -> None:
    """A worker's threads share one gateway: each keeps its connection to Stripe for the next
    call instead of opening one per call (a pool of fewer connections than threads would not)."""
    gateway = PaymentsGateway("sk_test_x", api_base=fake.serve(), webhook_secret=SECRET)
    fake.latency = 0.02  # the calls of a round overlap
    threads, rounds = 16, 4
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def calls(n: int) -> None:
        try:
            for r in range(rounds):
                start.wait(timeout=60)  # a thread that failed breaks the barrier: no hang
                create_intent(gateway, escrow_id=f"esc_{n}_{r}")
        except BaseException as exc:  # surfaced below, not lost in the thread
            failures.append(exc)

    workers = [threading.Thread(target=calls, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    assert len(calls_to(fake, "POST", "/v1/payment_intents")) == threads * rounds
    assert fake.connections <= threads


@pytest.mark.parametrize("amount", [0, -500])
def test_create_payment_intent_refuses_non_positive_amount(gateway: PaymentsGateway, fake: FakeStripe,
                                                           amount: int) -> None:
    with pytest.raises(ValueError):
        create_intent(gateway, amount=amount)
    assert fake.calls == []


def test_retrieve_payment_intent_sees_payment(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = create_intent(gateway)
    fake.succeed_payment(intent.id)

    current = gateway.retrieve_payment_intent(intent.id)

    assert (current.id, current.status, current.amount_received) == (intent.id, "succeeded", 5000)
    assert current.metadata["escrow_id"] == "esc_1"


def test_retrieve_unknown_payment_intent_is_not_retryable(gateway: PaymentsGateway) -> None:
    with pytest.raises(PaymentError) as caught:
        gateway.retrieve_payment_intent("pi_missing")
    assert (caught.value.stripe_code, caught.value.http_status, caught.value.retryable) == (
        "resource_missing", 404, False)


def test_cancel_payment_intent_twice_is_ok(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = create_intent(gateway)

    first = gateway.cancel_payment_intent(intent.id, idempotency_key="cancel-esc_1")
    again = gateway.cancel_payment_intent(intent.id, idempotency_key="cancel-esc_1-again")
    replay = gateway.cancel_payment_intent(intent.id, idempotency_key="cancel-esc_1")

    assert first.status == again.status == replay.status == "canceled"
    assert fake.payment_intents[intent.id]["status"] == "canceled"
    assert len(calls_to(fake, "POST", f"/v1/payment_intents/{intent.id}/cancel")) == 3


def test_cancel_paid_payment_intent_is_refused(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = paid_intent(gateway, fake)

    with pytest.raises(PaymentError) as caught:
        gateway.cancel_payment_intent(intent.id, idempotency_key="cancel-esc_1")

    assert caught.value.stripe_code == "payment_intent_unexpected_state"
    assert caught.value.retryable is False
    assert fake.payment_intents[intent.id]["status"] == "succeeded"


# -- Transfers and refunds ----------------------------------------------------------------------


def test_create_transfer_pays_worker_with_escrow_metadata(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    transfer_id = transfer(gateway, "esc_1", 4250)

    [made] = fake.transfers
    assert transfer_id == made["id"] and transfer_id.startswith("tr_")
    assert (made["amount"], made["currency"], made["destination"], made["transfer_group"]) == (
        4250, "usd", "acct_worker", "esc_1")
    assert made["metadata"] == {"escrow_id": "esc_1", "task_id": "task_1", "worker_user_id": "user_worker"}
    assert fake.money_out("esc_1") == {"transferred": 4250, "refunded": 0}
    assert calls_to(fake, "POST", "/v1/transfers")[0][3] == "transfer-esc_1-1"


def test_create_transfer_retry_after_lost_response_pays_once(gateway: PaymentsGateway,
                                                             fake: FakeStripe) -> None:
    fake.fail_next("/v1/transfers", kind="network", after_effect=True)

    with pytest.raises(PaymentError) as caught:
        transfer(gateway)
    assert caught.value.retryable is True
    retried = transfer(gateway)

    assert [t["id"] for t in fake.transfers] == [retried]
    assert fake.money_out("esc_1") == {"transferred": 4250, "refunded": 0}


def test_create_transfer_to_unknown_destination_is_not_retryable(gateway: PaymentsGateway,
                                                                 fake: FakeStripe) -> None:
    with pytest.raises(PaymentError) as caught:
        gateway.create_transfer(amount=100, destination="not-an-account", escrow_id="esc_1",
                                task_id="task_1", worker_id="user_worker", idempotency_key="t-bad")
    assert (caught.value.stripe_code, caught.value.retryable) == ("resource_missing", False)
    assert fake.transfers == []


def test_find_transfer_finds_the_escrows_transfer(gateway: PaymentsGateway) -> None:
    assert gateway.find_transfer("esc_1") is None
    transfer(gateway, "esc_2", key="transfer-esc_2-1")
    made = transfer(gateway, "esc_1")

    assert gateway.find_transfer("esc_1") == made
    assert gateway.find_transfer("esc_3") is None


def test_create_refund_partial_then_rest(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = paid_intent(gateway, fake)

    first = gateway.create_refund(payment_intent_id=intent.id, amount=750, escrow_id="esc_1",
                                  reason_note="SPLIT", idempotency_key="refund-esc_1")
    rest = gateway.create_refund(payment_intent_id=intent.id, amount=4250, escrow_id="esc_1",
                                 reason_note="SPLIT", idempotency_key="refund-esc_1-rest")

    assert first.startswith("re_") and rest.startswith("re_") and first != rest
    assert fake.refunds[0]["reason"] == "requested_by_customer"
    assert fake.refunds[0]["metadata"] == {"escrow_id": "esc_1", "refund_reason": "SPLIT"}
    assert fake.refunds[0]["payment_intent"] == intent.id
    assert fake.money_out("esc_1") == {"transferred": 0, "refunded": 5000}


def test_create_refund_over_captured_amount_is_refused(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = paid_intent(gateway, fake)
    gateway.create_refund(payment_intent_id=intent.id, amount=4000, escrow_id="esc_1",
                          reason_note="CANCELLED", idempotency_key="refund-esc_1")

    with pytest.raises(PaymentError) as caught:
        gateway.create_refund(payment_intent_id=intent.id, amount=1001, escrow_id="esc_1",
                              reason_note="CANCELLED", idempotency_key="refund-esc_1-more")

    assert (caught.value.stripe_code, caught.value.http_status, caught.value.retryable) == (
        "amount_too_large", 400, False)
    assert fake.money_out("esc_1")["refunded"] == 4000


def test_create_refund_same_key_refunds_once(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = paid_intent(gateway, fake)

    ids = {gateway.create_refund(payment_intent_id=intent.id, amount=5000, escrow_id="esc_1",
                                 reason_note="CANCELLED", idempotency_key="refund-esc_1") for _ in range(3)}

    assert len(ids) == 1
    assert len(fake.refunds) == 1
    assert fake.money_out("esc_1")["refunded"] == 5000


def test_create_refund_of_unpaid_intent_is_refused(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = create_intent(gateway)

    with pytest.raises(PaymentError) as caught:
        gateway.create_refund(payment_intent_id=intent.id, amount=100, escrow_id="esc_1",
                              reason_note="CANCELLED", idempotency_key="refund-esc_1")

    assert caught.value.retryable is False
    assert caught.value.http_status == 400
    assert fake.refunds == []


# -- Error mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "retryable", "stripe_code", "cause"), [
    ("api_error", True, None, stripe.APIError),
    ("network", True, None, stripe.APIConnectionError),
    ("rate_limit", True, None, stripe.RateLimitError),
    ("lock_timeout", True, "lock_timeout", stripe.RateLimitError),
    ("card_error", False, "card_declined", stripe.CardError),
    ("invalid_request", False, "parameter_invalid_empty", stripe.InvalidRequestError),
    ("auth", False, None, stripe.AuthenticationError),
])
def test_failures_map_to_payment_error(gateway: PaymentsGateway, fake: FakeStripe, kind: Any,
                                       retryable: bool, stripe_code: str | None, cause: type) -> None:
    fake.fail_next("/v1/transfers", kind=kind)

    with pytest.raises(PaymentError) as caught:
        transfer(gateway)

    err = caught.value
    assert isinstance(err, PaymentProviderError)
    assert (err.code, err.status) == ("PAYMENT_PROVIDER_ERROR", 502)
    assert err.retryable is retryable
    assert err.stripe_code == stripe_code
    assert isinstance(err.__cause__, cause)
    assert fake.transfers == []
    # The failure happened before any effect, so a retry with the same key really pays.
    assert transfer(gateway) == fake.transfers[0]["id"]


def test_stripe_should_retry_header_overrides_status() -> None:
    # A 409 is normally worth retrying; Stripe can say otherwise, and the gateway listens.
    told_not_to = stripe.APIError("conflict", http_status=409, headers={"Stripe-Should-Retry": "false"})
    told_to = stripe.InvalidRequestError("busy", None, http_status=400, headers={"stripe-should-retry": "true"})

    assert to_payment_error(told_not_to).retryable is False
    assert to_payment_error(stripe.APIError("conflict", http_status=409)).retryable is True
    assert to_payment_error(told_to).retryable is True


def test_lock_timeout_code_is_retryable_whatever_the_status() -> None:
    locked = stripe.InvalidRequestError("locked", None, code="lock_timeout", http_status=400)
    declined = stripe.InvalidRequestError("bad", "amount", code="parameter_invalid_integer", http_status=400)

    assert (to_payment_error(locked).retryable, to_payment_error(locked).stripe_code) == (True, "lock_timeout")
    assert to_payment_error(declined).retryable is False


def test_failure_is_seen_once_without_library_retries(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    fake.fail_next("/v1/payment_intents", kind="network")

    with pytest.raises(PaymentError):
        create_intent(gateway)

    assert len(calls_to(fake, "POST", "/v1/payment_intents")) == 1
    assert fake.payment_intents == {}


def test_library_retries_when_asked(fake: FakeStripe) -> None:
    patient = PaymentsGateway("sk_test_x", http_client=fake.http_client(), max_network_retries=1)
    fake.fail_next("/v1/payment_intents", kind="api_error")

    intent = create_intent(patient)

    attempts = calls_to(fake, "POST", "/v1/payment_intents")
    assert len(attempts) == 2
    assert attempts[0][3] == attempts[1][3] == "pi-esc_1"
    assert list(fake.payment_intents) == [intent.id]


def test_failures_are_logged_with_ids(gateway: PaymentsGateway, fake: FakeStripe,
                                      caplog: pytest.LogCaptureFixture) -> None:
    fake.fail_next("/v1/refunds", kind="api_error")
    intent = paid_intent(gateway, fake, "esc_logged")

    with caplog.at_level(logging.WARNING, logger="hustlexp.payments"), pytest.raises(PaymentError):
        gateway.create_refund(payment_intent_id=intent.id, amount=100, escrow_id="esc_logged",
                              reason_note="CANCELLED", idempotency_key="refund-esc_logged")

    [record] = [r for r in caplog.records if r.name == "hustlexp.payments"]
    assert "esc_logged" in record.getMessage() and intent.id in record.getMessage()
    assert intent.client_secret is not None and intent.client_secret not in record.getMessage()


def test_gateways_do_not_share_state() -> None:
    with FakeStripe() as one, FakeStripe() as two:
        first = PaymentsGateway("sk_test_one", http_client=one.http_client())
        second = PaymentsGateway("sk_test_two", http_client=two.http_client())

        a = create_intent(first, "esc_a")
        b = create_intent(second, "esc_b")

        assert list(one.payment_intents) == [a.id]
        assert list(two.payment_intents) == [b.id]
        assert stripe.api_key is None


# -- Webhooks -------------------------------------------------------------------------------------


def test_construct_event_accepts_signed_event(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    intent = create_intent(gateway)
    event = fake.succeed_payment(intent.id)
    body, header = fake.sign(event, SECRET)

    verified = gateway.construct_event(body, header)

    assert verified == event
    assert type(verified) is dict
    assert verified["type"] == "payment_intent.succeeded"
    assert verified["data"]["object"]["id"] == intent.id
    assert verified["data"]["object"]["metadata"]["escrow_id"] == "esc_1"


def test_construct_event_keeps_integers_of_any_size(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    """Valid JSON stays what it says: an integer past 64 bits is not turned into a float (the
    shape check would refuse it as a non-integer amount)."""
    body, header = fake.sign(fake.event("payment_intent.succeeded", {"id": "pi_big", "amount": 10**20}), SECRET)

    amount = gateway.construct_event(body, header)["data"]["object"]["amount"]

    assert (amount, type(amount)) == (10**20, int)


def test_construct_event_accepts_explicit_secret(fake: FakeStripe) -> None:
    gateway = PaymentsGateway("sk_test_x", http_client=fake.http_client())
    body, header = fake.sign(fake.event("transfer.created", {"id": "tr_1"}), "whsec_other")

    assert gateway.construct_event(body, header, secret="whsec_other")["data"]["object"]["id"] == "tr_1"


def _signature_refused(gateway: PaymentsGateway, body: bytes, header: str | None) -> str:
    with pytest.raises(WebhookSignatureError) as caught:
        gateway.construct_event(body, header)
    assert caught.value.status == 400
    return caught.value.code


def test_construct_event_refuses_wrong_secret(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    body, header = fake.sign(fake.event("payment_intent.succeeded", {"id": "pi_1"}), "whsec_attacker")
    assert _signature_refused(gateway, body, header) == "WEBHOOK_SIGNATURE_INVALID"


def test_construct_event_refuses_stale_timestamp(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    event = fake.event("payment_intent.succeeded", {"id": "pi_1"})
    body, header = fake.sign(event, SECRET, timestamp=int(time.time()) - 301 - 5)
    assert _signature_refused(gateway, body, header) == "WEBHOOK_SIGNATURE_INVALID"
    fresh_body, fresh_header = fake.sign(event, SECRET, timestamp=int(time.time()) - 200)
    assert gateway.construct_event(fresh_body, fresh_header)["id"] == event["id"]


def test_construct_event_refuses_tampered_body(gateway: PaymentsGateway, fake: FakeStripe) -> None:
    event = fake.event("payment_intent.succeeded", {"id": "pi_1", "amount": 500})
    body, header = fake.sign(event, SECRET)
    tampered = body.replace(b'"amount": 500', b'"amount": 50000')
    assert tampered != body
    assert _signature_refused(gateway, tampered, header) == "WEBHOOK_SIGNATURE_INVALID"


@pytest.mark.parametrize("header", [None, "", "garbage", "t=notanumber,v1=abc", "t=1700000000"])
def test_construct_event_refuses_missing_or_malformed_header(gateway: PaymentsGateway, fake: FakeStripe,
                                                             header: str | None) -> None:
    body, _ = fake.sign(fake.event("payment_intent.succeeded", {"id": "pi_1"}), SECRET)
    assert _signature_refused(gateway, body, header) == "WEBHOOK_SIGNATURE_INVALID"


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"object": "event"}'])
def test_construct_event_refuses_signed_non_event(gateway: PaymentsGateway, fake: FakeStripe,
                                                  payload: bytes) -> None:
    body, header = fake.sign(payload, SECRET)
    assert _signature_refused(gateway, body, header) == "WEBHOOK_SIGNATURE_INVALID"


def test_construct_event_refuses_non_utf8_body(gateway: PaymentsGateway) -> None:
    header = stripe.WebhookSignature.generate_signature_header("x", SECRET)
    assert _signature_refused(gateway, b"\xff\xfe", header) == "WEBHOOK_SIGNATURE_INVALID"


# -- Over real HTTP ------------------------------------------------------------------------------


def test_gateway_over_real_http(fake: FakeStripe) -> None:
    base_url = fake.serve()
    assert base_url.startswith("http://127.0.0.1:")
    gateway = PaymentsGateway("sk_test_x", api_base=base_url, webhook_secret=SECRET)

    intent = create_intent(gateway)
    assert create_intent(gateway) == intent
    assert len(fake.payment_intents) == 1
    event = fake.succeed_payment(intent.id)
    assert gateway.retrieve_payment_intent(intent.id).status == "succeeded"

    transfer_id = transfer(gateway, amount=4250)
    refund_id = gateway.create_refund(payment_intent_id=intent.id, amount=750, escrow_id="esc_1",
                                      reason_note="SPLIT", idempotency_key="refund-esc_1")
    assert (transfer_id, refund_id) == (fake.transfers[0]["id"], fake.refunds[0]["id"])
    assert fake.money_out("esc_1") == {"transferred": 4250, "refunded": 750}
    assert gateway.find_transfer("esc_1") == transfer_id

    other = create_intent(gateway, "esc_2")
    assert gateway.cancel_payment_intent(other.id, idempotency_key="cancel-esc_2").status == "canceled"
    assert gateway.cancel_payment_intent(other.id, idempotency_key="cancel-esc_2-b").status == "canceled"

    fake.fail_next("/v1/refunds", kind="network")
    with pytest.raises(PaymentError) as dropped:
        gateway.create_refund(payment_intent_id=intent.id, amount=100, escrow_id="esc_1",
                              reason_note="SPLIT", idempotency_key="refund-esc_1-b")
    assert dropped.value.retryable is True
    assert isinstance(dropped.value.__cause__, stripe.APIConnectionError)

    fake.fail_next("/v1/transfers", kind="card_error")
    with pytest.raises(PaymentError) as declined:
        transfer(gateway, "esc_2", key="transfer-esc_2-1")
    assert (declined.value.retryable, declined.value.stripe_code) == (False, "card_declined")

    body, header = fake.sign(event, SECRET)
    assert gateway.construct_event(body, header)["id"] == event["id"]
    assert json.loads(body)["data"]["object"]["status"] == "succeeded"


# -- A Stripe that never answers ----------------------------------------------------------------


def test_hung_stripe_times_out_and_is_retried_with_the_same_key(fake: FakeStripe) -> None:
    """Stripe takes the request (and pays) but never answers: the read timeout ends the wait and
    the library retries with the same idempotency key, which hands back the first transfer."""
    gateway = PaymentsGateway("sk_test_x", api_base=fake.serve(), read_timeout=0.5, max_network_retries=1)
    fake.fail_next("/v1/transfers", kind="hang", after_effect=True)
    try:
        transfer_id = transfer(gateway)
    finally:
        fake.unhang()

    attempts = calls_to(fake, "POST", "/v1/transfers")
    assert [a[3] for a in attempts] == ["transfer-esc_1-1", "transfer-esc_1-1"]
    assert [t["id"] for t in fake.transfers] == [transfer_id]
    assert fake.money_out("esc_1") == {"transferred": 4250, "refunded": 0}


def test_retries_are_bounded_and_end_in_a_retryable_error(fake: FakeStripe) -> None:
    gateway = PaymentsGateway("sk_test_x", api_base=fake.serve(), read_timeout=0.3, max_network_retries=2)
    fake.fail_next("/v1/transfers", times=5, kind="hang")
    try:
        with pytest.raises(PaymentError) as caught:
            transfer(gateway)
    finally:
        fake.unhang()

    assert caught.value.retryable is True
    assert len(calls_to(fake, "POST", "/v1/transfers")) == 3
    assert fake.transfers == []
    assert transfer(gateway) == fake.transfers[0]["id"]  # Stripe is back: the same key pays once


@pytest.mark.parametrize("read_timeout", [0, -1, 20.5, 80])
def test_read_timeout_is_bounded(fake: FakeStripe, read_timeout: float) -> None:
    with pytest.raises(ValueError):
        PaymentsGateway("sk_test_x", api_base="http://127.0.0.1:9", read_timeout=read_timeout)


def test_a_budget_bounds_all_calls_together_retries_included(fake: FakeStripe) -> None:
    """Inside stripe_budget (every API request runs in one) the calls share the time: once it is
    spent no further attempt is sent, however many retries and whatever the read timeout."""
    gateway = PaymentsGateway("sk_test_x", api_base=fake.serve(), max_network_retries=5)
    fake.fail_next("/v1/transfers", times=10, kind="hang")
    try:
        with stripe_budget(0.6), pytest.raises(PaymentError) as caught:
            transfer(gateway)
    finally:
        fake.unhang()

    assert caught.value.retryable is True
    assert "spent" in str(caught.value.__cause__)
    assert 1 <= len(calls_to(fake, "POST", "/v1/transfers")) < 6
    assert fake.transfers == []
    assert transfer(gateway) == fake.transfers[0]["id"]  # outside the budget, calls go out as usual
