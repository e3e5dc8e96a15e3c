"""RatingService: two-way ratings after completion, blind until both rated or the window
closed, the auto-rating pass, and the summaries (RATING_SYSTEM_SPEC)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hustlexp.jobs import run_pass
from hustlexp.services import Services
from tests.services import flows

NOBODY = uuid.UUID(int=0)


@pytest.fixture
def done(services: Services, stripe_fake: Any) -> dict[str, Any]:
    return flows.completed_task(services, stripe_fake)


def categories(services: Services, user_id: Any, category: str) -> list[dict[str, Any]]:
    with services.db.transaction() as conn:
        return conn.execute("SELECT * FROM notifications WHERE user_id = %s AND category = %s",
                            (user_id, category)).fetchall()


def test_completion_asks_both_parties_to_rate(services, done):
    for party in (done["poster"], done["worker"]):
        [asked] = categories(services, party, "RATING_REQUESTED")
        assert asked["task_id"] == done["task"]


def test_first_rating_stays_blind_until_the_other_rates(services, done):
    first = services.ratings.submit(done["task"], done["poster"], stars=4, comment=" Good work ",
                                    tags=["on_time"]).unwrap()
    assert (first["both_rated"], first["is_public"]) == (False, False)
    assert first["rating"]["comment"] == "Good work"
    assert first["rating"]["ratee_id"] == done["worker"]
    # The worker cannot see it yet; the poster sees their own.
    as_worker = services.ratings.get_task_ratings(done["task"], done["worker"]).unwrap()
    assert as_worker["poster_rating"] is None and as_worker["can_rate"] is True
    as_poster = services.ratings.get_task_ratings(done["task"], done["poster"]).unwrap()
    assert as_poster["poster_rating"]["stars"] == 4 and as_poster["can_rate"] is False
    assert services.ratings.get_user_ratings(done["worker"]).unwrap()["summary"]["total_ratings"] == 0
    assert categories(services, done["worker"], "RATING_RECEIVED") == []

    second = services.ratings.submit(done["task"], done["worker"], stars=5, tags=["fair_payment"]).unwrap()
    assert (second["both_rated"], second["is_public"]) == (True, True)
    view = services.ratings.get_task_ratings(done["task"], done["worker"]).unwrap()
    assert (view["poster_rating"]["stars"], view["worker_rating"]["stars"]) == (4, 5)
    assert view["poster_rating"]["is_public"] is True and view["both_rated"] is True
    [received] = categories(services, done["worker"], "RATING_RECEIVED")
    assert received["metadata"]["stars"] == 4
    assert len(categories(services, done["poster"], "RATING_RECEIVED")) == 1


def test_summary_counts_public_ratings_only(services, stripe_fake):
    worker = flows.user(services)
    tasks = [flows.completed_task(services, stripe_fake, worker=worker) for _ in range(3)]
    for stars, ids in zip((5, 4, 2), tasks, strict=True):
        services.ratings.submit(ids["task"], ids["poster"], stars=stars).unwrap()
    for ids in tasks[:2]:
        services.ratings.submit(ids["task"], worker, stars=5).unwrap()
    out = services.ratings.get_user_ratings(worker).unwrap()
    assert out["summary"] == {"total_ratings": 2, "average_rating": 4.5,
                              "star_distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}}
    assert [r["stars"] for r in out["recent"]] == [4, 5]
    mine = services.ratings.get_my_ratings(worker).unwrap()
    assert len(mine["given"]) == 2 and len(mine["received"]) == 2
    assert mine["summary"]["total_ratings"] == 2


def test_rating_refused_before_completion(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    result = services.ratings.submit(ids["task"], ids["poster"], stars=5)
    assert (result.code, result.error.status) == ("HX807", 409)


def test_rating_by_a_stranger_refused(services, done):
    result = services.ratings.submit(done["task"], flows.user(services), stars=5)
    assert (result.code, result.error.status) == ("HX812", 403)


def test_rating_refused_for_unknown_task(services):
    assert services.ratings.submit(NOBODY, flows.user(services), stars=5).code == "NOT_FOUND"


def test_rating_twice_is_a_conflict_and_changes_nothing(services, done):
    services.ratings.submit(done["task"], done["poster"], stars=5).unwrap()
    again = services.ratings.submit(done["task"], done["poster"], stars=1)
    assert again.code == "CONFLICT"
    view = services.ratings.get_task_ratings(done["task"], done["poster"]).unwrap()
    assert view["poster_rating"]["stars"] == 5


def test_rating_window_closes_after_7_days(services, done, clock):
    clock.advance(days=6, hours=23)
    assert services.ratings.submit(done["task"], done["poster"], stars=3).ok
    clock.advance(hours=2)
    late = services.ratings.submit(done["task"], done["worker"], stars=3)
    assert (late.code, late.error.status) == ("HX808", 409)


@pytest.mark.parametrize(("fields", "field"), [
    ({"stars": 0}, "stars"), ({"stars": 6}, "stars"), ({"stars": True}, "stars"), ({"stars": "5"}, "stars"),
    ({"stars": 5, "comment": "x" * 501}, "comment"), ({"stars": 5, "tags": ["rude"]}, "tags"),
    ({"stars": 5, "tags": ["late_arrival"]}, "tags"), ({"stars": 5, "tags": ["on_time", "on_time"]}, "tags"),
    ({"stars": 5, "tags": "on_time"}, "tags"),
])
def test_bad_rating_refused_with_field_details(services, done, fields, field):
    result = services.ratings.submit(done["task"], done["poster"], **fields)
    assert result.code == "VALIDATION_ERROR"
    assert field in result.error.details
    assert services.ratings.get_task_ratings(done["task"], done["poster"]).unwrap()["poster_rating"] is None


def test_negative_tags_allowed_below_four_stars(services, done):
    out = services.ratings.submit(done["task"], done["poster"], stars=2, tags=["late_arrival", "on_time"]).unwrap()
    assert out["rating"]["tags"] == ["late_arrival", "on_time"]
    out = services.ratings.submit(done["task"], done["worker"], stars=3, tags=["unresponsive"]).unwrap()
    assert out["rating"]["tags"] == ["unresponsive"]


def test_task_ratings_visible_to_parties_and_admins_only(services, done):
    services.ratings.submit(done["task"], done["poster"], stars=4).unwrap()
    assert services.ratings.get_task_ratings(done["task"], flows.user(services)).code == "FORBIDDEN"
    admin_view = services.ratings.get_task_ratings(done["task"], flows.admin(services)).unwrap()
    assert admin_view["poster_rating"]["stars"] == 4 and admin_view["can_rate"] is False
    assert services.ratings.get_task_ratings(NOBODY, done["poster"]).code == "NOT_FOUND"


def test_unknown_user_has_no_ratings(services):
    assert services.ratings.get_user_ratings(NOBODY).code == "HX504"
    assert services.ratings.get_my_ratings(NOBODY).code == "HX504"
    assert services.ratings.get_my_ratings(flows.user(services), limit=0).code == "VALIDATION_ERROR"


def test_auto_rate_fills_the_missing_side_and_publishes(services, done, clock):
    services.ratings.submit(done["task"], done["poster"], stars=2).unwrap()
    assert run_pass("auto-rate", services) == {"tasks": 0, "auto_ratings": 0}
    clock.advance(days=7, minutes=1)
    # Once the window closed, the single rating is public even before the job ran.
    assert services.ratings.get_user_ratings(done["worker"]).unwrap()["summary"]["total_ratings"] == 1
    assert run_pass("auto-rate", services) == {"tasks": 1, "auto_ratings": 1}
    view = services.ratings.get_task_ratings(done["task"], done["poster"]).unwrap()
    assert view["worker_rating"]["is_auto_rated"] is True and view["worker_rating"]["stars"] == 5
    assert view["poster_rating"]["is_auto_rated"] is False
    assert len(categories(services, done["worker"], "RATING_RECEIVED")) == 1
    assert run_pass("auto-rate", services) == {"tasks": 0, "auto_ratings": 0}


def test_auto_rate_rates_both_sides_when_nobody_rated(services, done, clock):
    clock.advance(days=8)
    assert run_pass("auto-rate", services) == {"tasks": 1, "auto_ratings": 2}
    summary = services.ratings.get_user_ratings(done["poster"]).unwrap()["summary"]
    assert summary["total_ratings"] == 1 and summary["average_rating"] == 5.0
