"""Rating routes: submit, the task's ratings, mine, anyone's summary (auth, actor, input, errors)."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import data, error

NOBODY = uuid.UUID(int=0)


def rate(world, task, headers, **body):
    return world.client.post(f"/api/tasks/{task['id']}/rating", json=body, headers=headers)


def test_both_rate_and_the_ratings_become_public(world):
    task = world.completed()
    first = rate(world, task, world.ph, stars=4, comment="Punctual", tags=["on_time", "professional"])
    assert first.status_code == 201
    out = data(first)
    assert out["both_rated"] is False and out["rating"]["is_public"] is False
    assert out["rating"]["rater"]["id"] == world.poster["id"]
    blind = data(world.client.get(f"/api/tasks/{task['id']}/ratings", headers=world.wh))
    assert blind["poster_rating"] is None and blind["can_rate"] is True
    assert data(world.client.get(f"/api/users/{world.worker['id']}/ratings",
                                 headers=world.sh))["summary"]["total_ratings"] == 0

    second = data(rate(world, task, world.wh, stars=5, tags=["clear_instructions"]))
    assert second["both_rated"] is True and second["is_public"] is True
    public = data(world.client.get(f"/api/tasks/{task['id']}/ratings", headers=world.wh))
    assert public["poster_rating"]["stars"] == 4 and public["worker_rating"]["stars"] == 5
    summary = data(world.client.get(f"/api/users/{world.worker['id']}/ratings", headers=world.sh))
    assert summary["summary"]["average_rating"] == 4.0
    assert summary["summary"]["star_distribution"]["4"] == 1
    assert [r["comment"] for r in summary["recent"]] == ["Punctual"]
    mine = data(world.client.get("/api/users/me/ratings?limit=5", headers=world.wh))
    assert [r["stars"] for r in mine["given"]] == [5] and [r["stars"] for r in mine["received"]] == [4]


def test_rating_routes_need_a_token(world):
    task_id = uuid.uuid4()
    assert error(world.client.post(f"/api/tasks/{task_id}/rating", json={"stars": 5}))["code"] == "AUTH_REQUIRED"
    for path in (f"/api/tasks/{task_id}/ratings", "/api/users/me/ratings", f"/api/users/{task_id}/ratings"):
        response = world.client.get(path)
        assert response.status_code == 401 and error(response)["code"] == "AUTH_REQUIRED"


def test_rating_actor_and_state_errors(world):
    task = world.accepted()
    early = rate(world, task, world.ph, stars=5)
    assert early.status_code == 409 and error(early)["code"] == "HX807"
    done = world.completed()
    stranger = rate(world, done, world.sh, stars=5)
    assert stranger.status_code == 403 and error(stranger)["code"] == "HX812"
    assert world.client.get(f"/api/tasks/{done['id']}/ratings", headers=world.sh).status_code == 403
    assert rate(world, done, world.ph, stars=5).status_code == 201
    twice = rate(world, done, world.ph, stars=1)
    assert twice.status_code == 409 and error(twice)["code"] == "CONFLICT"
    missing = world.client.post(f"/api/tasks/{uuid.uuid4()}/rating", json={"stars": 5}, headers=world.ph)
    assert missing.status_code == 404
    assert world.client.get(f"/api/tasks/{uuid.uuid4()}/ratings", headers=world.ph).status_code == 404
    unknown = world.client.get(f"/api/users/{NOBODY}/ratings", headers=world.ph)
    assert unknown.status_code == 404 and error(unknown)["code"] == "HX504"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "stars"), ({"stars": 0}, "stars"), ({"stars": 6}, "stars"), ({"stars": "5"}, "stars"),
    ({"stars": 4.5}, "stars"), ({"stars": 5, "comment": "x" * 501}, "comment"),
    ({"stars": 5, "tags": ["nice"]}, "tags"), ({"stars": 5, "tags": ["rude"]}, "tags"),
    ({"stars": 5, "extra": 1}, "extra"),
])
def test_bad_rating_is_a_400_with_field_details(world, body, field):
    task = world.completed()
    response = world.client.post(f"/api/tasks/{task['id']}/rating", json=body, headers=world.ph)
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR" and field in err["details"]
    assert data(world.client.get(f"/api/tasks/{task['id']}/ratings", headers=world.ph))["poster_rating"] is None


def test_my_ratings_query_is_checked(world):
    for query in ("limit=0", "limit=101", "limit=x", "offset=3"):
        response = world.client.get(f"/api/users/me/ratings?{query}", headers=world.ph)
        assert response.status_code == 400 and error(response)["code"] == "VALIDATION_ERROR"
