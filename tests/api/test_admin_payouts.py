"""The admin payout desk over HTTP: /api/admin/payouts (+ retry), /api/admin/chargebacks and
clearing a Radar flag; and the money webhooks through /webhooks/stripe. Auth (401/403) for
every route is in test_admin.py's ROUTES; here: input, actors, errors and effects."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import data, error
from tests.ledger import assert_money_conserved

RIGHTS = {"can_access_financials": True, "can_override_escrow": True}


@pytest.fixture(autouse=True)
def conserved(conn, stripe_fake):
    yield
    assert_money_conserved(lambda q: conn.execute(q).fetchall(), stripe_fake)


@pytest.fixture
def admin(world, register, make_admin):
    user, headers = register(world.client)
    make_admin(user["id"], **RIGHTS)
    return user, headers


def _pi(world, task):
    return world.conn.execute("SELECT stripe_payment_intent_id AS pi FROM escrows WHERE id = %s",
                              (task["escrow_id"],)).fetchone()["pi"]


def _failed_payout(world):
    world.fake.fail_next("/v1/transfers", kind="invalid_request", method="POST")
    task = world.completed()
    world.client.application.extensions["hustlexp"].services.outbox.retry_due().unwrap()
    row = world.conn.execute("SELECT id, status FROM money_outbox WHERE escrow_id = %s",
                             (task["escrow_id"],)).fetchone()
    assert row["status"] == "FAILED_PERMANENT"
    return task, str(row["id"])


@pytest.mark.parametrize("query", ["", "?status=LOST", "?status=PENDING&limit=0", "?status=PENDING&limit=101",
                                   "?status=PENDING&after=nope", "?status=PENDING&sort=amount"])
def test_payout_list_refuses_bad_queries(world, admin, query):
    response = world.client.get(f"/api/admin/payouts{query}", headers=admin[1])
    assert response.status_code == 400 and error(response)["code"] == "VALIDATION_ERROR"


def test_failed_payout_is_listed_retried_once_and_audited(world, admin, conn):
    _, headers = admin
    task, outbox_id = _failed_payout(world)
    listed = data(world.client.get("/api/admin/payouts?status=FAILED_PERMANENT", headers=headers))
    assert [p["id"] for p in listed["payouts"]] == [outbox_id]
    assert listed["payouts"][0]["desk_status"] == "FAILED_PERMANENT" and listed["payouts"][0]["kind"] == "TRANSFER"
    assert listed["payouts"][0]["amount"] == 4500 * 85 // 100 and listed["next_after"] is None
    retried = data(world.client.post(f"/api/admin/payouts/{outbox_id}/retry", headers=headers))
    assert retried["previous_status"] == "FAILED_PERMANENT" and retried["status"] == "PENDING"
    assert [p["id"] for p in data(world.client.get("/api/admin/payouts?status=PENDING", headers=headers))["payouts"]] \
        == [outbox_id]
    assert world.send_money(task["escrow_id"]) == {"transferred": 4500 * 85 // 100, "refunded": 0}
    again = world.client.post(f"/api/admin/payouts/{outbox_id}/retry", headers=headers)
    assert again.status_code == 409 and error(again)["details"] == {"status": "SUCCEEDED"}
    actions = conn.execute("SELECT * FROM admin_actions WHERE action_type = 'PAYOUT_RETRY'").fetchall()
    assert [str(a["id"]) for a in actions] == [retried["action_id"]]
    assert len(world.fake.transfers) == 1


def test_retry_of_an_unknown_movement_is_404(world, admin):
    response = world.client.post(f"/api/admin/payouts/{uuid.uuid4()}/retry", headers=admin[1])
    assert response.status_code == 404 and error(response)["code"] == "NOT_FOUND"


def test_chargeback_over_http_holds_the_escrow_and_shows_on_the_desk(world, admin):
    _, headers = admin
    task, proof = world.submitted()
    event = world.fake.open_dispute(_pi(world, task), reason="product_not_received")
    assert world.webhook(event).status_code == 200
    assert world.webhook(event).status_code == 200
    accept = world.client.post(f"/api/proofs/{proof['id']}/accept", headers=world.ph)
    assert accept.status_code == 409 and error(accept)["code"] == "HX204"
    escrow_url = f"/api/escrows/{task['escrow_id']}"
    assert data(world.client.get(escrow_url, headers=world.ph))["chargeback_hold"] == "CHARGEBACK"
    listed = data(world.client.get("/api/admin/chargebacks", headers=headers))
    [chargeback] = listed["chargebacks"]
    assert (chargeback["task_id"], chargeback["status"], chargeback["money_held"], chargeback["chargeback_hold"],
            chargeback["reason"], chargeback["loss_amount"]) == \
        (task["id"], "OPEN", True, "CHARGEBACK", "product_not_received", 0)
    assert data(world.client.get("/api/admin/chargebacks?status=WON", headers=headers))["chargebacks"] == []
    world.webhook(world.fake.close_dispute(event["data"]["object"]["id"], "won"))
    assert data(world.client.get("/api/admin/chargebacks?status=WON", headers=headers))["chargebacks"][0]["id"] \
        == chargeback["id"]
    assert data(world.client.get(escrow_url, headers=world.wh))["chargeback_hold"] is None
    accept = world.client.post(f"/api/proofs/{proof['id']}/accept", headers=world.ph)
    assert accept.status_code == 200
    assert world.send_money(task["escrow_id"])["transferred"] == 4500 * 85 // 100


def test_chargebacks_are_keyset_paged_newest_first(world, admin):
    _, headers = admin
    for _ in range(3):
        world.webhook(world.fake.open_dispute(_pi(world, world.funded())))
    everything = [c["id"] for c in data(world.client.get("/api/admin/chargebacks", headers=headers))["chargebacks"]]
    first = data(world.client.get("/api/admin/chargebacks?limit=2", headers=headers))
    assert [c["id"] for c in first["chargebacks"]] == everything[:2] and first["has_more"]
    rest = data(world.client.get(f"/api/admin/chargebacks?limit=2&before={first['next_before']}", headers=headers))
    assert [c["id"] for c in rest["chargebacks"]] == everything[2:] and rest["next_before"] is None
    assert world.client.get("/api/admin/chargebacks?status=CLOSED", headers=headers).status_code == 400


def test_highest_risk_blocks_acceptance_until_an_admin_clears_it(world, admin, conn):
    _, headers = admin
    task = world.post()
    world.fake.set_risk(task["payment_intent_id"], "highest")
    assert world.webhook(world.fake.succeed_payment(task["payment_intent_id"])).status_code == 200
    refused = world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.wh)
    assert refused.status_code == 409 and error(refused)["details"] == {"reason": "PAYMENT_UNDER_REVIEW"}
    path = f"/api/admin/escrows/{task['escrow_id']}/clear-risk"
    assert world.client.post(path, headers=headers, json={"note": "x" * 501}).status_code == 400
    assert world.client.post(path, headers=world.ph, json={}).status_code == 403
    cleared = data(world.client.post(path, headers=headers, json={"note": "card holder confirmed"}))
    assert cleared["payment_risk_level"] == "highest" and cleared["escrow_id"] == task["escrow_id"]
    action = conn.execute("SELECT * FROM admin_actions WHERE id = %s", (cleared["action_id"],)).fetchone()
    assert action["action_type"] == "PAYMENT_RISK_CLEAR" and action["action_details"]["note"] == "card holder confirmed"
    assert world.client.post(path, headers=headers).status_code == 409
    assert world.client.post(f"/api/admin/escrows/{uuid.uuid4()}/clear-risk", headers=headers).status_code == 404
    assert world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.wh).status_code == 200


def test_clear_risk_of_an_unflagged_payment_is_409(world, admin):
    task = world.funded()
    response = world.client.post(f"/api/admin/escrows/{task['escrow_id']}/clear-risk", headers=admin[1], json={})
    assert response.status_code == 409 and error(response)["details"] == {"payment_risk_level": "normal"}


def test_money_events_and_unknown_events_answer_200(world, conn):
    task = world.completed()
    world.send_money(task["escrow_id"])
    transfer = world.fake.transfers[0]
    for event in (world.fake.reverse_transfer(transfer["id"], 100), world.fake.fail_payout("acct_worker", 3825),
                  world.fake.event("customer.subscription.created", {"id": "sub_1", "object": "subscription"})):
        assert world.webhook(event).status_code == 200
        assert world.webhook(event).status_code == 200
    kinds = [r["kind"] for r in conn.execute("SELECT kind FROM payout_incidents ORDER BY kind").fetchall()]
    assert kinds == ["PAYOUT_FAILED", "TRANSFER_REVERSED"]
    results = {r["event_type"]: r["result"] for r in conn.execute(
        "SELECT event_type, result FROM processed_stripe_events").fetchall()}
    assert results["customer.subscription.created"] == "ignored"
    assert results["payout.failed"] == results["transfer.reversed"] == "processed"
