"""FeedService: only tasks the worker can accept now (the very rules accept checks), distance
and radius, full-text search, filters, relevance, and cursor pages that stay stable while tasks
are posted."""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hustlexp.services import Services
from hustlexp.services import feed as feed_module
from hustlexp.services.feed import WEIGHTS, FeedService, decode_cursor, due_sql, nearest_sql
from tests.services import flows

# Downtown and points ~1 km, ~5 km and ~30 km north of it (1 degree of latitude ~ 111 km).
HOME = (40.7128, -74.0060)


def north(km: float) -> dict[str, float]:
    return {"location_lat": round(HOME[0] + km / 111.045, 7), "location_lng": HOME[1]}


def ids(page: dict[str, Any]) -> list[Any]:
    return [item["id"] for item in page["items"]]


def feed(services: Services, worker: Any, **kw: Any) -> dict[str, Any]:
    return services.feed.feed(worker, **kw).unwrap()


def test_feed_holds_exactly_what_accept_allows(services, stripe_fake):
    worker = flows.user(services)
    own = flows.post(services, worker)
    flows.fund(services, stripe_fake, own)
    tasks = {
        "funded": flows.funded_task(services, stripe_fake)[1],
        "unfunded": flows.post(services, flows.user(services)),
        "own": own,
        "tier_2": flows.funded_task(services, stripe_fake, required_trust_tier=2)[1],
        "medium_risk": flows.funded_task(services, stripe_fake, risk_level="medium")[1],
        "taken": flows.funded_task(services, stripe_fake)[1],
    }
    services.tasks.accept(tasks["taken"]["id"], flows.user(services)).unwrap()
    shown = set(ids(feed(services, worker)))
    assert shown == {tasks["funded"]["id"]}
    for name, task in tasks.items():
        accepted = services.tasks.accept(task["id"], worker)
        assert accepted.ok == (task["id"] in shown), (name, accepted.code)


def test_higher_tier_sees_what_it_clears(services, stripe_fake):
    worker = flows.user(services, trust_tier=2)
    medium = flows.funded_task(services, stripe_fake, risk_level="medium")[1]
    high = flows.funded_task(services, stripe_fake, risk_level="high")[1]
    assert ids(feed(services, worker)) == [medium["id"]]
    assert services.tasks.accept(high["id"], worker).code == "FORBIDDEN"


def walk_pages(services: Services, worker: Any, **query: Any) -> list[tuple[Any, float]]:
    """(id, relevance_score) of every item, page after page by next_cursor."""
    seen: list[tuple[Any, float]] = []
    page = feed(services, worker, **query)
    while True:
        seen += [(i["id"], i["relevance_score"]) for i in page["items"]]
        if not page["has_more"]:
            return seen
        page = feed(services, worker, **query, cursor=page["next_cursor"])


def test_distance_radius_and_distance_sort(services, stripe_fake):
    worker = flows.user(services)
    far = flows.funded_task(services, stripe_fake, **north(30))[1]
    near = flows.funded_task(services, stripe_fake, **north(1))[1]
    mid = flows.funded_task(services, stripe_fake, **north(5))[1]
    nowhere = flows.funded_task(services, stripe_fake)[1]  # no coordinates
    page = feed(services, worker, lat=HOME[0], lng=HOME[1], sort="distance")
    assert ids(page) == [near["id"], mid["id"], far["id"]]
    assert [round(i["distance_km"]) for i in page["items"]] == [1, 5, 30]
    assert ids(feed(services, worker, lat=HOME[0], lng=HOME[1], radius_km=10, sort="distance")) == [
        near["id"], mid["id"]]
    without = feed(services, worker, sort="newest")
    assert set(ids(without)) == {far["id"], near["id"], mid["id"], nowhere["id"]}
    assert {i["distance_km"] for i in without["items"]} == {None}


@pytest.mark.parametrize("box_max", [0, 2000])
def test_a_task_in_the_corner_of_the_radius_box_stays_out(services, stripe_fake, monkeypatch, box_max):
    """The index answers a box around the radius; its corners lie beyond the radius and every
    sort, staged or not, box scored or order walked (box_max), must leave them out."""
    monkeypatch.setattr(feed_module, "BOX_SCAN_MAX", box_max)
    worker = flows.user(services)
    inside = flows.funded_task(services, stripe_fake, price=500, **north(2))[1]
    corner = {"location_lat": round(HOME[0] + 6 / 111.045, 7),
              "location_lng": round(HOME[1] + 6 / (111.045 * math.cos(math.radians(HOME[0]))), 7)}
    # About 8.5 km away, inside the 7 km box, and better paid: relevance's ceiling alone keeps it.
    flows.funded_task(services, stripe_fake, price=20000, **corner)
    for sort in ("relevance", "distance", "newest", "price"):
        assert ids(feed(services, worker, lat=HOME[0], lng=HOME[1], radius_km=7, sort=sort)) == [inside["id"]]
    assert len(feed(services, worker, lat=HOME[0], lng=HOME[1], radius_km=9)["items"]) == 2


def test_haversine_matches_a_known_distance(services, stripe_fake):
    worker = flows.user(services)
    # New York City Hall to the Empire State Building: about 4.3 km as the crow flies.
    flows.funded_task(services, stripe_fake, location_lat=40.7484, location_lng=-73.9857)
    [item] = feed(services, worker, lat=40.7128, lng=-74.0060)["items"]
    assert math.isclose(item["distance_km"], 4.31, abs_tol=0.05)


def test_full_text_search_and_filters(services, stripe_fake):
    worker = flows.user(services)
    shelf = flows.funded_task(services, stripe_fake, title="Assemble two bookshelves", category="assembly",
                              price=6000)[1]
    dog = flows.funded_task(services, stripe_fake, title="Walk my dog", description="Friendly beagle, 30 minutes",
                            category="pet_care", price=2500)[1]
    assert ids(feed(services, worker, q="assembling")) == [shelf["id"]]
    assert ids(feed(services, worker, q="beagles walking")) == [dog["id"]]
    assert ids(feed(services, worker, q="piano")) == []
    assert ids(feed(services, worker, category="pet_care")) == [dog["id"]]
    assert ids(feed(services, worker, min_price=3000)) == [shelf["id"]]
    assert ids(feed(services, worker, max_price=3000)) == [dog["id"]]
    assert ids(feed(services, worker, sort="price")) == [shelf["id"], dog["id"]]


@pytest.mark.parametrize("sort", ["relevance", "newest", "price"])
def test_search_near_a_position_keeps_to_the_radius(services, stripe_fake, sort):
    worker = flows.user(services)
    near = flows.funded_task(services, stripe_fake, title="Walk my dog", price=2000, **north(2))[1]
    flows.funded_task(services, stripe_fake, title="Walk my dog too", price=9000, **north(9))
    flows.funded_task(services, stripe_fake, title="Mow the lawn", **north(1))
    page = feed(services, worker, lat=HOME[0], lng=HOME[1], radius_km=5, q="dog", sort=sort)
    assert ids(page) == [near["id"]] and round(page["items"][0]["distance_km"]) == 2


def test_relevance_prefers_near_and_well_paid(services, stripe_fake):
    assert math.isclose(sum(WEIGHTS.values()), 1.0)
    worker = flows.user(services)
    good = flows.funded_task(services, stripe_fake, category="cleaning", price=10000, **north(1))[1]
    poor = flows.funded_task(services, stripe_fake, category="cleaning", price=2500, **north(35))[1]
    page = feed(services, worker, lat=HOME[0], lng=HOME[1])
    assert ids(page) == [good["id"], poor["id"]]
    scores = [i["relevance_score"] for i in page["items"]]
    assert all(0 <= s <= 1 for s in scores) and scores[0] > scores[1]


@pytest.mark.parametrize("box_max", [0, 2000])  # newest and price: order walked, box scored
@pytest.mark.parametrize("sort", ["relevance", "newest", "price", "distance"])
def test_cursor_pages_are_stable_while_tasks_are_posted(services, stripe_fake, monkeypatch, sort, box_max):
    monkeypatch.setattr(feed_module, "BOX_SCAN_MAX", box_max)
    worker = flows.user(services)
    posted = [flows.funded_task(services, stripe_fake, price=1000 + 500 * (n % 3), **north(n % 4 + 1))[1]["id"]
              for n in range(7)]
    seen: list[Any] = []
    page = feed(services, worker, lat=HOME[0], lng=HOME[1], sort=sort, limit=3)
    while True:
        seen += ids(page)
        # Someone posts a task between every two pages: it must not shift or repeat anything.
        flows.funded_task(services, stripe_fake, price=9000, **north(1))
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        page = feed(services, worker, lat=HOME[0], lng=HOME[1], sort=sort, limit=3, cursor=page["next_cursor"])
    assert sorted(map(str, seen)) == sorted(map(str, posted))


@pytest.mark.parametrize(("kw", "field"), [
    ({"lat": 40.0}, "lng"), ({"lng": -74.0}, "lat"), ({"radius_km": 5}, "radius_km"),
    ({"sort": "distance"}, "sort"), ({"sort": "oldest"}, "sort"), ({"limit": 0}, "limit"), ({"limit": 51}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"min_price": 5000, "max_price": 100}, "max_price"),
    ({"lat": 91.0, "lng": 0.0}, "lat"),
])
def test_bad_feed_query_refused(services, kw, field):
    result = services.feed.feed(flows.user(services), **kw)
    assert result.code == "VALIDATION_ERROR" and field in result.error.details


def test_cursor_is_bound_to_its_sort(services, stripe_fake):
    worker = flows.user(services)
    for _ in range(3):
        flows.funded_task(services, stripe_fake)
    cursor = feed(services, worker, sort="newest", limit=1)["next_cursor"]
    assert decode_cursor(cursor, "newest")["sort"] == "newest"
    assert services.feed.feed(worker, sort="price", cursor=cursor).code == "VALIDATION_ERROR"


def test_unknown_worker(services):
    import uuid

    assert services.feed.feed(uuid.UUID(int=0)).code == "HX504"


def test_poster_rating_comes_from_the_pairs_rated(services, stripe_fake):
    worker = flows.user(services)
    done = flows.completed_task(services, stripe_fake)
    services.ratings.submit(done["task"], done["worker"], stars=2).unwrap()
    task = flows.post(services, done["poster"])
    flows.fund(services, stripe_fake, task)
    # Blind: one rating of the pair is not counted yet.
    [item] = feed(services, worker)["items"]
    assert item["poster"]["average_rating"] is None
    services.ratings.submit(done["task"], done["poster"], stars=5).unwrap()
    [item] = feed(services, worker)["items"]
    assert item["poster"]["average_rating"] == 2.0


@pytest.mark.parametrize(("sort", "split"), [("relevance", None), ("distance", None), ("relevance", 0.95),
                                             ("relevance", 0.3)])
def test_two_stages_give_the_pages_a_full_scan_gives(services, stripe_fake, monkeypatch, sort, split):
    """The first stage reads only a few nearest tasks here, so the second stage prunes for real;
    every page must still be the one scoring every task in the radius gives. With `split` the
    second stage always starts on that share of the radius: wide, its page proves itself; narrow,
    a second round scores the rest."""
    worker = flows.user(services)
    rated = flows.completed_task(services, stripe_fake)
    services.ratings.submit(rated["task"], rated["worker"], stars=5).unwrap()
    services.ratings.submit(rated["task"], rated["poster"], stars=5).unwrap()
    # Mostly well paid and due in about 3.5 days (what a neutral worker prefers), so the best
    # scores come close to the ceiling and a bound leaves the far tasks out.
    categories = ("cleaning", "delivery", "errands", "pet_care")
    for n in range(24):
        fields = {"price": 3000 + 1000 * (n % 7), "category": categories[n % 4],
                  "deadline": datetime.now(UTC) + timedelta(hours=60 + 12 * (n % 5)), **north(0.4 + 1.3 * (n % 9))}
        if n % 3 == 0:  # the 5-star poster's tasks lift the ceiling every bound is checked against
            flows.fund(services, stripe_fake, flows.post(services, rated["poster"], **fields))
        else:
            flows.funded_task(services, stripe_fake, **fields)

    def walk() -> list[tuple[Any, float]]:
        return walk_pages(services, worker, lat=HOME[0], lng=HOME[1], radius_km=12, sort=sort, limit=4)

    reaches: list[float] = []
    near_floor = FeedService._near_floor

    def recorded(self: FeedService, *args: Any) -> Any:
        floor = near_floor(self, *args)
        reaches.append(floor.reach_km(floor.key) if floor else math.inf)
        return floor

    monkeypatch.setattr(feed_module, "PROBE", 6)
    monkeypatch.setattr(FeedService, "_near_floor", recorded)
    rounds = record_rounds(monkeypatch, split)
    staged = walk()
    assert any(r < 12 for r in reaches), reaches  # the second stage did leave tasks out
    assert_rounds(rounds, split)
    monkeypatch.setattr(FeedService, "_near_floor", lambda *args: None)
    assert staged == walk()
    assert len(staged) == 24


@pytest.mark.parametrize("split", [None, 0.95, 0.3])
def test_without_a_position_two_stages_give_the_pages_a_full_scan_gives(services, stripe_fake, monkeypatch, split):
    """No position: the first stage reads only a few tasks due nearest the ideal deadline, so
    the deadline window prunes for real; every page must still be the full scan's."""
    worker = flows.user(services)
    rated = flows.completed_task(services, stripe_fake)
    services.ratings.submit(rated["task"], rated["worker"], stars=5).unwrap()
    services.ratings.submit(rated["task"], rated["poster"], stars=5).unwrap()
    categories = ("cleaning", "delivery", "errands", "pet_care")
    deadlines: list[datetime] = []
    for n in range(24):
        deadlines.append(datetime.now(UTC) + timedelta(hours=84 + 14 * (n % 12 - 2)))
        fields = {"price": 8000 + 1000 * (n % 7), "category": categories[n % 4], "deadline": deadlines[-1]}
        if n % 3 == 0:  # the 5-star poster's tasks lift the ceiling every bound is checked against
            flows.fund(services, stripe_fake, flows.post(services, rated["poster"], **fields))
        else:
            flows.funded_task(services, stripe_fake, **fields)

    def walk() -> list[tuple[Any, float]]:
        return walk_pages(services, worker, limit=4)

    windows: list[tuple[datetime | None, datetime | None]] = []
    due_floor = FeedService._due_floor

    def recorded(self: FeedService, *args: Any) -> Any:
        floor = due_floor(self, *args)
        windows.append(floor.window(floor.key) if floor else (None, None))
        return floor

    monkeypatch.setattr(feed_module, "PROBE", 6)
    monkeypatch.setattr(FeedService, "_due_floor", recorded)
    rounds = record_rounds(monkeypatch, split)
    staged = walk()

    def left_out(window: tuple[datetime | None, datetime | None]) -> bool:
        start, end = window
        return any((start is not None and d < start) or (end is not None and d > end) for d in deadlines)
    assert any(map(left_out, windows)), windows  # the second stage did leave tasks out
    assert_rounds(rounds, split)
    monkeypatch.setattr(FeedService, "_due_floor", lambda *args: None)
    assert staged == walk()
    assert len(staged) == 24


def test_due_first_reads_the_deadline_index(services):
    """Without a position the first stage walks tasks_open_deadline_idx from the ideal deadline
    both ways (only the plan's shape is checked)."""
    params = {"ideal": datetime.now(UTC), "as_of": datetime.now(UTC), "size": 6}
    with services.db.transaction() as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + due_sql(), params).fetchall())
        assert plan.count("tasks_open_deadline_idx") == 2 and "Sort" not in plan, plan


def test_nearest_first_reads_the_point_index(services):
    """The first stage must stream from tasks_open_point_idx in distance order: its expressions
    are the index's, character for character (no timing here, only the plan's shape)."""
    params = {"min_lng": -74.1, "min_lat": 40.6, "max_lng": -73.9, "max_lat": 40.8, "lat": HOME[0],
              "lng": HOME[1], "as_of": datetime.now(UTC), "size": 5, "after_key": 1.0, "earth_km": 6371.0}
    with services.db.transaction() as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        for skip in (False, True):
            plan = "\n".join(r["QUERY PLAN"] for r in conn.execute(
                "EXPLAIN " + nearest_sql(skip_passed=skip), params).fetchall())
            assert "tasks_open_point_idx" in plan and "Order By" in plan and "Sort" not in plan, plan


def test_first_stage_reads_further_when_the_nearest_are_not_candidates(services, stripe_fake, monkeypatch):
    worker = flows.user(services)  # tier 1: medium-risk tasks are not for them
    for n in range(8):
        flows.funded_task(services, stripe_fake, risk_level="medium", **north(0.2 + 0.05 * n))
    far = [flows.funded_task(services, stripe_fake, price=3000 + 500 * n, **north(3 + n))[1]["id"] for n in range(5)]
    monkeypatch.setattr(feed_module, "PROBE", 6)
    for sort in ("relevance", "distance"):
        page = feed(services, worker, lat=HOME[0], lng=HOME[1], radius_km=20, sort=sort, limit=3)
        rest = feed(services, worker, lat=HOME[0], lng=HOME[1], radius_km=20, sort=sort, limit=3,
                    cursor=page["next_cursor"])
        assert sorted(map(str, ids(page) + ids(rest))) == sorted(map(str, far)) and not rest["has_more"]
    assert ids(feed(services, worker, lat=HOME[0], lng=HOME[1], radius_km=20, sort="distance", limit=3)) == far[:3]


def record_rounds(monkeypatch: Any, split: float | None) -> list[Any]:
    """With split set, every second stage starts on that share of its extent (SPLIT_ROWS 0);
    returns the `inside` argument of every round scored: None for a first round, the narrower
    extent's key for a second one."""
    rounds: list[Any] = []
    if split is None:
        return rounds
    scored = feed_module._round

    def recorded(*args: Any, inside: Any = None) -> Any:
        rounds.append(inside)
        return scored(*args, inside=inside)

    monkeypatch.setattr(feed_module, "SPLIT_ROWS", -1)
    monkeypatch.setattr(feed_module, "SPLIT_SHARE", split)
    monkeypatch.setattr(feed_module, "_round", recorded)
    return rounds


def assert_rounds(rounds: list[Any], split: float | None) -> None:
    """Both ways were taken: narrow first rounds needed a second one, wide ones mostly proved
    their page alone."""
    if split is None:
        return
    firsts, seconds = rounds.count(None), len(rounds) - rounds.count(None)
    assert firsts > 0 and (seconds > 0 if split < 0.5 else seconds < firsts), rounds


@pytest.mark.parametrize(("sort", "key", "task_id", "at"), [
    ("relevance", "abc", str(uuid.UUID(int=1)), "2026-01-01T00:00:00+00:00"),
    ("relevance", "NaN", str(uuid.UUID(int=1)), "2026-01-01T00:00:00+00:00"),
    ("relevance", ["0.5"], str(uuid.UUID(int=1)), "2026-01-01T00:00:00+00:00"),
    ("relevance", "0.5", "not-a-uuid", "2026-01-01T00:00:00+00:00"),
    ("relevance", "0.5", 5, "2026-01-01T00:00:00+00:00"),
    ("relevance", "0.5", str(uuid.UUID(int=1)), "2026-01-01T00:00:00"),  # no time zone
    ("newest", "yesterday", str(uuid.UUID(int=1)), "2026-01-01T00:00:00+00:00"),
    ("price", "99999999999", str(uuid.UUID(int=1)), "2026-01-01T00:00:00+00:00"),
    ("price", "1.5", str(uuid.UUID(int=1)), "2026-01-01T00:00:00+00:00"),
])
def test_a_forged_cursor_is_refused_not_run(services, stripe_fake, sort, key, task_id, at):
    worker = flows.user(services)
    flows.funded_task(services, stripe_fake)
    raw = json.dumps({"s": sort, "k": key, "id": task_id, "at": at}).encode()
    result = services.feed.feed(worker, sort=sort, cursor=base64.urlsafe_b64encode(raw).decode().rstrip("="))
    assert result.code == "VALIDATION_ERROR" and "cursor" in result.error.details


def test_feed_queries_are_planned_for_their_values_every_time(services, stripe_fake):
    """psycopg prepares a statement run 5 times on a connection, and PostgreSQL may then plan it
    blind to its values: the feed's queries must never be prepared (their best plan depends on
    how big a box is, how common a word)."""
    worker = flows.user(services)
    flows.funded_task(services, stripe_fake, title="Walk my dog", **north(1))
    with services.db.transaction() as conn:  # the feed's transactions nest: one connection
        for _ in range(12):
            for kw in ({"lat": HOME[0], "lng": HOME[1]}, {}, {"q": "dog", "lat": HOME[0], "lng": HOME[1]},
                       {"sort": "price", "lat": HOME[0], "lng": HOME[1]}):
                assert len(feed(services, worker, **kw)["items"]) == 1
        prepared = [r["statement"] for r in conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()]
    assert not [s for s in prepared if "poster_rating_totals" in s or "box(point(" in s], prepared
