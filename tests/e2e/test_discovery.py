"""Issue 13 over real HTTP: a worker near a funded task finds it in the feed (and not an unfunded
or above-tier one), completes it, both rate, the ratings become public and the profile shows
them; and 101 completions rated >= 4.8, seeded through the services, make a verified worker
ELITE."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from hustlexp.db import Database
from hustlexp.services import Services
from hustlexp.services.payments import PaymentsGateway
from tests.e2e.system import World, data, error
from tests.services import flows
from tests.services.conftest import WEBHOOK_SECRET

HOME = {"lat": 40.7128, "lng": -74.0060}


def test_find_in_the_feed_complete_rate_and_see_the_profile(world: World) -> None:
    poster, worker = world.register("poster"), world.worker()
    near = world.post_task(poster, title="Hang three shelves", location_lat=40.7200, location_lng=-74.0000)
    world.fund(near)
    unfunded = world.post_task(poster, title="Unpaid shelves", location_lat=40.7150, location_lng=-74.0050)
    above = world.post_task(poster, title="Rewire a lamp", risk_level="medium", location_lat=40.7130,
                            location_lng=-74.0070)
    world.fund(above)

    feed = data(worker.get("/api/tasks/feed", params={**HOME, "radius_km": 5, "q": "shelves"}))
    assert [t["id"] for t in feed["items"]] == [near["id"]]
    assert 0.5 < feed["items"][0]["distance_km"] < 1.5
    everything = {t["id"] for t in data(worker.get("/api/tasks/feed", params=HOME))["items"]}
    assert near["id"] in everything and not {unfunded["id"], above["id"]} & everything
    error(worker.post(f"/api/tasks/{above['id']}/accept"), 403, "FORBIDDEN")

    world.accept(near, worker)
    proof = world.submit_proof(near, worker)
    data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    assert "RATING_REQUESTED" in worker.notification_types(near["id"])

    path = f"/api/tasks/{near['id']}"
    first = data(poster.post(f"{path}/rating", json={"stars": 5, "comment": "Level and tidy",
                                                     "tags": ["on_time", "clean_work"]}), 201)
    assert first["is_public"] is False
    assert data(worker.get(f"{path}/ratings"))["poster_rating"] is None  # blind
    second = data(worker.post(f"{path}/rating", json={"stars": 4, "tags": ["clear_instructions"]}), 201)
    assert second["both_rated"] is True
    ratings = data(worker.get(f"{path}/ratings"))
    assert (ratings["poster_rating"]["stars"], ratings["worker_rating"]["stars"]) == (5, 4)
    error(poster.post(f"{path}/rating", json={"stars": 1}), 409, "CONFLICT")
    assert "RATING_RECEIVED" in worker.notification_types(near["id"])

    stranger = world.register("stranger")
    profile = data(stranger.get(f"/api/users/{worker.id}"))
    assert profile["rating"]["total_ratings"] == 1 and profile["rating"]["average_rating"] == 5.0
    assert profile["tasks_completed"] == 1 and "email" not in profile
    summary = data(stranger.get(f"/api/users/{worker.id}/ratings"))
    assert summary["recent"][0]["comment"] == "Level and tidy"
    inbox = data(worker.get("/api/conversations"))
    assert inbox["conversations"][0]["task_id"] == near["id"]
    world.check_money()


@pytest.fixture
def seeder(world: World) -> Iterator[Services]:
    """The real services on the served database and fake Stripe, to seed a long history the way
    the app would (posting, paying, accepting, proving, approving, rating), only faster."""
    db = Database(world.served.db_url, min_size=1, max_size=4).open()
    gateway = PaymentsGateway("sk_test_e2e", api_base=world.served.env["STRIPE_API_BASE"],
                              webhook_secret=WEBHOOK_SECRET)
    yield Services(db, payments=gateway, webhook_secret=WEBHOOK_SECRET, storage_dir=world.served.workdir / "seed")
    db.close()


def test_101_rated_completions_make_a_verified_worker_elite(world: World, seeder: Services) -> None:
    worker, admin = world.worker("elite"), world.register("verifier")
    world.sql("INSERT INTO admin_roles (user_id, role, can_modify_trust) VALUES (%s, 'admin', true)", (admin.id,))
    data(admin.post(f"/api/admin/users/{worker.id}/verify", json={"note": "passport"}))
    worker_id = uuid.UUID(worker.id)
    for n in range(101):
        ids = flows.completed_task(seeder, world.served.fake, worker=worker_id, price=1000)
        world.escrows.append(str(ids["escrow"]))
        seeder.ratings.submit(ids["task"], ids["poster"], stars=4 if n == 0 else 5).unwrap()
        seeder.ratings.submit(ids["task"], worker_id, stars=5).unwrap()
        if n == 98:  # 99 completions: everything but the count
            assert data(worker.get("/api/users/me/trust-tier"))["current_tier"] == 3

    tier = data(worker.get("/api/users/me/trust-tier"))
    assert (tier["current_tier"], tier["tier_name"], tier["next_tier"]) == (4, "ELITE", None)
    history = data(worker.get("/api/users/me/trust-history"))["entries"]
    assert [(e["new_tier"], e["reason"]) for e in reversed(history)] == [
        (2, "PROMOTION"), (3, "PROMOTION"), (4, "PROMOTION")]
    profile = data(world.register("viewer").get(f"/api/users/{worker.id}"))
    assert profile["tier_name"] == "ELITE" and profile["tasks_completed"] == 101
    assert profile["rating"]["total_ratings"] == 101 and profile["rating"]["average_rating"] == 4.99
    world.check_money()
