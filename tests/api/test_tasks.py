"""Task, escrow, proof and dispute routes through the Flask test client: the happy path,
unauthenticated, wrong actor, invalid input, and service errors surfacing with their codes."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import data, error
from tests.api.world import task_body

# -- tasks -----------------------------------------------------------------------

def test_create_task(world):
    task = world.post()
    assert task["state"] == "OPEN" and task["poster_id"] == world.poster["id"] and task["price"] == 4500
    assert task["payment_intent_id"] in world.fake.payment_intents and task["client_secret"]


@pytest.mark.parametrize("overrides,field", [
    ({"price": 499}, "price"), ({"price": "4500"}, "price"), ({"price": 45.5}, "price"), ({"title": ""}, "title"),
    ({"category": "juggling"}, "category"), ({"deadline": "2020-01-01T00:00:00+00:00"}, "deadline"),
    ({"deadline": "2030-01-01T00:00:00"}, "deadline"), ({"surprise": 1}, "surprise"), ({"location": None}, "location"),
])
def test_create_task_rejects_bad_input_with_field_details(world, overrides, field):
    response = world.client.post("/api/tasks", json=task_body(**overrides), headers=world.ph)
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR" and field in str(err["details"])
    assert world.conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"] == 0


def test_task_routes_need_a_token(client):
    some = uuid.uuid4()
    for method, path in [("post", "/api/tasks"), ("get", "/api/tasks"), ("get", f"/api/tasks/{some}"),
                         ("post", f"/api/tasks/{some}/accept"), ("post", f"/api/tasks/{some}/complete"),
                         ("post", f"/api/tasks/{some}/cancel"), ("get", f"/api/tasks/{some}/escrow"),
                         ("post", f"/api/tasks/{some}/escrow/payment-intent"), ("get", f"/api/tasks/{some}/proof"),
                         ("post", f"/api/tasks/{some}/proof"), ("post", f"/api/tasks/{some}/dispute"),
                         ("get", f"/api/tasks/{some}/dispute"), ("post", f"/api/escrows/{some}/release"),
                         ("post", f"/api/escrows/{some}/refund"), ("post", f"/api/proofs/{some}/accept"),
                         ("post", f"/api/proofs/{some}/reject"), ("post", f"/api/disputes/{some}/resolve")]:
        response = getattr(client, method)(path, json={})
        assert response.status_code == 401, (method, path)
        assert error(response)["code"] == "AUTH_REQUIRED"


def test_list_and_get_tasks(world):
    world.post(price=900, category="cleaning")
    world.post(price=600, category="cleaning")
    response = world.client.get("/api/tasks?category=cleaning&sort=price&order=asc&limit=1&offset=0",
                                headers=world.sh)
    page = data(response)
    assert [t["price"] for t in page["tasks"]] == [600] and page["total"] == 2 and page["has_more"] is True
    # Keyset paging (the default): no count, a cursor to the next page.
    first = data(world.client.get("/api/tasks?category=cleaning&sort=price&order=asc&limit=1", headers=world.sh))
    assert first["total"] is None and first["has_more"] is True and first["tasks"] == page["tasks"]
    second = data(world.client.get("/api/tasks", query_string={
        "category": "cleaning", "sort": "price", "order": "asc", "limit": 1, "cursor": first["next_cursor"]},
        headers=world.sh))
    assert [t["price"] for t in second["tasks"]] == [900] and second["has_more"] is False
    assert second["next_cursor"] is None
    bad = world.client.get("/api/tasks?cursor=nonsense", headers=world.sh)
    assert bad.status_code == 400 and "cursor" in error(bad)["details"]
    assert page["tasks"][0]["poster"]["id"] == world.poster["id"]
    one = data(world.client.get(f"/api/tasks/{page['tasks'][0]['id']}", headers=world.sh))
    assert one["escrow"]["state"] == "PENDING" and one["worker"] is None
    assert world.client.get("/api/tasks?limit=101", headers=world.sh).status_code == 400
    assert world.client.get("/api/tasks?state=BOGUS", headers=world.sh).status_code == 400
    assert world.client.get("/api/tasks?colour=red", headers=world.sh).status_code == 400


def test_get_task_404_and_403(world):
    assert error(world.client.get(f"/api/tasks/{uuid.uuid4()}", headers=world.sh))["code"] == "NOT_FOUND"
    assert world.client.get("/api/tasks/not-a-uuid", headers=world.sh).status_code == 404
    task = world.accepted()
    assert error(world.client.get(f"/api/tasks/{task['id']}", headers=world.sh))["code"] == "FORBIDDEN"


def test_accept_rules(world):
    task = world.post()
    response = world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.wh)
    assert response.status_code == 409 and error(response)["code"] == "CONFLICT"  # not funded yet
    world.webhook(world.fake.succeed_payment(task["payment_intent_id"]))
    assert error(world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.ph))["code"] == "FORBIDDEN"
    accepted = data(world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.wh))
    assert accepted["state"] == "ACCEPTED" and accepted["worker_id"] == world.worker["id"]
    assert world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.sh).status_code == 403  # may not see it








def test_cancel_and_refund(world):
    task = world.accepted(price=1200)
    assert world.client.post(f"/api/tasks/{task['id']}/cancel", json={}, headers=world.wh).status_code == 403
    assert world.client.post(f"/api/tasks/{task['id']}/cancel", json={"reason": 5}, headers=world.ph).status_code == 400
    out = data(world.client.post(f"/api/tasks/{task['id']}/cancel", json={"reason": "rain"}, headers=world.ph))
    assert out["task"]["state"] == "CANCELLED" and out["escrow"]["state"] == "REFUNDED"
    assert world.send_money(out["escrow"]["id"]) == {"transferred": 0, "refunded": 1200}
    assert world.client.post(f"/api/tasks/{task['id']}/cancel", json={}, headers=world.ph).status_code == 409
    refund = world.client.post(f"/api/escrows/{out['escrow']['id']}/refund", json={}, headers=world.ph)
    assert refund.status_code == 409 and error(refund)["code"] == "HX002"








def test_create_task_idempotency_key_header(world):
    headers = world.ph | {"Idempotency-Key": "tap-123"}
    body = task_body()
    first = world.client.post("/api/tasks", json=body, headers=headers)
    again = world.client.post("/api/tasks", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert data(first)["id"] == data(again)["id"] and data(again)["replayed"] is True
    changed = world.client.post("/api/tasks", json=body | {"price": 9900}, headers=headers)
    assert changed.status_code == 409 and error(changed)["code"] == "CONFLICT"
    bad = world.client.post("/api/tasks", json=task_body(), headers=world.ph | {"Idempotency-Key": "x" * 101})
    assert bad.status_code == 400


def test_a_stranger_accepting_a_task_it_may_not_see_learns_nothing(world):
    task, _proof = world.submitted()
    seen = world.client.get(f"/api/tasks/{task['id']}", headers=world.sh)
    taken = world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.sh)
    assert taken.status_code == seen.status_code == 403
    assert error(taken)["code"] == error(seen)["code"] == "FORBIDDEN"
    assert "PROOF_SUBMITTED" not in taken.get_data(as_text=True)
    # The task's own worker may see it, so it is told why.
    again = world.client.post(f"/api/tasks/{task['id']}/accept", headers=world.wh)
    assert again.status_code == 409 and "PROOF_SUBMITTED" in error(again)["message"]
