"""The money dispatcher: an approval commits the release and a PENDING outbox row without
calling Stripe; the dispatcher (LISTEN/NOTIFY) then sends it, including rows written while no
dispatcher was listening. Connecting a payout account only makes that worker's transfers due."""

from __future__ import annotations

import time

import pytest

from hustlexp.jobs.dispatcher import Dispatcher
from hustlexp.services import Services
from tests.services import flows

WAIT_SECONDS = 60  # an upper bound for a loaded CI machine, not a performance claim


@pytest.fixture
def queued(services: Services) -> Services:
    """The same services as a request sees them: money is left to the dispatcher."""
    return Services(services.db, payments=services.payments, webhook_secret=services.webhook_secret,
                    clock=services.clock, send_inline=False)


def _statuses(services: Services, escrow_id) -> list[str]:
    return [r["status"] for r in services.outbox.list_for_escrow(escrow_id).unwrap()]


def _wait_for(services: Services, escrow_id, wanted: list[str]) -> list[str]:
    deadline = time.monotonic() + WAIT_SECONDS
    while (seen := _statuses(services, escrow_id)) != wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def test_approval_answers_before_the_transfer_and_the_dispatcher_sends_it(queued, stripe_fake):
    before = flows.submitted_task(queued, stripe_fake)
    queued.proofs.accept(before["proof"], before["poster"]).unwrap()  # no dispatcher running yet
    assert _statuses(queued, before["escrow"]) == ["PENDING"]
    assert stripe_fake.transfers == []

    dispatcher = Dispatcher(queued, threads=2)
    thread = dispatcher.start_thread()
    try:
        # Written before it listened: found by the start-up sweep.
        assert _wait_for(queued, before["escrow"], ["SUCCEEDED"]) == ["SUCCEEDED"]
        # Written while it listens: woken by the NOTIFY sent at commit.
        after = flows.submitted_task(queued, stripe_fake)
        queued.proofs.accept(after["proof"], after["poster"]).unwrap()
        assert _wait_for(queued, after["escrow"], ["SUCCEEDED"]) == ["SUCCEEDED"]
    finally:
        dispatcher.stop()
        thread.join(timeout=30)
    for ids in (before, after):
        assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": ids["price"] * 85 // 100,
                                                             "refunded": 0}
    assert len(stripe_fake.transfers) == 2


def test_a_rolled_back_release_leaves_nothing_to_send(queued, stripe_fake):
    ids = flows.submitted_task(queued, stripe_fake)
    with pytest.raises(RuntimeError), queued.db.transaction():
        queued.proofs.accept(ids["proof"], ids["poster"]).unwrap()
        raise RuntimeError("the request failed after the release")
    assert _statuses(queued, ids["escrow"]) == []


def test_connecting_a_payout_account_makes_only_that_workers_transfers_due(queued, stripe_fake, clock):
    mine, theirs = flows.user(queued, connect=False), flows.user(queued, connect=False)
    rows = {}
    for worker in (mine, theirs):
        ids = flows.submitted_task(queued, stripe_fake, worker=worker)
        queued.proofs.accept(ids["proof"], ids["poster"]).unwrap()
        queued.outbox.dispatch(queued.outbox.list_for_escrow(ids["escrow"]).unwrap()[0]["id"]).unwrap()
        rows[worker] = queued.outbox.list_for_escrow(ids["escrow"]).unwrap()[0]
    assert {r["last_error"] for r in rows.values()} == {"NO_PAYOUT_ACCOUNT"}
    assert all(r["next_attempt_at"] > clock() for r in rows.values())

    assert queued.users.set_connect_account(mine, "acct_1Mine").unwrap()["stripe_connect_id"] == "acct_1Mine"
    assert stripe_fake.transfers == []  # the request sent nothing itself
    now = {w: queued.outbox.list_for_escrow(r["escrow_id"]).unwrap()[0] for w, r in rows.items()}
    assert now[mine]["next_attempt_at"] <= clock() and now[mine]["status"] == "PENDING"
    assert now[theirs]["next_attempt_at"] == rows[theirs]["next_attempt_at"]
