"""TaskService against the real database and Stripe through the real library (fake HTTP)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.services import flows


def test_create_opens_task_with_pending_escrow_and_payment_intent(services, stripe_fake):
    poster = flows.user(services)
    task = flows.post(services, poster, price=4500)
    assert task["state"] == "OPEN" and task["poster_id"] == poster
    escrow = services.escrows.get_by_task_id(task["id"]).unwrap()
    assert (escrow["state"], escrow["amount"]) == ("PENDING", 4500)
    pi = stripe_fake.payment_intents[task["payment_intent_id"]]
    assert pi["amount"] == 4500 and pi["currency"] == "usd"
    assert pi["metadata"] == {"escrow_id": str(escrow["id"]), "task_id": str(task["id"]),
                              "poster_user_id": str(poster)}
    assert task["client_secret"] and escrow["stripe_payment_intent_id"] == task["payment_intent_id"]


@pytest.mark.parametrize("field,value", [
    ("price", 499), ("price", "4500"), ("title", ""), ("title", "x" * 256), ("description", " "),
    ("category", "juggling"), ("deadline", datetime(2020, 1, 1, tzinfo=UTC)), ("mode", "TURBO"),
])
def test_create_rejects_invalid_task_and_writes_nothing(services, field, value):
    poster = flows.user(services)
    result = services.tasks.create(poster, **{"title": "Shelf", "description": "Build it", "price": 4500,
                                              field: value})
    assert result.code == "VALIDATION_ERROR" and field in result.error.details
    assert flows.row(services, "SELECT count(*) AS n FROM tasks")["n"] == 0


def test_create_survives_a_stripe_outage_and_the_intent_can_be_made_later(services, stripe_fake):
    poster = flows.user(services)
    stripe_fake.fail_next("/v1/payment_intents", kind="network")
    task = flows.post(services, poster)
    assert task["payment_intent_id"] is None and task["state"] == "OPEN"
    again = services.escrows.create_payment_intent(task["escrow_id"], actor_id=poster).unwrap()
    assert again["payment_intent_id"] in stripe_fake.payment_intents
    # Asking again reuses the live intent rather than making a second one.
    assert services.escrows.create_payment_intent(task["escrow_id"]).unwrap()["payment_intent_id"] == \
        again["payment_intent_id"]
    assert len(stripe_fake.payment_intents) == 1


def test_storing_the_first_intent_twice_answers_the_same_and_never_overwrites(services, stripe_fake):
    """first_intent's UPDATE goes without the pool's check, so it may run twice: a second run finds
    its intent stored and answers it; an escrow that holds another intent keeps that one."""
    poster = flows.user(services)
    task = flows.post(services, poster)
    escrow = services.escrows.get_by_task_id(task["id"]).unwrap()

    again = services.escrows.first_intent(escrow, poster).unwrap()
    assert again["payment_intent_id"] == task["payment_intent_id"] and len(stripe_fake.payment_intents) == 1

    other = services.payments.create_payment_intent(amount=escrow["amount"], escrow_id=str(escrow["id"]),
                                                    task_id=str(task["id"]), poster_id=str(poster),
                                                    idempotency_key="another-request")
    flows.row(services, "UPDATE escrows SET stripe_payment_intent_id = %s WHERE id = %s RETURNING id",
              other.id, escrow["id"])
    answered = services.escrows.first_intent(escrow, poster).unwrap()
    assert answered["payment_intent_id"] == other.id
    assert services.escrows.get_by_task_id(task["id"]).unwrap()["stripe_payment_intent_id"] == other.id


def test_paused_poster_cannot_create(services):
    poster = flows.user(services, account_status="PAUSED")
    assert services.tasks.create(poster, title="t", description="d", price=500).code == "HX602"


def test_accept_needs_a_funded_escrow(services):
    poster, worker = flows.user(services), flows.user(services)
    task = flows.post(services, poster)
    assert services.tasks.accept(task["id"], worker).code == "CONFLICT"
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", task["id"])["state"] == "OPEN"


def test_accept_refuses_the_poster_and_unknown_tasks(services, stripe_fake):
    poster, task = flows.funded_task(services, stripe_fake)
    assert services.tasks.accept(task["id"], poster).code == "FORBIDDEN"
    import uuid

    assert services.tasks.accept(uuid.uuid4(), poster).code == "NOT_FOUND"


def test_accept_assigns_worker_and_notifies_both(services, stripe_fake):
    poster, task = flows.funded_task(services, stripe_fake)
    worker = flows.user(services)
    accepted = services.tasks.accept(task["id"], worker).unwrap()
    assert (accepted["state"], accepted["worker_id"]) == ("ACCEPTED", worker)
    assert accepted["accepted_at"] is not None
    notes = {(r["user_id"], r["category"]) for r in _notifications(services, task["id"])}
    assert (poster, "TASK_ACCEPTED") in notes and (worker, "TASK_WORKER_ASSIGNED") in notes
    # Taken: another user may no longer see the task, so is told nothing about it; its worker is.
    assert services.tasks.accept(task["id"], flows.user(services)).code == "FORBIDDEN"
    assert services.tasks.accept(task["id"], worker).code == "CONFLICT"


def test_accept_checks_trust_tier_and_risk(services, stripe_fake):
    _, tiered = flows.funded_task(services, stripe_fake, required_trust_tier=3)
    _, risky = flows.funded_task(services, stripe_fake, risk_level="medium")
    rookie = flows.user(services)
    assert services.tasks.accept(tiered["id"], rookie).code == "FORBIDDEN"
    assert services.tasks.accept(risky["id"], rookie).code == "FORBIDDEN"
    verified = flows.user(services, trust_tier=2)
    assert services.tasks.accept(risky["id"], verified).ok


def test_twenty_concurrent_accepts_have_exactly_one_winner(services, stripe_fake):
    _, task = flows.funded_task(services, stripe_fake)
    workers = [flows.user(services) for _ in range(20)]
    barrier = threading.Barrier(20)
    results = []

    def attempt(worker):
        barrier.wait()
        results.append(services.tasks.accept(task["id"], worker))

    threads = [threading.Thread(target=attempt, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The losers may no longer see the taken task: refused without learning its state.
    assert sorted(r.code or "OK" for r in results) == ["FORBIDDEN"] * 19 + ["OK"]
    winner = next(r.data for r in results if r.ok)
    assert flows.row(services, "SELECT worker_id FROM tasks WHERE id = %s", task["id"])["worker_id"] == \
        winner["worker_id"]


def test_cancel_open_unpaid_task_closes_escrow_and_cancels_intent(services, stripe_fake):
    poster = flows.user(services)
    task = flows.post(services, poster)
    out = services.tasks.cancel(task["id"], poster, reason="changed my mind").unwrap()
    assert out["task"]["state"] == "CANCELLED" and out["escrow"]["state"] == "REFUNDED"
    assert out["escrow"]["stripe_refund_id"] is None
    assert stripe_fake.payment_intents[task["payment_intent_id"]]["status"] == "canceled"
    assert stripe_fake.refunds == []


def test_cancel_after_accept_refunds_in_full_and_awards_nothing(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake, price=5000)
    out = services.tasks.cancel(ids["task"], ids["poster"]).unwrap()
    assert out["escrow"]["state"] == "REFUNDED"
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 0, "refunded": 5000}
    escrow = services.escrows.get_by_id(ids["escrow"]).unwrap()
    assert escrow["stripe_refund_id"] == stripe_fake.refunds[0]["id"]
    assert flows.row(services, "SELECT count(*) AS n FROM xp_ledger")["n"] == 0
    assert ("TASK_CANCELLED", ids["worker"]) in {(r["category"], r["user_id"])
                                                 for r in _notifications(services, ids["task"])}


def test_cancel_rules(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    assert services.tasks.cancel(ids["task"], ids["worker"]).code == "FORBIDDEN"
    assert services.tasks.cancel(ids["task"], flows.user(services)).code == "FORBIDDEN"
    done = flows.completed_task(services, stripe_fake)
    assert services.tasks.cancel(done["task"], done["poster"]).code == "CONFLICT"


def test_admin_cancel_is_audited(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    admin = flows.admin(services)
    assert services.tasks.cancel(ids["task"], admin, reason="fraud report").ok
    action = flows.row(services, "SELECT * FROM admin_actions WHERE target_task_id = %s", ids["task"])
    assert action["admin_user_id"] == admin and action["action_type"] == "TASK_CANCEL"


def test_complete_without_accepted_proof_is_hx301_and_is_idempotent_after(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    assert services.tasks.complete(ids["task"], ids["poster"]).code == "HX301"
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    first = services.tasks.complete(ids["task"], ids["poster"]).unwrap()
    again = services.tasks.complete(ids["task"], ids["poster"]).unwrap()
    assert first["task"]["state"] == again["task"]["state"] == "COMPLETED"
    assert first["escrow"]["state"] == "RELEASED" and first["xp_awarded"]["effective_xp"] > 0
    assert len(stripe_fake.transfers) == 1


def test_complete_without_proof_when_none_is_required(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake, requires_proof=False)
    out = services.tasks.complete(ids["task"], ids["poster"]).unwrap()
    assert out["task"]["state"] == "COMPLETED" and out["escrow"]["state"] == "RELEASED"
    assert services.tasks.complete(ids["task"], ids["worker"]).code == "FORBIDDEN"


def test_get_by_id_visibility(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    detail = services.tasks.get_by_id(ids["task"], ids["worker"]).unwrap()
    assert detail["poster"]["id"] == ids["poster"] and detail["escrow"]["state"] == "FUNDED"
    assert detail["proof"] is None
    assert services.tasks.get_by_id(ids["task"], flows.user(services)).code == "FORBIDDEN"
    assert services.tasks.get_by_id(ids["task"], flows.admin(services)).ok
    _, open_task = flows.funded_task(services, stripe_fake)
    assert services.tasks.get_by_id(open_task["id"], flows.user(services)).ok


def test_list_filters_sorts_and_pages(services, stripe_fake):
    poster = flows.user(services)
    for price in (600, 900, 1200, 3000):
        flows.post(services, poster, price=price, category="cleaning")
    flows.post(services, poster, price=800, category="delivery")
    viewer = flows.user(services)
    page = services.tasks.list(viewer, category="cleaning", sort="price", order="asc", limit=2, offset=0).unwrap()
    assert [t["price"] for t in page["tasks"]] == [600, 900]
    assert page["total"] == 4 and page["has_more"] is True
    last = services.tasks.list(viewer, category="cleaning", sort="price", order="asc", limit=2, offset=2).unwrap()
    assert [t["price"] for t in last["tasks"]] == [1200, 3000] and last["has_more"] is False
    ranged = services.tasks.list(viewer, min_price=800, max_price=1200).unwrap()
    assert sorted(t["price"] for t in ranged["tasks"]) == [800, 900, 1200]
    assert services.tasks.list(viewer, limit=101).code == "VALIDATION_ERROR"
    assert services.tasks.list(viewer, sort="title").code == "VALIDATION_ERROR"


def test_list_shows_open_tasks_and_the_viewers_own(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    stranger = flows.user(services)
    assert services.tasks.list(stranger, states=["ACCEPTED"]).unwrap()["tasks"] == []
    assert len(services.tasks.list(ids["worker"], states=["ACCEPTED"]).unwrap()["tasks"]) == 1
    assert len(services.tasks.list(flows.admin(services), states=["ACCEPTED"]).unwrap()["tasks"]) == 1


@pytest.mark.parametrize(("sort", "order"), [("created_at", "desc"), ("price", "asc"), ("deadline", "desc"),
                                             ("deadline", "asc")])
def test_keyset_pages_walk_every_task_once_in_order(services, stripe_fake, clock, sort, order):
    poster = flows.user(services)
    deadline = clock() + timedelta(days=3)
    for n, price in enumerate((700, 700, 900, 500, 700, 1200, 500)):
        # Ties in price and in deadline, and tasks with no deadline, which sort last either way.
        flows.post(services, poster, price=price, deadline=None if n % 3 == 0 else deadline + timedelta(hours=n % 2))
    viewer = flows.user(services)
    seen, cursor, pages = [], None, 0
    while True:
        page = services.tasks.list(viewer, sort=sort, order=order, limit=2, cursor=cursor).unwrap()
        assert page["total"] is None and len(page["tasks"]) <= 2
        seen += page["tasks"]
        pages += 1
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    everything = services.tasks.list(viewer, sort=sort, order=order, limit=100, offset=0).unwrap()
    assert everything["total"] == 7 and pages == 4
    assert [t["id"] for t in seen] == [t["id"] for t in everything["tasks"]]
    values = [t[sort] for t in seen]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=order == "desc")
    assert values[len(present):] == [None] * (len(values) - len(present))  # NULLS LAST


def test_a_bad_or_foreign_cursor_is_a_validation_error(services, stripe_fake):
    poster = flows.user(services)
    for price in (600, 700, 800):
        flows.post(services, poster, price=price)
    cursor = services.tasks.list(poster, sort="price", limit=1).unwrap()["next_cursor"]
    assert services.tasks.list(poster, sort="price", limit=1, cursor=cursor).ok
    for bad in ("nonsense", cursor[:-3], "W10"):
        assert services.tasks.list(poster, sort="price", cursor=bad).code == "VALIDATION_ERROR"
    assert services.tasks.list(poster, sort="created_at", cursor=cursor).code == "VALIDATION_ERROR"
    assert services.tasks.list(poster, sort="price", cursor=cursor, offset=0).code == "VALIDATION_ERROR"


def test_expiry_job_expires_open_tasks_past_deadline_and_refunds(services, stripe_fake, clock):
    poster = flows.user(services)
    unpaid = flows.post(services, poster, deadline=datetime.now(UTC) + timedelta(hours=1))
    _, paid = flows.funded_task(services, stripe_fake, deadline=datetime.now(UTC) + timedelta(hours=1))
    later = flows.post(services, poster, deadline=datetime.now(UTC) + timedelta(days=5))
    assert services.tasks.expire_due().unwrap()["expired"] == 0
    clock.advance(hours=2)
    assert services.tasks.expire_due().unwrap()["expired"] == 2
    states = {t: flows.row(services, "SELECT state FROM tasks WHERE id = %s", t)["state"]
              for t in (unpaid["id"], paid["id"], later["id"])}
    assert states == {unpaid["id"]: "EXPIRED", paid["id"]: "EXPIRED", later["id"]: "OPEN"}
    assert stripe_fake.money_out(str(paid["escrow_id"]))["refunded"] == paid["price"]
    assert stripe_fake.payment_intents[unpaid["payment_intent_id"]]["status"] == "canceled"
    assert services.tasks.expire_due().unwrap()["expired"] == 0


def test_expiry_job_warns_overdue_accepted_tasks_once(services, stripe_fake, clock):
    ids = flows.accepted_task(services, stripe_fake, deadline=datetime.now(UTC) + timedelta(hours=1))
    clock.advance(hours=2)
    assert services.tasks.expire_due().unwrap()["overdue_warned"] == 1
    assert services.tasks.expire_due().unwrap()["overdue_warned"] == 0
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", ids["task"])["state"] == "ACCEPTED"


def _notifications(services, task_id):
    with services.db.transaction() as conn:
        return conn.execute("SELECT user_id, category FROM notifications WHERE task_id = %s", (task_id,)).fetchall()


def test_create_with_an_idempotency_key_returns_the_first_task_on_retry(services, stripe_fake):
    poster = flows.user(services)
    deadline = datetime.now(UTC) + timedelta(days=2)
    first = flows.post(services, poster, price=4500, deadline=deadline, idempotency_key="create-shelf-1")
    again = flows.post(services, poster, price=4500, deadline=deadline, idempotency_key="create-shelf-1")
    assert again["id"] == first["id"] and again["replayed"] is True
    assert again["payment_intent_id"] == first["payment_intent_id"] and again["client_secret"]
    assert flows.row(services, "SELECT count(*) AS n FROM tasks")["n"] == 1
    assert len(stripe_fake.payment_intents) == 1
    assert services.tasks.create(poster, idempotency_key="create-shelf-1", title="Other", description="d",
                                 price=900).code == "CONFLICT"
    # Keys are per poster: another poster's same key is a new task.
    other = flows.post(services, flows.user(services), idempotency_key="create-shelf-1")
    assert other["id"] != first["id"]


def test_concurrent_retries_with_one_key_make_one_task(services, stripe_fake):
    poster = flows.user(services)
    barrier = threading.Barrier(8)
    results = []

    def attempt():
        barrier.wait()
        results.append(services.tasks.create(poster, idempotency_key="double-tap", title="Shelf",
                                             description="Build", price=4500, location="Home"))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results)
    assert len({r.data["id"] for r in results}) == 1
    assert flows.row(services, "SELECT count(*) AS n FROM escrows")["n"] == 1


def test_admin_completion_of_a_proofless_task_is_audited(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake, requires_proof=False)
    admin = flows.admin(services)
    assert services.tasks.complete(ids["task"], admin).unwrap()["task"]["state"] == "COMPLETED"
    action = flows.row(services, "SELECT * FROM admin_actions WHERE target_task_id = %s", ids["task"])
    assert (action["admin_user_id"], action["action_type"]) == (admin, "TASK_COMPLETE")
    assert services.tasks.complete(ids["task"], flows.admin(services, can_override_escrow=False)).code == "FORBIDDEN"
