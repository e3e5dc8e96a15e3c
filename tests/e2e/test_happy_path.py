"""B050: a task's whole life over real HTTP, as the app and Stripe drive it: post, pay (signed
payment_intent.succeeded), accept, proof with photos, approve — then the task is COMPLETED,
the escrow RELEASED, the worker paid floor(85 %) once, XP and badges awarded, and both sides
told."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from tests.e2e.system import JPEG, PNG, World, data, error


def test_happy_path_post_pay_accept_prove_approve(world: World) -> None:
    poster, worker = world.register("poster"), world.worker()
    task = world.post_task(poster, price=5000)
    tid = task["id"]

    # Unpaid: nobody can take it yet; the app fetches the same PaymentIntent to pay it.
    error(worker.post(f"/api/tasks/{tid}/accept"), 409, "CONFLICT")
    intent = data(poster.post(f"/api/tasks/{tid}/escrow/payment-intent"))
    assert intent["payment_intent_id"] == task["payment_intent_id"] and intent["amount"] == 5000
    assert intent["client_secret"] == task["client_secret"]
    error(worker.post(f"/api/tasks/{tid}/escrow/payment-intent"), 403, "FORBIDDEN")
    assert data(poster.get(f"/api/tasks/{tid}/escrow"))["state"] == "PENDING"

    world.fund(task)
    assert data(poster.get(f"/api/tasks/{tid}/escrow"))["state"] == "FUNDED"

    error(poster.post(f"/api/tasks/{tid}/accept"), 403, "FORBIDDEN")  # not your own task
    world.accept(task, worker)
    proof = world.submit_proof(task, worker, photos=(JPEG, PNG))
    photo = worker.get(proof["photos"][1]["url"])
    assert photo.status_code == 200 and photo.content == PNG and photo.headers["Content-Type"] == "image/png"
    assert poster.get(proof["photos"][0]["url"]).content == JPEG

    error(worker.post(f"/api/proofs/{proof['id']}/accept"), 403, "FORBIDDEN")  # only the poster reviews
    review = data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    assert review["state"] == "ACCEPTED" and review["reviewed_by"] == poster.id
    assert review["task"]["state"] == "COMPLETED" and review["escrow"]["state"] == "RELEASED"
    assert review["xp_awarded"]["base_xp"] == 50 and review["xp_awarded"]["effective_xp"] == 50
    # The approval answered before the transfer: it committed a PENDING outbox row, which the
    # dispatcher `hustlexp serve` started then sent.
    assert review["escrow"]["stripe_transfer_id"] is None
    [row] = world.settle(task["escrow_id"])
    assert (row["kind"], row["status"], row["amount"]) == ("TRANSFER", "SUCCEEDED", 4250)

    shown = data(worker.get(f"/api/tasks/{tid}"))
    assert shown["state"] == "COMPLETED" and shown["completed_at"] and shown["proof"]["state"] == "ACCEPTED"
    escrow = data(worker.get(f"/api/tasks/{tid}/escrow"))
    assert escrow["state"] == "RELEASED" and escrow["released_at"] and escrow["amount"] == 5000
    transfers = [t for t in world.served.fake.transfers if t["metadata"]["escrow_id"] == task["escrow_id"]]
    assert [(t["amount"], t["destination"]) for t in transfers] == [(4250, worker.profile["stripe_connect_id"])]
    assert escrow["stripe_transfer_id"] == transfers[0]["id"]

    # Completing again (the app's follow-up call) changes nothing and pays nothing more.
    again = data(poster.post(f"/api/tasks/{tid}/complete"))
    assert again["task"]["state"] == "COMPLETED" and again["xp_awarded"]["effective_xp"] == 50
    assert len([t for t in world.served.fake.transfers if t["metadata"]["escrow_id"] == task["escrow_id"]]) == 1

    # XP by hand: base 5000 // 100 = 50; first completion: streak 0 -> x1.00; tier 1 -> x1.0.
    xp = data(worker.get("/api/users/me/xp"))
    assert (xp["total_xp"], xp["current_level"], xp["current_streak"]) == (50, 1, 1)
    assert xp["level_progress"] == {"current_threshold": 0, "next_threshold": 100, "progress_percent": 50}
    [entry] = xp["recent_entries"]
    assert (entry["task_id"], entry["escrow_id"]) == (tid, task["escrow_id"])
    assert (entry["amount"], entry["effective_amount"], entry["balance_after"], entry["level_after"]) == (50, 50, 50, 1)
    [row] = world.xp_rows(worker.id)
    assert (row["streak_multiplier"], row["trust_multiplier"], row["user_streak_at_award"]) == (
        Decimal("1.00"), Decimal("1.0"), 0)
    assert data(poster.get("/api/users/me/xp"))["total_xp"] == 0 and world.xp_rows(poster.id) == []

    badges = data(worker.get("/api/users/me/badges"))
    assert [(b["badge_type"], b["task_id"]) for b in badges["earned_badges"]] == [("first-task", tid)]
    assert badges["total_earned"] == 1 and "first-task" not in {b["slug"] for b in badges["available_badges"]}
    assert data(poster.get("/api/users/me/badges"))["total_earned"] == 0
    assert data(poster.get(f"/api/users/{worker.id}/badges"))["total_earned"] == 1

    assert {"ESCROW_FUNDED", "TASK_ACCEPTED", "PROOF_SUBMITTED"} <= poster.notification_types(tid)
    assert {"TASK_WORKER_ASSIGNED", "PROOF_ACCEPTED", "ESCROW_RELEASED", "XP_EARNED",
            "BADGE_EARNED"} <= worker.notification_types(tid)
    assert "XP_EARNED" not in poster.notification_types(tid)
    world.check_money()


def test_happy_path_xp_for_a_seasoned_worker_matches_the_worked_example(world: World) -> None:
    """domain §4's example: tier 2, 250 XP (level 2), a 5-day streak last extended yesterday,
    a 4500-cent task -> 45 x 1.25 x 1.5 = 84.375 -> 84 XP; 334 XP, level 3, streak 6; payout 3825."""
    poster, worker = world.register("poster"), world.worker()
    world.sql("""UPDATE users SET trust_tier = 2, xp_total = 250, current_level = 2, current_streak = 5,
                                  last_task_completed_at = now() - interval '1 day'
                  WHERE id = %s""", (worker.id,))
    task = world.post_task(poster, price=4500)
    world.fund(task)
    world.accept(task, worker)
    proof = world.submit_proof(task, worker)
    review = data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    assert review["xp_awarded"]["effective_xp"] == 84

    xp = data(worker.get("/api/users/me/xp"))
    assert (xp["total_xp"], xp["current_level"], xp["current_streak"]) == (334, 3, 6)
    assert xp["level_progress"] == {"current_threshold": 300, "next_threshold": 700, "progress_percent": 8}
    [row] = world.xp_rows(worker.id)
    assert (row["base_xp"], row["effective_xp"], row["user_xp_before"], row["user_xp_after"]) == (45, 84, 250, 334)
    assert (row["user_level_before"], row["user_level_after"], row["user_streak_at_award"]) == (2, 3, 5)
    assert (row["streak_multiplier"], row["trust_multiplier"], row["decay_factor"]) == (
        Decimal("1.25"), Decimal("1.5"), Decimal("1.0000"))
    earned = {b["badge_type"] for b in data(worker.get("/api/users/me/badges"))["earned_badges"]}
    assert {"first-task", "level-3", "streak-3", "trust-tier-2"} <= earned
    assert {"LEVEL_UP", "XP_EARNED"} <= worker.notification_types(task["id"])
    assert [r["status"] for r in world.settle(task["escrow_id"])] == ["SUCCEEDED"]
    assert world.served.fake.money_out(task["escrow_id"]) == {"transferred": 3825, "refunded": 0}
    world.check_money()


def test_two_workers_racing_to_accept_one_task_exactly_one_wins(world: World) -> None:
    poster = world.register("poster")
    workers = [world.worker(f"racer{n}") for n in range(4)]
    task = world.post_task(poster, price=1500)
    world.fund(task)
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda w: w.post(f"/api/tasks/{task['id']}/accept"), workers))
    # The losers may no longer see the taken task (as GET would say): 403, nothing about its state.
    assert sorted(r.status_code for r in responses) == [200, 403, 403, 403]
    [winner] = [w for w, r in zip(workers, responses, strict=True) if r.status_code == 200]
    for response in responses:
        if response.status_code == 403:
            error(response, 403, "FORBIDDEN")
    assert world.task_row(task["id"])["worker_id"] is not None
    assert str(world.task_row(task["id"])["worker_id"]) == winner.id
    assert data(winner.get(f"/api/tasks/{task['id']}"))["worker"]["id"] == winner.id
    world.check_money()
