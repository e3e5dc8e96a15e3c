"""GET /api/tasks/feed over the app: auth, what it shows, distance, paging and bad queries."""

from __future__ import annotations

import pytest

from tests.api.conftest import data, error

HOME = "lat=40.7128&lng=-74.0060"


def test_feed_shows_funded_tasks_of_others_with_distance(world):
    funded = world.funded(location_lat=40.7484, location_lng=-73.9857)
    world.post(title="Not paid for yet")
    above = world.funded(required_trust_tier=3)
    page = data(world.client.get(f"/api/tasks/feed?{HOME}", headers=world.wh))
    assert [i["id"] for i in page["items"]] == [funded["id"]]
    item = page["items"][0]
    assert round(item["distance_km"], 1) == 4.3 and item["poster"]["id"] == world.poster["id"]
    assert page["has_more"] is False and page["next_cursor"] is None
    # Its own poster never sees it; accept agrees with the feed.
    assert data(world.client.get("/api/tasks/feed", headers=world.ph))["items"] == []
    assert world.client.post(f"/api/tasks/{above['id']}/accept", headers=world.wh).status_code == 403
    assert world.client.post(f"/api/tasks/{funded['id']}/accept", headers=world.wh).status_code == 200
    assert data(world.client.get("/api/tasks/feed", headers=world.wh))["items"] == []


def test_feed_pages_with_a_cursor(world):
    for n in range(5):
        world.funded(title=f"Task {n}", price=1000 + 100 * n)
    first = data(world.client.get("/api/tasks/feed?sort=price&limit=2", headers=world.wh))
    assert [i["price"] for i in first["items"]] == [1400, 1300] and first["has_more"] is True
    second = data(world.client.get(f"/api/tasks/feed?sort=price&limit=2&cursor={first['next_cursor']}",
                                   headers=world.wh))
    assert [i["price"] for i in second["items"]] == [1200, 1100]
    third = data(world.client.get(f"/api/tasks/feed?sort=price&limit=2&cursor={second['next_cursor']}",
                                  headers=world.wh))
    assert [i["price"] for i in third["items"]] == [1000] and third["next_cursor"] is None


def test_feed_search(world):
    shelf = world.funded(title="Assemble a bookshelf", description="Two IKEA units", category="assembly")
    world.funded()
    page = data(world.client.get("/api/tasks/feed?q=ikea%20assembly", headers=world.wh))
    assert [i["id"] for i in page["items"]] == [shelf["id"]]


def test_feed_needs_a_token(world):
    response = world.client.get("/api/tasks/feed")
    assert response.status_code == 401 and error(response)["code"] == "AUTH_REQUIRED"


@pytest.mark.parametrize(("query", "field"), [
    ("lat=40", "lng"), ("radius_km=5", "radius_km"), ("sort=distance", "sort"), ("sort=best", "sort"),
    ("limit=0", "limit"), ("limit=51", "limit"), ("lat=91&lng=0", "lat"), ("category=piano", "category"),
    ("cursor=zzz", "cursor"), ("min_price=-1", "min_price"), ("min_price=900&max_price=100", "max_price"),
    ("page=2", "page"), (f"{HOME}&radius_km=0", "radius_km"), ("q=", "q"),
])
def test_bad_feed_query_is_a_400_with_field_details(world, query, field):
    response = world.client.get(f"/api/tasks/feed?{query}", headers=world.wh)
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR" and field in err["details"], err
