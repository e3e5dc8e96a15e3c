"""/api/users/me/payout-account(/onboarding), /me/earnings, /me/payments and account.updated
through the real app: auth, actor, input, errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from hustlexp.app import close_app, create_app
from hustlexp.services import Services
from hustlexp.services.payments import PaymentsGateway
from tests.api.conftest import WEBHOOK_SECRET, api_settings, data, error
from tests.fakes.stripe_fake import FakeStripe
from tests.services import flows

Register = Callable[..., tuple[dict[str, Any], dict[str, str]]]
ROUTES = [("POST", "/api/users/me/payout-account/onboarding"), ("GET", "/api/users/me/payout-account"),
          ("GET", "/api/users/me/earnings"), ("GET", "/api/users/me/payments")]


def deliver(client: FlaskClient, event: dict[str, Any]) -> Any:
    payload, header = FakeStripe.sign(event, WEBHOOK_SECRET)
    return client.post("/webhooks/stripe", data=payload,
                       headers={"Stripe-Signature": header, "Content-Type": "application/json"})


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_routes_need_a_registered_user(client: FlaskClient, auth: Any, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 401 and error(response)["code"] == "AUTH_REQUIRED"
    response = client.open(path, method=method, headers=auth(f"nobody-{uuid.uuid4().hex[:8]}"))
    assert response.status_code == 404 and error(response)["code"] == "HX504"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_suspended_user_is_refused(client: FlaskClient, register: Register, conn: Any, method: str,
                                     path: str) -> None:
    user, headers = register(client)
    conn.execute("UPDATE users SET account_status = 'SUSPENDED', suspended_at = now() WHERE id = %s", (user["id"],))
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == 403 and error(response)["code"] == "ACCOUNT_SUSPENDED"


def test_onboarding_then_account_updated_completes_the_account(client: FlaskClient, register: Register,
                                                                stripe_fake: FakeStripe) -> None:
    _, headers = register(client)
    assert data(client.get("/api/users/me/payout-account", headers=headers))["status"] == "NOT_STARTED"
    link = data(client.post("/api/users/me/payout-account/onboarding", headers=headers))
    assert link["url"].startswith("https://") and link["stripe_account_id"].startswith("acct_")
    again = data(client.post("/api/users/me/payout-account/onboarding", headers=headers))
    assert again["stripe_account_id"] == link["stripe_account_id"] and again["url"] != link["url"]
    status = data(client.get("/api/users/me/payout-account", headers=headers))
    assert (status["status"], status["payouts_enabled"], status["details_submitted"]) == ("INCOMPLETE", False, False)
    assert status["currently_due"]
    _, event = stripe_fake.follow_link(link["url"])
    assert event is not None
    ack = deliver(client, event)
    assert ack.status_code == 200 and ack.get_json()["result"] == "processed"
    assert deliver(client, event).get_json()["result"] == "duplicate"
    status = data(client.get("/api/users/me/payout-account", headers=headers))
    assert (status["status"], status["payouts_enabled"], status["currently_due"]) == ("COMPLETE", True, [])


def test_onboarding_answers_502_when_stripe_refuses(client: FlaskClient, register: Register,
                                                   stripe_fake: FakeStripe) -> None:
    _, headers = register(client)
    stripe_fake.fail_next("/v1/account_links", kind="invalid_request")
    response = client.post("/api/users/me/payout-account/onboarding", headers=headers)
    assert response.status_code == 502 and error(response)["code"] == "PAYMENT_PROVIDER_ERROR"
    # The account was made; trying again gives a link for it, not a second account.
    assert data(client.post("/api/users/me/payout-account/onboarding", headers=headers))["url"]
    assert len([c for c in stripe_fake.calls if c[:2] == ("POST", "/v1/accounts")]) == 1


def test_a_malformed_account_event_is_400(client: FlaskClient, register: Register, stripe_fake: FakeStripe) -> None:
    _, headers = register(client)
    link = data(client.post("/api/users/me/payout-account/onboarding", headers=headers))
    event = stripe_fake.complete_onboarding(link["stripe_account_id"])
    event["data"]["object"]["payouts_enabled"] = "yes"
    response = deliver(client, event)
    assert response.status_code == 400 and "data.object.payouts_enabled" in error(response)["details"]
    assert data(client.get("/api/users/me/payout-account", headers=headers))["payouts_enabled"] is False


def test_put_payout_account_is_forbidden_when_the_setting_says_so(db_url: str, tmp_path: Any, firebase_certs: str,
                                                                  stripe_fake: FakeStripe, register: Register) -> None:
    gateway = PaymentsGateway("sk_test_api", http_client=stripe_fake.http_client(), webhook_secret=WEBHOOK_SECRET)
    app = create_app(api_settings(db_url, tmp_path, HUSTLEXP_MANUAL_PAYOUT_ACCOUNTS="0"), payments=gateway)
    try:
        client = app.test_client()
        _, headers = register(client)
        response = client.put("/api/users/me/payout-account", json={"stripe_connect_id": "acct_1Hand"},
                              headers=headers)
        assert response.status_code == 403 and error(response)["code"] == "FORBIDDEN"
        assert data(client.get("/api/users/me/payout-account", headers=headers))["status"] == "NOT_STARTED"
        assert data(client.post("/api/users/me/payout-account/onboarding", headers=headers))["url"]
    finally:
        close_app(app)


# -- the wallet ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/users/me/earnings", "/api/users/me/payments"])
@pytest.mark.parametrize(("query", "field"), [({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                                              ({"limit": "x"}, "limit"), ({"cursor": "bad"}, "cursor"),
                                              ({"cursor": ""}, "cursor"), ({"offset": 1}, "offset")])
def test_wallet_refuses_bad_paging(client: FlaskClient, register: Register, path: str, query: dict[str, Any],
                                   field: str) -> None:
    _, headers = register(client)
    response = client.get(path, query_string=query, headers=headers)
    assert response.status_code == 400
    body = error(response)
    assert body["code"] == "VALIDATION_ERROR" and field in body["details"]


def test_earnings_and_payments_are_the_callers_own(client: FlaskClient, register: Register, services: Services,
                                                   stripe_fake: FakeStripe) -> None:
    worker, worker_headers = register(client)
    poster, poster_headers = register(client)
    _, stranger_headers = register(client)
    assert client.put("/api/users/me/payout-account", json={"stripe_connect_id": "acct_1Wallet"},
                      headers=worker_headers).status_code == 200
    task = flows.post(services, uuid.UUID(poster["id"]), price=4500)
    flows.fund(services, stripe_fake, task)
    ids = {"poster": uuid.UUID(poster["id"]), "worker": uuid.UUID(worker["id"]), "task": task["id"],
           "escrow": task["escrow_id"]}
    services.tasks.accept(task["id"], ids["worker"]).unwrap()
    flows.submit_proof(services, ids)
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    # The approval queued the transfer; the dispatcher has not sent it yet.
    queued = data(client.get("/api/users/me/earnings", headers=worker_headers))
    assert queued["totals"] == {"paid": 0, "on_the_way": 3825, "waiting_for_payout_account": 0, "failed": 0}
    services.outbox.retry_due().unwrap()
    earned = data(client.get("/api/users/me/earnings", headers=worker_headers))
    assert earned["totals"] == {"paid": 3825, "on_the_way": 0, "waiting_for_payout_account": 0, "failed": 0}
    (payout,) = earned["payouts"]
    assert (payout["task_id"], payout["amount"], payout["fee_kept"], payout["status"]) == (
        str(task["id"]), 3825, 675, "PAID")
    assert payout["stripe_transfer_id"] == stripe_fake.transfers[0]["id"] and earned["next_cursor"] is None
    paid = data(client.get("/api/users/me/payments", headers=poster_headers))
    assert paid["totals"] == {"charged": 4500, "held": 0, "released": 4500, "refunded": 0}
    assert [p["task_id"] for p in paid["payments"]] == [str(task["id"])]
    # Neither sees the other's side, nor does a stranger see either.
    assert data(client.get("/api/users/me/earnings", headers=poster_headers))["payouts"] == []
    assert data(client.get("/api/users/me/payments", headers=worker_headers))["payments"] == []
    assert data(client.get("/api/users/me/earnings", headers=stranger_headers))["totals"]["paid"] == 0


def test_payments_page_with_the_cursor(client: FlaskClient, register: Register, services: Services) -> None:
    poster, headers = register(client)
    posted = [str(flows.post(services, uuid.UUID(poster["id"]), price=1000 + n)["id"]) for n in range(3)]
    first = data(client.get("/api/users/me/payments", query_string={"limit": 2}, headers=headers))
    assert first["has_more"] is True and len(first["payments"]) == 2
    second = data(client.get("/api/users/me/payments", query_string={"limit": 2, "cursor": first["next_cursor"]},
                             headers=headers))
    assert second["has_more"] is False and second["next_cursor"] is None
    seen = [p["task_id"] for p in first["payments"] + second["payments"]]
    assert sorted(seen) == sorted(posted) and len(set(seen)) == 3
