"""B052: cancelling a task over real HTTP. Before it is paid, the PaymentIntent is cancelled at
Stripe and nothing is refunded; once paid (before or after a worker accepted) the poster gets
the full price back, once. Nobody earns XP."""

from __future__ import annotations

import pytest

from tests.e2e.system import JPEG, World, acknowledged, data, error


def test_cancel_before_payment_cancels_the_payment_intent_and_refunds_nothing(world: World) -> None:
    poster, worker, stranger = world.register("poster"), world.worker(), world.register("stranger")
    task = world.post_task(poster, price=2500)
    error(stranger.post(f"/api/tasks/{task['id']}/cancel"), 403, "FORBIDDEN")

    out = data(poster.post(f"/api/tasks/{task['id']}/cancel", json={"reason": "Found a friend to help"}))
    assert out["task"]["state"] == "CANCELLED" and out["task"]["cancelled_at"]
    assert out["escrow"]["state"] == "REFUNDED"
    fake = world.served.fake
    assert [(r["kind"], r["status"]) for r in world.settle(task["escrow_id"])] == [("CANCEL_INTENT", "SUCCEEDED")]
    assert fake.payment_intents[task["payment_intent_id"]]["status"] == "canceled"
    assert fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 0}
    assert world.escrow(task["escrow_id"])["stripe_refund_id"] is None

    # Stripe then reports the cancellation: acknowledged, nothing changes.
    ack = acknowledged(world.deliver(fake.cancel_event(task["payment_intent_id"])))
    assert ack["result"] == "skipped"
    assert world.escrow(task["escrow_id"])["state"] == "REFUNDED"
    error(poster.post(f"/api/tasks/{task['id']}/cancel"), 409, "CONFLICT")
    error(worker.post(f"/api/tasks/{task['id']}/accept"), 403, "FORBIDDEN")  # no longer visible to them
    error(poster.post(f"/api/tasks/{task['id']}/escrow/payment-intent"), 409, "CONFLICT")
    assert world.xp_rows(worker.id) == [] and world.xp_rows(poster.id) == []
    world.check_money()


def test_cancel_paid_task_before_accept_refunds_in_full(world: World) -> None:
    poster, worker = world.register("poster"), world.worker()
    task = world.post_task(poster, price=2500)
    world.fund(task)
    error(worker.post(f"/api/tasks/{task['id']}/cancel"), 403, "FORBIDDEN")

    out = data(poster.post(f"/api/tasks/{task['id']}/cancel", json={}))
    assert out["task"]["state"] == "CANCELLED" and out["escrow"]["state"] == "REFUNDED"
    assert out["escrow"]["stripe_refund_id"] is None  # the refund leaves after the answer
    assert [r["status"] for r in world.settle(task["escrow_id"])] == ["SUCCEEDED"]
    assert world.served.fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 2500}
    escrow = data(poster.get(f"/api/tasks/{task['id']}/escrow"))
    assert escrow["state"] == "REFUNDED" and escrow["refunded_at"] and escrow["stripe_refund_id"]
    assert "ESCROW_REFUNDED" in poster.notification_types(task["id"])
    # The refund cannot be repeated by hand either.
    error(poster.post(f"/api/escrows/{task['escrow_id']}/refund", json={}), 409, "HX002")
    error(worker.post(f"/api/tasks/{task['id']}/accept"), 403, "FORBIDDEN")  # no longer visible to them
    world.check_money()


@pytest.mark.parametrize("by", ["poster", "admin"])
def test_cancel_after_accept_refunds_in_full_and_awards_no_xp(world: World, by: str) -> None:
    poster, worker = world.register("poster"), world.worker()
    task = world.post_task(poster, price=7300)
    world.fund(task)
    world.accept(task, worker)
    # The worker had started on the proof.
    data(worker.post(f"/api/tasks/{task['id']}/proof/photos", files={"file": ("p.jpg", JPEG, "image/jpeg")}), 201)
    error(worker.post(f"/api/tasks/{task['id']}/cancel"), 403, "FORBIDDEN")

    canceller = poster if by == "poster" else world.admin()
    out = data(canceller.post(f"/api/tasks/{task['id']}/cancel", json={"reason": "Plans changed"}))
    assert out["task"]["state"] == "CANCELLED" and out["escrow"]["state"] == "REFUNDED"
    assert [r["status"] for r in world.settle(task["escrow_id"])] == ["SUCCEEDED"]
    assert world.served.fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 7300}
    assert [r["amount"] for r in world.served.fake.refunds
            if r["metadata"]["escrow_id"] == task["escrow_id"]] == [7300]

    assert data(worker.get(f"/api/tasks/{task['id']}/proof"))["state"] == "EXPIRED"
    error(worker.post(f"/api/tasks/{task['id']}/proof", json={"description": "done anyway"}), 409, "CONFLICT")
    assert "TASK_CANCELLED" in worker.notification_types(task["id"])
    assert "ESCROW_REFUNDED" in poster.notification_types(task["id"])
    assert world.xp_rows(worker.id) == [] and data(worker.get("/api/users/me/xp"))["total_xp"] == 0
    assert data(worker.get("/api/users/me/badges"))["total_earned"] == 0

    actions = world.sql("SELECT * FROM admin_actions WHERE target_task_id = %s", (task["id"],))
    if by == "admin":
        assert [(a["action_type"], str(a["admin_user_id"])) for a in actions] == [("TASK_CANCEL", canceller.id)]
    else:
        assert actions == []
    world.check_money()
