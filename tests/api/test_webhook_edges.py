"""Signed but unusable Stripe deliveries: 400 (so Stripe stops redelivering a poison event),
logged once, nothing recorded; and signatures stamped too far in the future are refused."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tests.api.conftest import WEBHOOK_SECRET, error
from tests.fakes.stripe_fake import FakeStripe


def deliver(client: Any, body: bytes, signature: str) -> Any:
    return client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": signature},
                       content_type="application/json")


def recorded(conn: Any) -> int:
    return conn.execute("SELECT count(*) AS n FROM processed_stripe_events").fetchone()["n"]


def succeeded(obj: Any, event_id: str = "evt_malformed_1") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": obj}}


def refunded(refunds: Any) -> dict[str, Any]:
    return {"id": "evt_malformed_2", "object": "event", "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "metadata": {"escrow_id": "x"}, "refunds": refunds}}}


MALFORMED = {
    "data null": {"id": "evt_m0", "object": "event", "type": "payment_intent.succeeded", "data": None},
    "data a string": {"id": "evt_m1", "object": "event", "type": "payment_intent.succeeded", "data": "garbage"},
    "object a string": succeeded("pi_123"),
    "object without id": succeeded({"amount_received": 4500, "metadata": {}}),
    "amount_received not a number": succeeded({"id": "pi_1", "amount_received": "abc"}),
    "refunds.data a string": refunded({"data": "re_1"}),
    "refund without id": refunded({"data": [{"amount": 5}]}),
    "NUL in event id": succeeded({"id": "pi_1", "amount_received": 4500}, event_id="evt_\x00nul"),
    "NUL in metadata": succeeded({"id": "pi_1", "amount_received": 4500, "metadata": {"escrow_id": "a\x00"}}),
    "event id too long": succeeded({"id": "pi_1"}, event_id="evt_" + "x" * 300),
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_signed_malformed_event_is_400_logged_once_and_not_recorded(client: Any, conn: Any, event: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    body, signature = FakeStripe.sign(event, WEBHOOK_SECRET)
    with caplog.at_level(logging.WARNING):
        response = deliver(client, body, signature)
    assert response.status_code == 400, response.get_json()
    assert error(response)["code"] == "VALIDATION_ERROR"
    assert recorded(conn) == 0
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_signed_event_nested_too_deep_is_400(client: Any, conn: Any) -> None:
    body = b'{"id": "evt_deep", "type": "x", "data": {"object": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = deliver(client, body, FakeStripe.sign(body, WEBHOOK_SECRET)[1])
    assert response.status_code == 400
    assert recorded(conn) == 0


@pytest.mark.parametrize("skew", [-3600, 3600])
def test_webhook_stamped_far_from_now_is_refused_both_ways(client: Any, conn: Any, stripe_fake: FakeStripe,
                                                           skew: int) -> None:
    event = stripe_fake.event("customer.created", {"id": "cus_1", "object": "customer"})
    body, signature = FakeStripe.sign(event, WEBHOOK_SECRET, timestamp=int(time.time()) + skew)
    response = deliver(client, body, signature)
    assert response.status_code == 400
    assert error(response)["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert recorded(conn) == 0
    # Within the tolerance either way is fine (clocks drift).
    near = stripe_fake.event("customer.created", {"id": "cus_2", "object": "customer"})
    body, signature = FakeStripe.sign(near, WEBHOOK_SECRET, timestamp=int(time.time()) + skew // 60)
    assert deliver(client, body, signature).status_code == 200
