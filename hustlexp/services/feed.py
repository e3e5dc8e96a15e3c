"""The task feed (PRODUCT_SPEC §9, MATCHING_ALGORITHMS): the OPEN tasks a worker can take right
now, searchable, near a position, ranked, in pages of a cursor.

- Eligibility is eligibility.PREDICATE, the very rules `accept` checks.
- Search: PostgreSQL full-text over title and description (tasks_open_search_idx, a GIN index
  on the same expression as SEARCH_DOCUMENT). A search leads with that index and only checks
  the radius on its matches: offered a position's box as well, the planner trusts its fixed
  guess of a box's size and may compute the text of every task in it instead.
- newest and price read their order index (tasks_open_created_idx, tasks_open_price_idx) until
  the page is full, or, with a position whose box holds few tasks, score the box (_few_in_box).
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
- When the extent a first stage leaves still holds many tasks (posters rated far apart leave
  the page's scores far from the ceiling), the second stage scores a narrower extent first: its
  page raises the floor, which usually proves nothing outside can enter; if not, what lies
  beyond is scored under the raised floor and merged (Floor, _staged).
- Cursor pagination: the cursor carries the sort key and id of the last item and the instant the
  first page was scored at, so later pages score with the same clock and skip tasks posted since:
  no item repeats or goes missing while others insert."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hustlexp.errors import ValidationError
from hustlexp.services.base import Service, one, returns_result, trim_page
from hustlexp.services.eligibility import PREDICATE, risk_clearance
from hustlexp.services.user import missing_user

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
# Second stage: when the extent the first stage leaves holds more than SPLIT_ROWS tasks, score
# SPLIT_SHARE of it first (of its radius, or of its deadline window's width): see _staged.
SPLIT_ROWS, SPLIT_SHARE = 4000, 0.75
# newest and price with a position score the whole box when it holds at most this many tasks,
# else walk their order index (_few_in_box).
BOX_SCAN_MAX = 2000

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
    """The cursor's parts, each of its own type (a forged or damaged cursor is a 400, never an
    error from the database)."""
    bad = ValidationError("the cursor is not valid", details={"cursor": ["use next_cursor as returned"]})
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        decoded = {"sort": raw["s"], "key": raw["k"], "id": raw["id"], "as_of": raw["at"]}
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad from None
    if decoded["sort"] != sort:
        raise ValidationError("the cursor belongs to another sort", details={"cursor": [f"made for {decoded['sort']}"]})
    try:
        decoded["key"] = _KEY_TYPES[_ORDER[sort][1]](decoded["key"])
        decoded["id"] = UUID(decoded["id"])
        decoded["as_of"] = _aware(decoded["as_of"])
    except (ValueError, TypeError, AttributeError, OverflowError):
        raise bad from None
    return decoded


def _finite(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _aware(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(value)
    return moment


def _int4(value: str) -> int:
    number = int(value)
    if not -2**31 <= number < 2**31:
        raise ValueError(value)
    return number


# A cursor's key, read back by the type its sort orders on.
_KEY_TYPES: dict[str, Any] = {"float8": _finite, "timestamptz": _aware, "integer": _int4}


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
                raise missing_user()
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
            within: list[str] = []
            if lat is not None:
                params |= _bbox(lat, lng or 0.0, radius)
                # The box itself comes with where the candidates are read from: see _scored.
                within = ["dist.km <= %(radius)s"]
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
            floor = None
            if lat is not None and query is None and sort in ("relevance", "distance"):
                floor = self._near_floor(conn, sort, [*filters, *within], page, params, worker, limit)
            elif lat is None and query is None and sort == "relevance":
                floor = self._due_floor(conn, filters, page, params, worker, limit)
            if floor is None:
                box = [_BOX] if lat is not None and query is None and (
                    sort in ("relevance", "distance") or _few_in_box(conn, params)) else []
                rows = _page(conn, _scored([*filters, *within, *box], lat is not None), page, params, sort)
            else:
                rows = _staged(conn, floor, filters, within, page, params, limit)
        rows, has_more = trim_page(rows, limit)
        next_cursor = None
        if has_more:
            last = rows[-1]
            next_cursor = encode_cursor(sort, last["sort_key"], last["id"], as_of)
        return {"items": [_item(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}

    def _near_floor(self, conn: Any, sort: str, filters: list[str], page: str, params: dict[str, Any],
                    history: dict[str, Any], limit: int) -> Floor | None:
        """First stage with a position: the candidates among the tasks nearest it. Relevance reads
        PROBE tasks (the more, the higher the floor); distance a few more than a page, skipping
        what the cursor passed. None when no floor was found (the second stage then scores the
        whole radius). `history` ({done, recent}: the worker's completed tasks) sets the
        category's ceiling."""
        key, _, direction = _ORDER[sort]
        near = nearest_sql(skip_passed=sort == "distance" and "after_key" in params)
        for row, keys, size in _probes(conn, near, f"max({_DISTANCE})", key, direction == "DESC",
                                       _scored(filters, True, source="probe t"), page, params,
                                       PROBE if sort == "relevance" else 2 * (limit + 1)):
            if len(keys) > limit:
                bound = keys[limit]
                break
            if row["seen"] < size:
                # Every task of the box was seen: the worst key bounds them all (none: an empty
                # page, which an unreachable bound and a zero radius give at once).
                bound = keys[-1] if keys else math.inf if direction == "DESC" else -math.inf
                break
        else:
            return None
        # Tasks per km² of the box around the position, from the disk the probe covered (none
        # left to find when it saw fewer than it asked for).
        density = row["seen"] / (math.pi * row["spread"] ** 2) if row["seen"] >= size and row["spread"] else 0.0
        return _floor("distance" if sort == "relevance" else "key", bound, row["best"], history, params, density)

    def _due_floor(self, conn: Any, filters: list[str], page: str, params: dict[str, Any],
                   history: dict[str, Any], limit: int) -> Floor | None:
        """First stage without a position (relevance, no search). Urgency is the component an
        index orders: the candidates among the tasks due nearest the worker's ideal deadline
        (tasks_open_deadline_idx, from both sides). None when no floor was found (the second
        stage then scores every candidate, as a full scan: tasks with no deadline included)."""
        ideal = params["as_of"] + timedelta(hours=URGENCY_HOURS * (1 - params["urgency_bias"]))
        for row, keys, size in _probes(conn, due_sql(), "date_part('epoch', max(t.deadline) - min(t.deadline)) / 3600",
                                       "f.relevance", True, _scored(filters, False, source="probe t"), page,
                                       params | {"ideal": ideal}, PROBE):
            if len(keys) > limit:
                # Tasks per hour of deadlines around the ideal one.
                density = row["seen"] / row["spread"] if row["seen"] >= size and row["spread"] else 0.0
                return _floor("urgency", keys[limit], row["best"], history, params, density)
            if row["seen"] < size // 2:  # both sides read to their end: a larger read finds no more
                return None
        return None


def _probes(conn: Any, source: str, spread: str, key: str, descending: bool, candidates: str, page: str,
            params: dict[str, Any], size: int) -> Iterator[tuple[dict[str, Any], list[Any], int]]:
    """A first stage's reads, at most PROBE_ROUNDS, each 4 times the size of the last: the
    `size` tasks `source` reads (as `probe`), how many it saw and their `spread` (over `probe t`),
    the keys of the candidates among them after the cursor, best first, and the best poster
    average there is. Yields (row, keys, size); the caller stops when it has its floor."""
    for _ in range(PROBE_ROUNDS):
        row = _planned(conn, f"""WITH probe AS MATERIALIZED ({source})
                                 SELECT (SELECT count(*) FROM probe) AS seen,
                                        (SELECT {spread} FROM probe t) AS spread,
                                        array(SELECT {key} FROM ({candidates}) f WHERE {page}) AS keys,
                                        (SELECT max(stars::float8 / ratings) FROM poster_rating_totals) AS best""",
                       params | {"size": size})
        yield row, sorted(row["keys"], reverse=descending), size
        size *= 4


@dataclass(frozen=True)
class Floor:
    """What a first stage found: no page item's key is worse than `key` (the (limit+1)-th best
    among the candidates it read). That leaves an extent to score: for sort=distance (`staged`
    = "key") the disk of that radius (reach_km); for relevance the disk ("distance", reach_km)
    or deadline window ("urgency", window) outside of which even a task whose other components
    are all at their ceilings (`rest` in all, the poster's part at `poster_ceiling`) scores
    below the key. `density`
    (tasks per km², or per hour of deadlines, as the first stage saw them) foresees what scoring
    an extent costs; 0 when the first stage saw every task there is."""
    staged: str
    key: float
    rest: float
    poster_ceiling: float
    density: float
    radius: float
    as_of: datetime
    bias: float

    def slack(self, key: float) -> float:
        """How far the staged component may fall short of its ceiling, 0..1, for a task to reach key."""
        return max(0.0, min(1.0, 1 - (key - self.rest) / WEIGHTS[self.staged]))

    def key_at(self, slack: float) -> float:
        return self.rest + WEIGHTS[self.staged] * (1 - slack)

    def reach_km(self, key: float) -> float:
        reach = key if self.staged == "key" else self.radius * self.slack(key)
        # Margins: rounding may only ever widen what is scored.
        return max(0.0, min(self.radius, reach * (1 + 1e-9) + 1e-9)) if math.isfinite(reach) else 0.0

    def window(self, key: float) -> tuple[datetime | None, datetime | None]:
        """The deadlines (from, to; None: open) whose urgency reaches what key leaves: urgency is
        1 - |u - bias| with u = clamp(1 - hours_due / URGENCY_HOURS, 0, 1), so it reaches
        1 - slack for u within bias -/+ slack. Widened by a second on each side."""
        slack = self.slack(key - 1e-9 * WEIGHTS["urgency"])
        low, high = max(0.0, self.bias - slack), min(1.0, self.bias + slack)
        second = timedelta(seconds=1)
        return (self.as_of + timedelta(hours=URGENCY_HOURS * (1 - high)) - second if high < 1 else None,
                self.as_of + timedelta(hours=URGENCY_HOURS * (1 - low)) + second if low > 0 else None)

    def cost(self, key: float) -> float:
        """About how many tasks the extent of key holds (its box, or its window)."""
        if self.staged == "urgency":
            start, end = self.window(key)
            if start is None or end is None:
                return math.inf if self.density else 0.0
            return self.density * (end - start) / timedelta(hours=1)
        return self.density * (2 * self.reach_km(key)) ** 2

    def narrower(self) -> float | None:
        """A key whose extent is SPLIT_SHARE of the floor's (radius or window width), when the
        floor's extent holds more than SPLIT_ROWS tasks; None otherwise (or for sort=distance,
        whose floor is already tight)."""
        if self.staged == "key" or self.cost(self.key) <= SPLIT_ROWS:
            return None
        return self.key_at(self.slack(self.key) * SPLIT_SHARE)


def _floor(staged: str, key: float, best_poster: float | None, history: dict[str, Any], params: dict[str, Any],
           density: float) -> Floor:
    """The floor of a first stage with every other component's ceiling: the best poster average
    there is, the category's score from the worker's history, price, urgency and trust at 1, and
    distance at 1 with a position (0 without). The staged component is left out."""
    poster = (max(NEW_POSTER_RATING, best_poster if best_poster is not None else 0.0) - 1) / 4
    distance = 1.0 if params["lat"] is not None else 0.0
    ceilings = {"price": 1.0, "urgency": 1.0, "distance": distance, "trust": 1.0, "poster_rating": poster,
                "category": RECENT_CATEGORY_SCORE if history["recent"] else
                EXPERIENCED_SCORE if history["done"] > 0 else 0.0}
    if staged in WEIGHTS:
        del ceilings[staged]
    rest = sum(WEIGHTS[name] * ceiling for name, ceiling in ceilings.items())
    return Floor(staged, key, rest, poster, density, params["radius"], params["as_of"], params["urgency_bias"])


def _staged(conn: Any, floor: Floor, filters: list[str], within: list[str], page: str, params: dict[str, Any],
            limit: int) -> list[dict[str, Any]]:
    """Second stage: score only the extent the floor leaves. When that extent holds many tasks
    (Floor.narrower), first score a narrower one: its page's (limit+1)-th key is a floor at least
    as high, and usually leaves no more than that narrower extent, which proves the page exact.
    If it does not, score what lies beyond the narrower extent under that higher floor and merge
    the two: the page is the one scoring the whole extent gives."""
    sort = "distance" if floor.staged == "key" else "relevance"
    narrower = floor.narrower()
    if narrower is None:
        return _page(conn, *_round(floor, filters, within, page, params, floor.key, floor.key), sort)
    rows = _page(conn, *_round(floor, filters, within, page, params, narrower, floor.key), sort)
    raised = rows[limit]["sort_key"] if len(rows) > limit else floor.key
    if raised >= narrower:
        return rows
    beyond = _page(conn, *_round(floor, filters, within, page, params, raised, raised, inside=narrower), sort)
    seen = {r["id"] for r in rows}
    merged = [r for r in rows if r["sort_key"] >= raised] + [r for r in beyond if r["id"] not in seen]
    merged.sort(key=lambda r: (r["sort_key"], r["id"]), reverse=True)
    return merged[:limit + 1]


def _round(floor: Floor, filters: list[str], within: list[str], page: str, params: dict[str, Any],
           extent_key: float, key: float, inside: float | None = None) -> tuple[str, str, dict[str, Any]]:
    """(scored, page, params) of a second stage over the extent of extent_key, keeping only
    tasks whose key can reach `key` (<= extent_key's floor), and with `inside` only what lies
    outside the extent of that key."""
    sql_key, _, direction = _ORDER["distance" if floor.staged == "key" else "relevance"]
    page += f" AND {sql_key} {'>=' if direction == 'DESC' else '<='} %(bound)s"
    params = params | {"bound": key, "poster_ceiling": floor.poster_ceiling}
    # Margin: the ceiling may only ever keep a task the exact score would drop.
    extra = [] if floor.staged == "key" else [f"{_RELEVANCE_CEILING} >= %(bound)s - 1e-9"]
    if floor.staged == "urgency":
        start, end = floor.window(extent_key)
        params |= {"due_from": start, "due_to": end}
        if start is not None or end is not None:
            extra.append(_DUE_WINDOW.format(start="due_from", end="due_to"))
        if inside is not None:
            start, end = floor.window(inside)
            params |= {"in_from": start, "in_to": end}
            extra.append(f"NOT coalesce({_DUE_WINDOW.format(start='in_from', end='in_to')}, false)")
        return _scored([*filters, *extra], False), page, params
    lat, lng = params["lat"], params["lng"]
    params |= _bbox(lat, lng, floor.reach_km(extent_key))
    if inside is not None:
        params |= {f"in_{name}": value for name, value in _bbox(lat, lng, floor.reach_km(inside)).items()}
        extra.append(f"NOT coalesce({_POINT} <@ box(point(%(in_min_lng)s, %(in_min_lat)s), "
                     "point(%(in_max_lng)s, %(in_max_lat)s)), false)")
    # Past the radius the distance scores 0: with a key above `rest` no task there reaches it,
    # so the radius needs no check of its own (one distance less to compute per task).
    if floor.staged == "key" or key <= floor.rest + 1e-6:
        extra += within
    return _scored([*filters, *extra, _BOX], True), page, params


# Both ends open or closed: %(start)s / %(end)s are None when that side is unbounded.
_DUE_WINDOW = "(%({start})s::timestamptz IS NULL OR t.deadline >= %({start})s) " \
              "AND (%({end})s::timestamptz IS NULL OR t.deadline <= %({end})s)"


def _few_in_box(conn: Any, params: dict[str, Any]) -> bool:
    """Whether the position's box holds at most BOX_SCAN_MAX OPEN tasks (counted on the point
    index, stopping there). Then newest and price score them all; else they walk their order
    index (tasks_open_created_idx, tasks_open_price_idx) until the page is full, which on a board
    that dense is soon: the cheaper of the two, whatever the radius."""
    row = _planned(conn, f"""SELECT count(*) <= %(box_max)s AS few FROM (
                          SELECT 1 FROM tasks t
                           WHERE t.state = 'OPEN' AND t.location_lat IS NOT NULL AND t.location_lng IS NOT NULL
                             AND {_BOX} LIMIT %(box_max)s + 1) box""", params | {"box_max": BOX_SCAN_MAX})
    return bool(row and row["few"])


def _planned(conn: Any, query: str, params: dict[str, Any], *, every: bool = False) -> Any:
    """The first row (or with `every` all rows) of a feed query, planned for these values every
    time: never a prepared statement. A feed query's best plan depends on its values (how big a
    box is, how common a word); psycopg prepares a query it has run 5 times, and PostgreSQL then
    switches to a generic plan blind to them (a broad search's page went from 30 to 66 ms)."""
    cursor = conn.execute(query, params, prepare=False)
    return cursor.fetchall() if every else cursor.fetchone()


def _page(conn: Any, scored: str, page: str, params: dict[str, Any], sort: str) -> list[dict[str, Any]]:
    """The page (limit+1 rows, the last only says there is more) of the scored candidates after
    the cursor, best first, with what an item shows."""
    key, _, direction = _ORDER[sort]
    rows: list[dict[str, Any]] = _planned(conn, f"""
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
         ORDER BY f.sort_key {direction}, f.id {direction}""", params, every=True)
    return rows


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
    Where they are read from is the caller's choice: add _BOX to the filters to read a position's
    box from the point index (in its own expression); leave it out where `source` already holds
    only tasks of the box (the first stage's nearest) or another index should lead (search, an
    order walk), since the planner's estimate of a box is a fixed guess, not a count. Every
    fragment is a constant of this module or eligibility's; request values travel as parameters."""
    distance = _DISTANCE if positioned else "NULL::float8"
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
