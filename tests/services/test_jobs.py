"""Background jobs: each pass does its work once, even when two run at the same time, and the
procrastinate app really executes them from its PostgreSQL queue."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg

from hustlexp.jobs import PASSES, build_app, run_pass
from hustlexp.jobs.cli import _ensure_queue_schema
from tests.services import flows


def _twice_at_once(fn):
    barrier = threading.Barrier(2)
    out = []

    def run():
        barrier.wait()
        out.append(fn())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_the_passes_exist_with_their_schedules():
    assert {name: cron for name, (cron, _) in PASSES.items()} == {
        "expire": "*/5 * * * *", "auto-accept": "*/15 * * * *", "payouts": "*/5 * * * *",
        "auto-rate": "17 * * * *", "trust-decay": "30 3 * * *",
        "purge-notifications": "10 3 * * *", "purge-message-locations": "*/15 * * * *",
        "purge-messages": "20 3 * * *", "purge-proof-photos": "30 3 * * *",
        "purge-stripe-events": "40 3 * * *", "purge-upload-intents": "45 * * * *",
        "anonymize-accounts": "25 * * * *"}


def test_expire_twice_at_once_expires_and_refunds_once(services, stripe_fake, clock):
    tasks = [flows.funded_task(services, stripe_fake, deadline=datetime.now(UTC) + timedelta(minutes=30))[1]
             for _ in range(4)]
    clock.advance(hours=1)
    results = _twice_at_once(lambda: run_pass("expire", services))
    assert sum(r["expired"] for r in results) == 4
    for task in tasks:
        assert stripe_fake.money_out(str(task["escrow_id"])) == {"transferred": 0, "refunded": task["price"]}
    assert len(stripe_fake.refunds) == 4


def test_auto_accept_twice_at_once_pays_once(services, stripe_fake, clock):
    ids = [flows.submitted_task(services, stripe_fake) for _ in range(3)]
    clock.advance(hours=49)
    results = _twice_at_once(lambda: run_pass("auto-accept", services))
    assert sum(r["accepted"] for r in results) == 3
    assert len(stripe_fake.transfers) == 3
    for i in ids:
        assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", i["task"])["state"] == "COMPLETED"


def test_payouts_pass_retries_due_movements(services, stripe_fake, clock):
    ids = flows.submitted_task(services, stripe_fake)
    stripe_fake.fail_next("/v1/transfers", kind="rate_limit")
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    clock.advance(minutes=6)
    assert run_pass("payouts", services)["succeeded"] == 1
    assert len(stripe_fake.transfers) == 1


def test_procrastinate_worker_runs_the_jobs_from_its_queue(services, stripe_fake, db_url):
    ids = flows.submitted_task(services, stripe_fake)
    with services.db.transaction() as conn:  # the review window closed long ago
        conn.execute("UPDATE proofs SET review_deadline = now() - interval '1 hour' WHERE id = %s", (ids["proof"],))
    _ensure_queue_schema(db_url)
    _ensure_queue_schema(db_url)  # a second worker starting finds the tables and leaves them
    app = build_app(db_url, lambda: services)
    with app.open():
        app.tasks["hustlexp.auto-accept"].defer(timestamp=0)
    app.run_worker(wait=False, install_signal_handlers=False, listen_notify=False)
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", ids["task"])["state"] == "COMPLETED"
    with psycopg.connect(db_url) as conn:
        status = conn.execute("SELECT status FROM procrastinate_jobs").fetchone()
    assert status[0] == "succeeded"


def test_jobs_left_running_by_a_dead_worker_are_queued_again(services, db_url):
    """A job `doing` with no live worker (its worker row pruned, or silent past the heartbeat
    limit) goes back to `todo`; one whose pass is already queued again is closed instead."""
    import asyncio

    from hustlexp.jobs import retry_stalled_jobs

    _ensure_queue_schema(db_url)
    app = build_app(db_url, lambda: services)
    assert "hustlexp.retry-stalled" in app.tasks  # scheduled every minute on every worker
    with app.open():
        stalled = app.tasks["hustlexp.expire"].defer(timestamp=1)
        superseded = app.tasks["hustlexp.payouts"].defer(timestamp=1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = ANY(%s)", ([stalled, superseded],))
    with app.open():
        waiting = app.tasks["hustlexp.payouts"].defer(timestamp=2)

    async def recover():
        async with app.open_async():
            return await retry_stalled_jobs(app.job_manager, after_seconds=1)

    assert asyncio.run(recover()) == {"retried": [stalled], "superseded": [superseded]}
    with psycopg.connect(db_url) as conn:
        statuses = dict(conn.execute("SELECT id, status FROM procrastinate_jobs").fetchall())
    assert statuses == {stalled: "todo", superseded: "failed", waiting: "todo"}
