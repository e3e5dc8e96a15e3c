"""Processes killed mid-work (SIGKILL: no cleanup runs): a gunicorn worker in the middle of a
request, the money dispatcher in the middle of a transfer, and a job worker in the middle of
its payouts pass. Nothing acknowledged is lost, the service keeps answering, the killed work
is taken up again on its own (gunicorn and `hustlexp serve` replace their children, a claim on
a money row is a lease that runs out, procrastinate re-queues a dead worker's job) and the
money moves exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from hustlexp.jobs import build_app
from hustlexp.jobs.cli import _ensure_queue_schema
from tests.e2e.system import World, data
from tests.e2e.test_stripe import make_due, paid_task
from tests.faults.conftest import (
    JobWorker,
    dispatcher,
    gunicorn_workers,
    holding_stripe,
    json_answer,
    stripe_calls,
    until,
)


def test_gunicorn_worker_killed_mid_request_loses_nothing(world: World) -> None:
    """Posting a task waits on Stripe for its PaymentIntent; the worker serving it dies there.
    The client retries with its Idempotency-Key and gets the one task the first try created."""
    poster, worker = world.register("poster"), world.worker()
    fake = world.served.fake
    body = {"title": "Killed mid-request", "description": "Posted while its worker dies", "price": 4200,
            "location": "3 Crash St", "category": "assembly",
            "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()}
    key = {"Idempotency-Key": f"{poster.uid}-killed"}
    before = {w.pid for w in gunicorn_workers(world.served)}
    calls = stripe_calls(world.served, "/v1/payment_intents")
    fake.fail_next("/v1/payment_intents", times=10, kind="hang", method="POST")
    answers: list[Any] = []

    def post() -> None:
        try:
            answers.append(poster.post("/api/tasks", json=body, headers=key))
        except requests.RequestException as exc:
            answers.append(exc)

    request = threading.Thread(target=post)
    request.start()
    try:
        until(lambda: stripe_calls(world.served, "/v1/payment_intents") > calls, "the request to reach Stripe")
        [serving] = until(lambda: holding_stripe(world.served, gunicorn_workers(world.served)),
                          "the worker holding the Stripe call")
        serving.kill()
        request.join()
    finally:
        fake.unhang()

    [answer] = answers
    assert isinstance(answer, requests.ConnectionError), answer  # the process died: no answer at all
    until(lambda: len(workers := gunicorn_workers(world.served)) == 2 and {w.pid for w in workers} != before,
          "gunicorn to replace the killed worker")

    # The task committed before the Stripe call; the retry finds it and gets its PaymentIntent.
    replay = json_answer(poster.post("/api/tasks", json=body, headers=key))
    task = replay["data"]
    assert task["replayed"] is True and task["payment_intent_id"], task
    assert [str(r["id"]) for r in world.sql("SELECT id FROM tasks WHERE poster_id = %s", (poster.id,))] \
        == [task["id"]]
    world.escrows.append(task["escrow_id"])
    world.fund(task)
    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    assert data(poster.post(f"/api/proofs/{proof['id']}/accept"))["escrow"]["state"] == "RELEASED"
    world.check_money()


def test_money_dispatcher_killed_mid_transfer_is_replaced_and_pays_once(world: World) -> None:
    """Stripe makes the transfer and the dispatcher dies before hearing so. `hustlexp serve`
    starts a new dispatcher; once the dead one's claim (a lease) runs out, the new one takes the
    row, finds the transfer Stripe made, and records it: one transfer."""
    poster, worker, task = paid_task(world, price=8000)
    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    fake = world.served.fake
    fake.fail_next("/v1/transfers", times=10, kind="hang", method="POST", after_effect=True)
    try:
        done = json_answer(poster.post(f"/api/proofs/{proof['id']}/accept"))["data"]
        assert done["escrow"]["state"] == "RELEASED"
        first = until(lambda: dispatcher(world.served), "the money dispatcher")
        until(lambda: holding_stripe(world.served, [first]), "the dispatcher to be in the transfer call")
        first.kill()
        [row] = world.outbox(task["escrow_id"])
        assert (row["status"], row["attempt_count"]) == ("PROCESSING", 1)
        assert fake.money_out(task["escrow_id"]) == {"transferred": 6800, "refunded": 0}  # paid, unheard
    finally:
        fake.unhang()

    until(lambda: (d := dispatcher(world.served)) is not None and d.pid != first.pid,
          "`hustlexp serve` to start a new dispatcher")
    [row] = until(lambda: [r for r in world.outbox(task["escrow_id"]) if r["status"] == "SUCCEEDED"],
                  "the new dispatcher to take the row once its lease ran out")
    assert row["attempt_count"] == 2 and row["stripe_object_id"] == fake.transfers[-1]["id"]
    world.check_money()


def test_job_worker_killed_mid_pass_is_recovered(world: World, job_workers: list[JobWorker]) -> None:
    poster, worker, task = paid_task(world, price=9000)
    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    fake = world.served.fake
    fake.fail_next("/v1/transfers", times=20, kind="hang", method="POST")
    try:
        data(poster.post(f"/api/proofs/{proof['id']}/accept"))
        # The served dispatcher's attempt gives up within its budget; the retry is the payouts job's.
        until(lambda: [r for r in world.outbox(task["escrow_id"]) if r["status"] == "PENDING" and r["last_error"]],
              "the dispatcher's attempt to give up")
        make_due(world, task["escrow_id"], "TRANSFER")

        # The payouts pass is queued; a worker takes it, hangs in the Stripe call, and is killed.
        db_url = world.served.db_url
        _ensure_queue_schema(db_url)
        app = build_app(db_url, lambda: None)  # type: ignore[arg-type,return-value]
        with app.open():
            job_id = app.tasks["hustlexp.payouts"].defer(timestamp=0)
        first = JobWorker(world.served).start()
        job_workers.append(first)
        until(lambda: holding_stripe(world.served, [first.process]), "the payouts pass to call Stripe")
        first.kill()
    finally:
        fake.unhang()
    [row] = world.outbox(task["escrow_id"])
    assert (row["status"], row["attempt_count"]) == ("PROCESSING", 2)

    def status() -> str:
        return str(world.one("SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,))["status"])

    assert status() == "doing"  # a dead worker's job: without recovery it stays here forever

    # procrastinate's heartbeat tells the dead worker apart; `jobs recover` re-queues its job.
    def recover() -> list[int]:
        result = subprocess.run([sys.executable, "-m", "hustlexp.cli", "jobs", "recover", "--after", "1"],
                                env=world.served.env, cwd=world.served.workdir, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        done = json.loads(result.stdout.strip().splitlines()[-1])
        recovered: list[int] = done["retried"] + done["superseded"]
        return recovered

    # Retried, or closed because the dead worker's scheduler had already queued the next pass.
    assert job_id in until(recover, "the dead worker's job to be recovered")
    assert status() in ("todo", "failed")
    assert world.sql("SELECT id FROM procrastinate_jobs WHERE status = 'doing'") == []

    # The dead pass's claim runs out; a new worker (its pass or its dispatcher) or the served
    # dispatcher pays, once.
    job_workers.append(JobWorker(world.served).start())
    until(lambda: world.outbox(task["escrow_id"])[0]["status"] == "SUCCEEDED", "the transfer to be paid")
    until(lambda: not world.sql("SELECT id FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                                "AND task_name = 'hustlexp.payouts'"), "the queued passes to finish")
    world.check_money()
