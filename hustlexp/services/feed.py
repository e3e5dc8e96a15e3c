"""The task feed (PRODUCT_SPEC §9, MATCHING_ALGORITHMS): the OPEN tasks a worker can take right
now, searchable, near a position, ranked, in pages of a cursor.

- Eligibility is eligibility.PREDICATE, the very rules `accept` checks.
- Search: PostgreSQL full-text over title and description (tasks_search_idx, a GIN index on the
  same expression as SEARCH_DOCUMENT).
- Geo without extensions: a bounding box the GiST point index answers, then the haversine
  distance for the exact radius and the distance score.
- Relevance: MATCHING_ALGORITHMS' components weighted by WEIGHTS, the one place to tune them.
  The poster rating is the average of poster_rating_totals (kept by a trigger: what workers
  rated the poster, counted once the task's pair of ratings is complete, so a rating whose
  window closed counts from the hourly auto-rating on), never an aggregate per request.
- Two stages with a position (relevance and distance, no search). First, the candidates among
  the tasks nearest the position (the point index streams them nearest first) give the
  (limit+1)-th best key: no page item can be worse. Second, only what can still reach that
  bound is scored: for distance the disk of that radius; for relevance the disk outside of
  which even a task with every other component at its ceiling (the best poster average there
  is) scores below it, and inside it only tasks whose score with the poster at that ceiling
  reaches it get their poster looked up. The page is exactly the one scoring the whole radius
  gives; the work is a neighbourhood, whose size grows with how far the page's scores are
  from the ceiling (posters rated far apart widen it: bench_feed.py --rated).
- Two stages without a position (relevance, no search), the same idea on the component an
  index orders: urgency, a function of the deadline (tasks_open_deadline_idx). The candidates
  among the tasks due nearest the worker's ideal deadline give the (limit+1)-th best score;
  with every other component at its ceiling, a task reaches it only inside a deadline window,
  and inside it only tasks whose score with the poster at its ceiling reaches it are scored.
  Same pages as scoring every candidate; the work grows with how far the page's scores are
  from the ceiling (bench_feed.py --only 'no position').
- Cursor pagination: the cursor carries the sort key and id of the last item and the instant the
  first page was scored at, so later pages score with the same clock and skip tasks posted since:
  no item repeats or goes missing while others insert."""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import datetime, timedelta
from typing import Any

from hustlexp.errors import NotFound, ValidationError
from hustlexp.services.base import Service, one, returns_result
from hustlexp.services.eligibility import PREDICATE, risk_clearance

SORTS = ("relevance", "distance", "newest", "price")
DEFAULT_LIMIT, MAX_LIMIT = 20, 50
DEFAULT_RADIUS_KM, MAX_RADIUS_KM = 40.0, 200.0  # 40 km ~ the spec's 25-mile scoring radius
KM_PER_DEGREE_LAT = 111.045
EARTH_RADIUS_KM = 6371.0

# Relevance = sum of component x weight (MATCHING_ALGORITHMS "Component Weights"); sums to 1.
WEIGHTS = {"distance": 0.25, "price": 0.20, "category": 0.20, "poster_rating": 0.15, "urgency": 0.10,
           "trust": 0.10}
# Category medians in cents (MATCHING_ALGORITHMS "Price Attractiveness"); others use DEFAULT_MEDIAN.
CATEGORY_MEDIANS = {"cleaning": 5000, "moving": 12000, "delivery": 2500, "handyman": 7500, "errands": 2000,
                    "tech_help": 6000, "yard_work": 6500, "pet_care": 3500, "other": 5000}
DEFAULT_MEDIAN = 5000
RECENT_CATEGORY_SCORE, EXPERIENCED_SCORE = 0.6, 0.2  # recently done this category / has done any
NEW_POSTER_RATING = 4.0  # a poster with no rating counted yet counts as 4 stars (score 0.75)
URGENCY_HOURS = 168.0
NEUTRAL_URGENCY_BIAS = 0.5
# First stage: how many nearest tasks relevance reads (more give a tighter bound, so a smaller
# second stage, but cost more themselves), and how often it reads 4 times more when too few of
# them are candidates.
PROBE, PROBE_ROUNDS = 300, 3

# Must be the expression tasks_search_idx indexes, character for character.
SEARCH_DOCUMENT = "to_tsvector('english', t.title || ' ' || t.description)"

# What ranking and eligibility read of a task: all in tasks_open_point_idx (key or INCLUDE).
_RANKED_COLUMNS = ("t.id, t.poster_id, t.price, t.category, t.deadline, t.created_at, t.risk_level, "
                   "t.required_trust_tier, t.state, t.location_lat, t.location_lng")
# The index expression of tasks_open_point_idx, character for character. Coordinates are read
# back from it ([0] lng, [1] lat): float8 already, where casting the numeric columns per row
# would cost more than the trigonometry.
_POINT = "point(t.location_lng::float8, t.location_lat::float8)"

_BOX = f"{_POINT} <@ box(point(%(min_lng)s, %(min_lat)s), point(%(max_lng)s, %(max_lat)s))"

_DISTANCE = f"""(2 * %(earth_km)s * asin(sqrt(
    power(sin(radians(({_POINT})[1] - %(lat)s) / 2), 2)
    + cos(radians(%(lat)s)) * cos(radians(({_POINT})[1]))
      * power(sin(radians(({_POINT})[0] - %(lng)s) / 2), 2))))"""

# float8, not numeric: numeric arithmetic would be most of the cost of scoring a task.
_MEDIAN = "(CASE t.category " + " ".join(
    f"WHEN '{name}' THEN {cents}" for name, cents in sorted(CATEGORY_MEDIANS.items())
) + f" ELSE {DEFAULT_MEDIAN} END)::float8"

_COMPONENTS = {
    "distance": "CASE WHEN %(lat)s::float8 IS NULL THEN 0 ELSE greatest(0, 1 - dist.km / %(radius)s) END",
    "price": f"least(1, greatest(0, (t.price::float8 - 0.5 * ({_MEDIAN})) / (1.5 * ({_MEDIAN}))))",
    "category": "CASE WHEN t.category = ANY(%(recent_categories)s) THEN %(recent_score)s "
                "WHEN %(experienced)s THEN %(experienced_score)s ELSE 0 END",
    "poster_rating": "(coalesce(pr.stars::float8 / pr.ratings, %(new_poster)s) - 1) / 4",
    "urgency": "CASE WHEN t.deadline IS NULL THEN 0 ELSE 1 - abs(least(1, greatest(0, 1 - "
               "date_part('epoch', t.deadline - %(as_of)s) / 3600 / %(urgency_hours)s)) - %(urgency_bias)s) END",
    # Every task that passes eligibility clears the worker's tier: full compatibility.
    "trust": "1",
}


def _relevance(components: dict[str, str]) -> str:
    return "(" + " + ".join(f"({sql}) * %(w_{name})s" for name, sql in components.items()) + ")"


# float8 throughout: the same inputs give the same bits, so a cursor's key compares exactly
# and the second stage finds the first stage's bound again.
_RELEVANCE = _relevance(_COMPONENTS)
# The same with the poster's part at its ceiling: computed from the index alone, it lets the
# second stage drop a task before looking its poster up.
_RELEVANCE_CEILING = _relevance(_COMPONENTS | {"poster_rating": "%(poster_ceiling)s"})

# sort -> (key over the scored rows `f`, its type, direction). Ties break on the id, same direction.
_ORDER = {
    "relevance": ("f.relevance", "float8", "DESC"),
    "distance": ("f.distance_km", "float8", "ASC"),
    "newest": ("f.created_at", "timestamptz", "DESC"),
    "price": ("f.price", "integer", "DESC"),
}


def encode_cursor(sort: str, key: Any, task_id: Any, as_of: datetime) -> str:
    raw = json.dumps({"s": sort, "k": str(key), "id": str(task_id), "at": as_of.isoformat()})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> dict[str, Any]:
    bad = ValidationError("the cursor is not valid", details={"cursor": ["use next_cursor as returned"]})
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        decoded = {"sort": raw["s"], "key": raw["k"], "id": raw["id"], "as_of": datetime.fromisoformat(raw["at"])}
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad from None
    if decoded["sort"] != sort:
        raise ValidationError("the cursor belongs to another sort", details={"cursor": [f"made for {decoded['sort']}"]})
    return decoded


def _bbox(lat: float, lng: float, radius_km: float) -> dict[str, float]:
    dlat = radius_km / KM_PER_DEGREE_LAT
    dlng = radius_km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    return {"min_lat": lat - dlat, "max_lat": lat + dlat, "min_lng": lng - dlng, "max_lng": lng + dlng}


def _check(lat: Any, lng: Any, radius_km: Any, sort: str, limit: Any, min_price: Any, max_price: Any) -> None:
    errors: dict[str, list[str]] = {}
    if (lat is None) != (lng is None):
        errors["lat" if lat is None else "lng"] = ["lat and lng go together"]
    if lat is not None and not -90 <= lat <= 90:
        errors["lat"] = ["-90..90"]
    if lng is not None and not -180 <= lng <= 180:
        errors["lng"] = ["-180..180"]
    if radius_km is not None and (lat is None or not 0 < radius_km <= MAX_RADIUS_KM):
        errors["radius_km"] = [f"0 < radius_km <= {MAX_RADIUS_KM:g}, with lat and lng"]
    if sort not in SORTS:
        errors["sort"] = [f"one of {', '.join(SORTS)}"]
    elif sort == "distance" and lat is None:
        errors["sort"] = ["distance needs lat and lng"]
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        errors["limit"] = [f"1..{MAX_LIMIT}"]
    if min_price is not None and max_price is not None and min_price > max_price:
        errors["max_price"] = ["at least min_price"]
    if errors:
        raise ValidationError("the feed query is not valid", details=errors)


class FeedService(Service):
    @returns_result
    def feed(self, worker_id: Any, *, lat: float | None = None, lng: float | None = None,
             radius_km: float | None = None, q: str | None = None, category: str | None = None,
             min_price: int | None = None, max_price: int | None = None, sort: str = "relevance",
             cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """{items, next_cursor, has_more}. An item is a task summary with its poster
        {id, full_name, avatar_url, trust_tier, is_verified, average_rating}, distance_km (None
        without a position) and relevance_score (0..1)."""
        _check(lat, lng, radius_km, sort, limit, min_price, max_price)
        after = decode_cursor(cursor, sort) if cursor else None
        as_of = after["as_of"] if after else self.s.clock()
        radius = radius_km if radius_km is not None else DEFAULT_RADIUS_KM
        query = (q or "").strip() or None
        with self.db.transaction() as conn:
            # One round trip per stage: on a busy machine each costs more than the query.
            worker = one(conn, """SELECT u.id, u.trust_tier, u.urgency_bias, h.done, h.recent
                                    FROM users u CROSS JOIN LATERAL (
                                         SELECT count(*) AS done,
                                                coalesce(array_agg(DISTINCT category) FILTER (
                                                    WHERE completed_at >= %s - interval '30 days'
                                                      AND category IS NOT NULL), '{}') AS recent
                                           FROM tasks WHERE worker_id = u.id AND state = 'COMPLETED') h
                                   WHERE u.id = %s""", (as_of, worker_id))
            if worker is None:
                raise NotFound("No such user.", code="HX504")
            params: dict[str, Any] = {
                "viewer": worker_id, "risk_clearance": risk_clearance(worker["trust_tier"]),
                "lat": lat, "lng": lng, "radius": radius, "earth_km": EARTH_RADIUS_KM, "q": query,
                "category": category, "min_price": min_price, "max_price": max_price, "as_of": as_of,
                "recent_categories": list(worker["recent"]), "experienced": worker["done"] > 0,
                "recent_score": RECENT_CATEGORY_SCORE, "experienced_score": EXPERIENCED_SCORE,
                "new_poster": NEW_POSTER_RATING, "urgency_hours": URGENCY_HOURS,
                "urgency_bias": float(worker["urgency_bias"]) if worker["urgency_bias"] is not None
                else NEUTRAL_URGENCY_BIAS, "limit": limit + 1,
                **{f"w_{name}": weight for name, weight in WEIGHTS.items()},
            }
            filters = ["t.created_at <= %(as_of)s"]
            if lat is not None:
                params |= _bbox(lat, lng or 0.0, radius)
                # The box itself comes with where the candidates are read from: see _scored.
                filters.append("dist.km <= %(radius)s")
            if query is not None:
                filters.append(f"{SEARCH_DOCUMENT} @@ websearch_to_tsquery('english', %(q)s)")
            for name, clause in (("category", "t.category = %(category)s"), ("min_price", "t.price >= %(min_price)s"),
                                 ("max_price", "t.price <= %(max_price)s")):
                if params[name] is not None:
                    filters.append(clause)
            key, key_type, direction = _ORDER[sort]
            page = "TRUE"
            if after is not None:
                params |= {"after_key": after["key"], "after_id": after["id"]}
                op = "<" if direction == "DESC" else ">"
                page = f"({key}, f.id) {op} (%(after_key)s::{key_type}, %(after_id)s::uuid)"
            scored = _scored(filters, lat is not None)
            reach = None
            if lat is not None and query is None and sort in ("relevance", "distance"):
                reach = self._reach(conn, sort, filters, page, params, worker, limit)
            elif lat is None and query is None and sort == "relevance":
                window = self._window(conn, filters, page, params, worker, limit)
                if window is not None:
                    params |= window
                    page += " AND f.relevance >= %(bound)s"
                    due = [f"t.deadline {op} %({name})s" for name, op in (("due_from", ">="), ("due_to", "<="))
                           if window[name] is not None]
                    scored = _scored([*filters, *(due if window["urgency_floor"] > 0 else []),
                                      f"{_RELEVANCE_CEILING} >= %(bound)s - 1e-9"], False)
            if reach is not None and lat is not None:
                bound, reach_km, poster_ceiling = reach
                params |= _bbox(lat, lng or 0.0, reach_km) | {"bound": bound, "poster_ceiling": poster_ceiling}
                page += f" AND {key} {'>=' if direction == 'DESC' else '<='} %(bound)s"
                if sort == "relevance":
                    # Margin: the ceiling may only ever keep a task the exact score would drop.
                    scored = _scored([*filters, f"{_RELEVANCE_CEILING} >= %(bound)s - 1e-9"], True)
            rows = conn.execute(f"""
                WITH page AS (
                    SELECT f.*, {key} AS sort_key FROM ({scored}) f
                     WHERE {page}
                     ORDER BY {key} {direction}, f.id {direction}
                     LIMIT %(limit)s)
                SELECT f.id, f.sort_key, f.relevance, f.distance_km, t.title, t.description, t.category, t.price,
                       t.mode, t.location, t.location_lat, t.location_lng, t.deadline, t.risk_level,
                       t.required_trust_tier, t.created_at, t.poster_id, p.full_name AS poster_name,
                       p.avatar_url AS poster_avatar_url, p.trust_tier AS poster_trust_tier,
                       p.is_verified AS poster_is_verified, f.poster_average_rating
                  FROM page f JOIN tasks t ON t.id = f.id JOIN users p ON p.id = t.poster_id
                 ORDER BY f.sort_key {direction}, f.id {direction}""", params).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if has_more:
            last = rows[-1]
            next_cursor = encode_cursor(sort, last["sort_key"], last["id"], as_of)
        return {"items": [_item(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}

    def _reach(self, conn: Any, sort: str, filters: list[str], page: str, params: dict[str, Any],
               history: dict[str, Any], limit: int) -> tuple[float, float, float] | None:
        """First stage. The (limit+1)-th best key among the candidates of the tasks nearest the
        position bounds the page's last key, which puts the page within a radius: returns
        (bound, that radius, the poster component's ceiling), or None when no bound was found
        (the second stage then scores the whole radius). Relevance reads PROBE tasks (the more,
        the tighter the bound); distance a few more than a page, skipping what the cursor passed.
        `history` ({done, recent}: the worker's completed tasks) sets the category's ceiling."""
        key, _, direction = _ORDER[sort]
        size = PROBE if sort == "relevance" else 2 * (limit + 1)
        near = nearest_sql(skip_passed=sort == "distance" and "after_key" in params)
        candidates = _scored(filters, True, source="near t")
        for _ in range(PROBE_ROUNDS):
            row = one(conn, f"""WITH near AS MATERIALIZED ({near})
                                SELECT (SELECT count(*) FROM near) AS seen,
                                       array(SELECT {key} FROM ({candidates}) f WHERE {page}) AS keys,
                                       (SELECT max(stars::float8 / ratings) FROM poster_rating_totals) AS best""",
                      params | {"size": size})
            assert row is not None
            keys = sorted(row["keys"], reverse=direction == "DESC")
            if len(keys) > limit:
                bound = keys[limit]
                break
            if row["seen"] < size:
                # Every task of the box was seen: the worst key bounds them all (none: an empty
                # page, which an unreachable bound and a zero radius give at once).
                bound = keys[-1] if keys else math.inf if direction == "DESC" else -math.inf
                break
            size *= 4
        else:
            return None
        radius = params["radius"]
        if sort == "distance":
            return bound, max(0.0, min(radius, bound * (1 + 1e-9) + 1e-9)), 1.0
        # Relevance: beyond `reach` km, even a task at every other component's ceiling scores
        # below the bound: w_distance * (1 - d / radius) + rest < bound  <=>  d > reach.
        best_poster = max(NEW_POSTER_RATING, row["best"] if row["best"] is not None else 0.0)
        ceilings = {"price": 1.0, "urgency": 1.0, "trust": 1.0, "poster_rating": (best_poster - 1) / 4,
                    "category": RECENT_CATEGORY_SCORE if history["recent"] else
                    EXPERIENCED_SCORE if history["done"] > 0 else 0.0}
        rest = sum(WEIGHTS[name] * ceiling for name, ceiling in ceilings.items())
        reach = radius * (1 - (bound - rest) / WEIGHTS["distance"]) if math.isfinite(bound) else 0.0
        return bound, max(0.0, min(radius, reach * (1 + 1e-9) + 1e-9)), ceilings["poster_rating"]


    def _window(self, conn: Any, filters: list[str], page: str, params: dict[str, Any],
                history: dict[str, Any], limit: int) -> dict[str, Any] | None:
        """First stage without a position (relevance, no search). Urgency is the component an
        index orders: the candidates among the tasks due nearest the worker's ideal deadline
        (tasks_open_deadline_idx, from both sides) give the (limit+1)-th best score, a floor for
        the page's last one. A task reaches it only if its urgency reaches what the floor leaves
        once every other component is at its ceiling: a deadline window, widened by a second on
        each side. Returns {bound, poster_ceiling, urgency_floor, due_from, due_to} (a None end
        is open; urgency_floor <= 0 means no window), or None when no floor was found (the
        second stage then scores every candidate, as a full scan)."""
        bias, as_of = params["urgency_bias"], params["as_of"]
        ideal = as_of + timedelta(hours=URGENCY_HOURS * (1 - bias))
        size = PROBE
        candidates = _scored(filters, False, source="due t")
        for _ in range(PROBE_ROUNDS):
            row = one(conn, f"""WITH due AS MATERIALIZED ({due_sql()})
                                SELECT array(SELECT f.relevance FROM ({candidates}) f WHERE {page}) AS keys,
                                       (SELECT max(stars::float8 / ratings) FROM poster_rating_totals) AS best""",
                      params | {"size": size, "ideal": ideal})
            assert row is not None
            keys = sorted(row["keys"], reverse=True)
            if len(keys) > limit:
                bound = keys[limit]
                break
            size *= 4
        else:
            return None
        best_poster = max(NEW_POSTER_RATING, row["best"] if row["best"] is not None else 0.0)
        ceilings = {"price": 1.0, "trust": 1.0, "poster_rating": (best_poster - 1) / 4,
                    "category": RECENT_CATEGORY_SCORE if history["recent"] else
                    EXPERIENCED_SCORE if history["done"] > 0 else 0.0}
        rest = sum(WEIGHTS[name] * ceiling for name, ceiling in ceilings.items())
        # urgency = 1 - |u - bias| with u = clamp(1 - hours_due / URGENCY_HOURS, 0, 1): it
        # reaches `floor` for u within bias -/+ (1 - floor), i.e. a range of deadlines.
        floor = (bound - rest) / WEIGHTS["urgency"] - 1e-9
        low, high = max(0.0, bias - (1 - floor)), min(1.0, bias + (1 - floor))
        second = timedelta(seconds=1)
        return {"bound": bound, "poster_ceiling": ceilings["poster_rating"], "urgency_floor": floor,
                "due_from": as_of + timedelta(hours=URGENCY_HOURS * (1 - high)) - second if high < 1 else None,
                "due_to": as_of + timedelta(hours=URGENCY_HOURS * (1 - low)) + second if low > 0 else None}


def due_sql() -> str:
    """The %(size)s OPEN tasks due nearest %(ideal)s, half from each side (posted by %(as_of)s),
    with what ranking reads: two walks of tasks_open_deadline_idx."""
    side = f"""SELECT {_RANKED_COLUMNS} FROM tasks t
                WHERE t.state = 'OPEN' AND t.deadline {{op}} %(ideal)s AND t.created_at <= %(as_of)s
                ORDER BY t.deadline {{direction}} LIMIT %(size)s / 2"""
    return (f"({side.format(op='>=', direction='ASC')}) UNION ALL "
            f"({side.format(op='<', direction='DESC')})")


def nearest_sql(*, skip_passed: bool = False) -> str:
    """The %(size)s OPEN tasks nearest (lat, lng) in the box, posted by %(as_of)s (with
    skip_passed, none nearer than %(after_key)s km), with what ranking reads. Read alone,
    first: the point index streams them in order and holds every column asked (no table
    visit), where planned together with the candidates' joins a misestimated box could have
    the whole radius sorted instead."""
    skip = f"AND {_DISTANCE} >= %(after_key)s::float8" if skip_passed else ""
    return f"""SELECT {_RANKED_COLUMNS} FROM tasks t
                WHERE t.state = 'OPEN' AND t.location_lat IS NOT NULL AND t.location_lng IS NOT NULL
                  AND {_BOX} AND t.created_at <= %(as_of)s {skip}
                ORDER BY {_POINT} <-> point(%(lng)s, %(lat)s) LIMIT %(size)s"""


def _scored(filters: list[str], positioned: bool, source: str = "tasks t") -> str:
    """The candidates (eligible, filtered) with the few columns ranking needs and their score.
    With a position they come from the box (the point index answers it, in its own expression),
    or from `source` when that already holds only tasks of the box (the first stage's nearest):
    then no box is offered to the planner, whose estimate of one is a guess and could make it
    read the whole box again. Every fragment is a constant of this module or eligibility's;
    request values travel as parameters."""
    distance = _DISTANCE if positioned else "NULL::float8"
    if positioned and source == "tasks t":
        filters = [*filters, _BOX]
    return f"""
        SELECT t.id, t.created_at, t.price, dist.km AS distance_km, {_RELEVANCE} AS relevance,
               pr.stars::float8 / pr.ratings AS poster_average_rating
          FROM {source}
          JOIN escrows e ON e.task_id = t.id
          JOIN users u ON u.id = %(viewer)s
          CROSS JOIN LATERAL (SELECT {distance} AS km) dist
          LEFT JOIN poster_rating_totals pr ON pr.poster_id = t.poster_id
         WHERE {PREDICATE} AND {" AND ".join(filters)}"""


def _item(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "title": row["title"], "description": row["description"], "category": row["category"],
            "price": row["price"], "mode": row["mode"], "location": row["location"],
            "location_lat": row["location_lat"], "location_lng": row["location_lng"], "deadline": row["deadline"],
            "risk_level": row["risk_level"], "required_trust_tier": row["required_trust_tier"],
            "created_at": row["created_at"],
            "distance_km": round(row["distance_km"], 3) if row["distance_km"] is not None else None,
            "relevance_score": round(row["relevance"], 4),
            "poster": {"id": row["poster_id"], "full_name": row["poster_name"],
                       "avatar_url": row["poster_avatar_url"], "trust_tier": row["poster_trust_tier"],
                       "is_verified": row["poster_is_verified"],
                       "average_rating": round(row["poster_average_rating"], 2)
                       if row["poster_average_rating"] is not None else None}}
