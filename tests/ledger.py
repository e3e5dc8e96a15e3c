"""Money conservation across Stripe and our books, for any test that moves money: what Stripe
moved for each escrow (the fake's record) equals what our rows say moved, and nobody is paid
from money the platform never received, except what a chargeback records as lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fakes.stripe_fake import FakeStripe

Query = Callable[[str], list[dict[str, Any]]]


def assert_money_conserved(query: Query, fake: FakeStripe, escrow_ids: set[str] | None = None) -> None:
    """Over every escrow, or over `escrow_ids` when a shared database holds others' too."""
    moved: dict[tuple[str, str], int] = {}
    for r in query("SELECT escrow_id::text AS e, kind, amount FROM money_outbox WHERE status = 'SUCCEEDED'"):
        moved[(r["e"], r["kind"])] = moved.get((r["e"], r["kind"]), 0) + r["amount"]
    lost = {r["e"]: r for r in query("""SELECT escrow_id::text AS e, sum(amount) AS charged_back,
                                               sum(loss_amount) AS loss
                                          FROM chargebacks WHERE status = 'LOST' GROUP BY escrow_id""")}
    reversed_ = {r["e"]: r["amount"] for r in query(
        "SELECT escrow_id::text AS e, sum(amount) AS amount FROM payout_incidents "
        "WHERE kind = 'TRANSFER_REVERSED' GROUP BY escrow_id")}
    for e in query("SELECT id::text AS id, amount, funded_at, state, chargeback_hold FROM escrows"):
        if escrow_ids is not None and e["id"] not in escrow_ids:
            continue
        out, back = fake.money_out(e["id"]), fake.money_back(e["id"])
        assert out["transferred"] == moved.get((e["id"], "TRANSFER"), 0), e
        assert out["refunded"] == moved.get((e["id"], "REFUND"), 0), e
        assert back["charged_back"] == (lost[e["id"]]["charged_back"] if e["id"] in lost else 0), e
        assert back["reversed"] == reversed_.get(e["id"], 0), e
        received = e["amount"] if e["funded_at"] is not None else 0
        kept = received - out["transferred"] - out["refunded"] - back["charged_back"] + back["reversed"]
        loss = lost[e["id"]]["loss"] if e["id"] in lost else 0
        # The platform keeps at most its fee, and is short only by a loss it recorded.
        assert -loss <= kept <= received, (e, out, back, loss)
        if e["chargeback_hold"] == "CHARGEBACK_LOST":
            assert out == {"transferred": 0, "refunded": 0} and kept == 0, e
