"""The money dispatcher: an approval commits the release and a PENDING outbox row without
calling Stripe; the dispatcher (LISTEN/NOTIFY) then sends it, including rows written while no
dispatcher was listening, a claim whose process hung or died (once its lease runs out) and
whatever was written while its own connection was lost. Connecting a payout account only makes
that worker's transfers due."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest

from hustlexp.backoff import Backoff
from hustlexp.db import Database
from hustlexp.jobs.dispatcher import Dispatcher
from hustlexp.services import Services
from hustlexp.services.outbox import CHANNEL, LEASE_MARGIN, SUPERSEDED
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


def _transfer_calls(fake) -> int:
    return len([c for c in fake.calls if c[:2] == ("POST", "/v1/transfers")])


def test_a_claim_whose_process_hung_is_taken_again_once_its_lease_runs_out(queued, stripe_fake, clock):
    """A process claims a transfer and hangs in Stripe (Stripe paid; the answer never comes).
    Within its lease nobody else touches the row; past it, the dispatcher's start-up sweep takes
    it, finds the transfer Stripe made, and the hung attempt's late answer changes nothing."""
    ids = flows.submitted_task(queued, stripe_fake, price=4000)
    queued.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    [row] = queued.outbox.list_for_escrow(ids["escrow"]).unwrap()
    stripe_fake.fail_next("/v1/transfers", kind="hang", method="POST", after_effect=True)
    late: list[dict] = []
    hung = threading.Thread(target=lambda: late.append(queued.outbox.dispatch(row["id"]).unwrap()))
    hung.start()
    dispatcher = None
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while _transfer_calls(stripe_fake) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        [claimed] = queued.outbox.list_for_escrow(ids["escrow"]).unwrap()
        assert (claimed["status"], claimed["attempt_count"]) == ("PROCESSING", 1)
        lease = claimed["next_attempt_at"] - clock()
        assert timedelta(0) < lease <= timedelta(seconds=queued.payments.call_seconds) + LEASE_MARGIN
        assert queued.outbox.retry_due().unwrap()["due"] == 0  # leased: left alone

        clock.advance(seconds=lease.total_seconds() + 1)
        dispatcher = Dispatcher(queued, threads=2)
        thread = dispatcher.start_thread()
        assert _wait_for(queued, ids["escrow"], ["SUCCEEDED"]) == ["SUCCEEDED"]
    finally:
        stripe_fake.unhang()
        hung.join(timeout=WAIT_SECONDS)
        if dispatcher is not None:
            dispatcher.stop()
            thread.join(timeout=30)
    assert late == [{"id": row["id"], "status": SUPERSEDED, "error": late[0]["error"]}]
    [done] = queued.outbox.list_for_escrow(ids["escrow"]).unwrap()
    assert (done["status"], done["attempt_count"]) == ("SUCCEEDED", 2)
    assert [t["id"] for t in stripe_fake.transfers] == [done["stripe_object_id"]]
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 3400, "refunded": 0}


def _listener(conn) -> int | None:
    found = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
                         (f"LISTEN {CHANNEL}",)).fetchone()
    return None if found is None else int(found["pid"])


def test_the_dispatcher_outlives_its_connection_and_sends_what_was_written_meanwhile(queued, stripe_fake, conn):
    dispatcher = Dispatcher(queued, threads=2)
    thread = dispatcher.start_thread()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while (first := _listener(conn)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first is not None
        ids = flows.submitted_task(queued, stripe_fake)
        # The server drops the listening connection (a restart, an admin); the approval commits
        # while the dispatcher is reconnecting, so its NOTIFY may reach nobody.
        conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        queued.proofs.accept(ids["proof"], ids["poster"]).unwrap()
        assert _wait_for(queued, ids["escrow"], ["SUCCEEDED"]) == ["SUCCEEDED"]
        while ((second := _listener(conn)) in (None, first)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert second not in (None, first) and thread.is_alive()
    finally:
        dispatcher.stop()
        thread.join(timeout=30)
    assert len(stripe_fake.transfers) == 1


def test_the_dispatcher_outlives_a_sweep_that_finds_no_connection(db_url, services, stripe_fake, caplog):
    """Not only a lost LISTEN connection: any failure (here its pool has no connection to lend,
    which services answer as Unavailable) is logged and retried; money moves once it clears."""
    db = Database(db_url, min_size=1, max_size=1, timeout=1.0).open()
    mine = Services(db, payments=services.payments, webhook_secret=services.webhook_secret,
                    clock=services.clock, send_inline=False)
    dispatcher = None
    try:
        ids = flows.submitted_task(mine, stripe_fake)
        mine.proofs.accept(ids["proof"], ids["poster"]).unwrap()  # PENDING; nobody listens yet
        held = db.pool.getconn()
        with caplog.at_level(logging.WARNING, logger="hustlexp.dispatcher"):
            dispatcher = Dispatcher(mine, threads=1)
            thread = dispatcher.start_thread()
            deadline = time.monotonic() + WAIT_SECONDS
            while not [r for r in caplog.records if "reconnecting" in r.getMessage()] \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            db.pool.putconn(held)
        assert [r for r in caplog.records if r.name == "hustlexp.dispatcher" and "reconnecting" in r.getMessage()]
        assert _wait_for(mine, ids["escrow"], ["SUCCEEDED"]) == ["SUCCEEDED"] and thread.is_alive()
    finally:
        if dispatcher is not None:
            dispatcher.stop()
            thread.join(timeout=30)
        db.close()
    assert len(stripe_fake.transfers) == 1


def test_restart_backoff_doubles_while_failing_young_and_starts_short_after_a_settled_run() -> None:
    # The one back-off of the supervised dispatcher, the job worker and the dispatcher's connection.
    backoff = Backoff(first=0.5, most=3.0, settled=1.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.started()
    time.sleep(1.05)  # this attempt ran longer than `settled`: no crash loop
    assert backoff.failed() == 0.5
    backoff.started()
    assert backoff.failed() == 1.0  # failing young again doubles from there
