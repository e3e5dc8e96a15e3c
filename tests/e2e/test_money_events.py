"""Money events over real HTTP against the served system (issue 12): a chargeback on a funded
escrow blocks its release for good once lost, and the admin payout desk shows a payout that
failed for good and retries it exactly once. Money is checked at the end of each test."""

from __future__ import annotations

import time

from tests.e2e.system import DISPATCH_TIMEOUT, Row, World, acknowledged, data, error, payout
from tests.ledger import assert_money_conserved


def _sent(world: World, outbox_id: str) -> Row:
    """The outbox row once the served dispatcher has taken it off PENDING (a retried row keeps
    the last_attempt_at of its earlier attempt, so World.settle cannot tell)."""
    deadline = time.monotonic() + DISPATCH_TIMEOUT
    while (row := world.one("SELECT * FROM money_outbox WHERE id = %s", (outbox_id,)))["status"] in (
            "PENDING", "PROCESSING"):
        assert time.monotonic() < deadline, f"the dispatcher never sent {row}"
        time.sleep(0.05)
    return row


def _conserved(world: World) -> None:
    assert_money_conserved(lambda q: world.sql(q), world.served.fake, set(world.escrows))
    world.check_money()


def test_chargeback_on_a_funded_escrow_blocks_its_release(world: World) -> None:
    poster, worker, admin = world.register("poster"), world.worker(), world.admin("money-admin", financials=True)
    task, proof = world.proven_task(poster, worker, price=6000)
    fake = world.served.fake

    opened = fake.open_dispute(task["payment_intent_id"])
    ack = acknowledged(world.deliver(opened))
    assert ack["result"] == "processed" and ack["money_held"] is True
    assert acknowledged(world.deliver(opened))["result"] == "duplicate"
    error(poster.post(f"/api/proofs/{proof['id']}/accept"), 409, "HX204")
    assert world.escrow(task["escrow_id"])["state"] == "FUNDED"
    assert world.task_row(task["id"])["state"] == "PROOF_SUBMITTED"

    desk = data(admin.get("/api/admin/chargebacks?status=OPEN&limit=100"))
    [mine] = [c for c in desk["chargebacks"] if c["escrow_id"] == task["escrow_id"]]
    assert mine["money_held"] and mine["chargeback_hold"] == "CHARGEBACK" and mine["amount"] == 6000
    alerts = world.sql("SELECT count(*) AS n FROM notifications WHERE user_id = %s AND category = 'CHARGEBACK_OPENED'",
                       (admin.id,))
    assert alerts[0]["n"] == 1

    # The bank rules for the poster: the money is gone, and no one can release or refund it.
    assert acknowledged(world.deliver(fake.close_dispute(opened["data"]["object"]["id"], "lost")))["status"] == "LOST"
    escrow = world.escrow(task["escrow_id"])
    assert escrow["chargeback_hold"] == "CHARGEBACK_LOST" and escrow["state"] == "FUNDED"
    assert world.task_row(task["id"])["state"] == "CANCELLED"
    error(poster.post(f"/api/proofs/{proof['id']}/accept"), 409, "CONFLICT")
    error(admin.post(f"/api/escrows/{task['escrow_id']}/refund", json={}), 409, "HX204")
    assert fake.money_out(task["escrow_id"]) == {"transferred": 0, "refunded": 0}
    assert fake.money_back(task["escrow_id"]) == {"reversed": 0, "charged_back": 6000}
    _conserved(world)


def test_admin_desk_shows_and_retries_a_failed_payout_exactly_once(world: World) -> None:
    poster, worker, admin = world.register("poster"), world.worker(), world.admin("money-admin", financials=True)
    task, proof = world.proven_task(poster, worker, price=4000)
    fake = world.served.fake
    fake.fail_next("/v1/transfers", kind="invalid_request", method="POST")
    data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    [row] = world.settle(task["escrow_id"])
    assert row["status"] == "FAILED_PERMANENT" and fake.money_out(task["escrow_id"])["transferred"] == 0
    outbox_id = str(row["id"])

    error(worker.get("/api/admin/payouts?status=FAILED_PERMANENT"), 403, "FORBIDDEN")
    failed = data(admin.get("/api/admin/payouts?status=FAILED_PERMANENT&limit=100"))
    [mine] = [p for p in failed["payouts"] if p["id"] == outbox_id]
    assert mine["amount"] == payout(4000) and mine["recipient_id"] == worker.id and mine["task_id"] == task["id"]

    retried = data(admin.post(f"/api/admin/payouts/{outbox_id}/retry"))
    assert retried["previous_status"] == "FAILED_PERMANENT" and retried["status"] == "PENDING"
    assert _sent(world, outbox_id)["status"] == "SUCCEEDED"
    error(admin.post(f"/api/admin/payouts/{outbox_id}/retry"), 409, "CONFLICT")
    transfers = [t for t in fake.transfers if t["metadata"].get("escrow_id") == task["escrow_id"]]
    assert [t["amount"] for t in transfers] == [payout(4000)]
    audits = world.sql("SELECT admin_user_id FROM admin_actions WHERE action_type = 'PAYOUT_RETRY' "
                       "AND target_escrow_id = %s", (task["escrow_id"],))
    assert [str(a["admin_user_id"]) for a in audits] == [admin.id]
    assert all(p["id"] != outbox_id for p in
               data(admin.get("/api/admin/payouts?status=FAILED_PERMANENT&limit=100"))["payouts"])
    _conserved(world)
