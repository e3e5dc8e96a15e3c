"""B053: deadlines pass for real, then cron runs `hustlexp jobs run expire` in its own process.
OPEN tasks past their deadline end EXPIRED: the paid one refunded in full, the unpaid one's
PaymentIntent cancelled. An ACCEPTED task past its deadline only warns its worker; a task
whose deadline is still ahead is untouched. No XP anywhere; a second run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.e2e.system import World, data, error

DEADLINE_AHEAD = timedelta(seconds=4)


def test_expire_job_expires_open_tasks_past_deadline_and_refunds(world: World) -> None:
    poster, worker = world.register("poster"), world.worker()
    deadline = datetime.now(UTC) + DEADLINE_AHEAD
    soon = {"deadline": deadline.isoformat()}
    paid = world.post_task(poster, price=3100, **soon)
    unpaid = world.post_task(poster, price=1900, **soon)
    taken = world.post_task(poster, price=2700, **soon)
    later = world.post_task(poster, price=4000)
    for task in (paid, taken, later):
        world.fund(task)
    world.accept(taken, worker)

    # Before the deadline the job leaves them alone.
    world.run_job("expire")
    assert {world.task_row(t["id"])["state"] for t in (paid, unpaid)} == {"OPEN"}

    world.wait_until_past(deadline)
    counts = world.run_job("expire")
    assert counts["expired"] >= 2 and counts["overdue_warned"] >= 1, counts

    fake = world.served.fake
    for task in (paid, unpaid):
        shown = data(poster.get(f"/api/tasks/{task['id']}"))
        assert shown["state"] == "EXPIRED" and shown["expired_at"], shown
        assert data(poster.get(f"/api/tasks/{task['id']}/escrow"))["state"] == "REFUNDED"
        assert "TASK_EXPIRED" in poster.notification_types(task["id"])
        error(worker.post(f"/api/tasks/{task['id']}/accept"), 403, "FORBIDDEN")  # no longer visible to them
        error(poster.post(f"/api/tasks/{task['id']}/cancel"), 409, "CONFLICT")
    # The job sends what it queued itself, racing the served dispatcher; one of them wins.
    assert [r["status"] for r in world.settle(paid["escrow_id"])] == ["SUCCEEDED"]
    assert [r["status"] for r in world.settle(unpaid["escrow_id"])] == ["SUCCEEDED"]
    assert fake.money_out(paid["escrow_id"]) == {"transferred": 0, "refunded": 3100}
    assert "ESCROW_REFUNDED" in poster.notification_types(paid["id"])
    assert fake.money_out(unpaid["escrow_id"]) == {"transferred": 0, "refunded": 0}
    assert fake.payment_intents[unpaid["payment_intent_id"]]["status"] == "canceled"

    # Overdue but taken: still the worker's to finish, with one warning.
    assert world.task_row(taken["id"])["state"] == "ACCEPTED"
    assert world.escrow(taken["escrow_id"])["state"] == "FUNDED"
    overdue = [n for n in worker.notifications() if n["task_id"] == taken["id"] and n["type"] == "TASK_OVERDUE"]
    assert len(overdue) == 1
    assert world.task_row(later["id"])["state"] == "OPEN" and world.escrow(later["escrow_id"])["state"] == "FUNDED"

    # Cron runs again: nothing is expired, refunded or warned twice.
    world.run_job("expire")
    assert fake.money_out(paid["escrow_id"]) == {"transferred": 0, "refunded": 3100}
    assert len([n for n in worker.notifications()
                if n["task_id"] == taken["id"] and n["type"] == "TASK_OVERDUE"]) == 1
    assert world.task_row(taken["id"])["state"] == "ACCEPTED"

    assert world.xp_rows(worker.id) == [] and world.xp_rows(poster.id) == []
    assert data(worker.get("/api/users/me/xp"))["total_xp"] == 0
    world.check_money()
