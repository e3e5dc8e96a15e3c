"""Feed page latency over 100,000 OPEN, funded tasks spread over a city, on a real embedded
PostgreSQL, through FeedService (the SQL the route runs; the route adds only (de)serialising).

    python benchmarks/bench_feed.py [--tasks 100000] [--n 200] [--rated] [--only 'no position']

Prints p50/p95/p99 in milliseconds per query shape (issue 13 target: p95 < 50 ms for a page),
and the mean CPU time the PostgreSQL server process spent per page: on a machine shared with
other work, wall-clock latency measures the queue for the cores as much as the query.
Tasks are written by SQL in bulk (seeding 100,000 through the services would take hours); the
triggers still check every row. Numbers depend on the machine: compare, do not assert.

The last rows ("route ...") ask GET /api/tasks/feed through the Flask app in process (the
worker's token verified, the page serialised): the whole cost of a page short of the network.

--rated gives 300 of the 500 posters rating totals (1 to 40 ratings, averages up to 5 stars),
written straight into poster_rating_totals as its trigger would have kept them. Relevance is
exact, and its second stage scores every task that could still beat the page's last score, so
posters rated apart widen that neighbourhood: this shows by how much."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = "127.0.0.1:9099"  # tokens from hustlexp.devtools

import psutil
import psycopg

from hustlexp.app import close_app, create_app
from hustlexp.db import Database
from hustlexp.devtools import emulator_token
from hustlexp.services import Services
from tests.pg import TestServer

# A 30 km x 30 km city around (40.73, -73.99).
CENTER = (40.73, -73.99)
SPAN_DEG = (30 / 111.045, 30 / (111.045 * 0.758))
# A vocabulary of 400 words (the spec's and ours, numbered) so that search terms are selective.
WORDS = tuple(f"{w}{n}" if n else w for n in range(20) for w in (
    "assemble", "bookshelf", "walk", "dog", "clean", "kitchen", "move", "couch", "deliver", "groceries",
    "fix", "faucet", "mow", "lawn", "tutor", "math", "photograph", "party", "install", "router"))
# Matches about one task in eight.
BROAD = "dog or walk or clean or fix or move or lawn"
CATEGORIES = ("cleaning", "delivery", "moving", "handyman", "yard_work", "pet_care", "errands", "tech_help",
              "assembly", "tutoring")


def percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(sorted(samples), n=100)
    return f"p50 {q[49]:6.1f} ms   p95 {q[94]:6.1f} ms   p99 {q[98]:6.1f} ms   (n={len(samples)})"


def seed(url: str, count: int, rated: bool = False) -> Any:
    rng = random.Random(13)
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (email, full_name) SELECT 'poster' || n || '@bench.test', 'Poster ' || n "
                     "FROM generate_series(1, 500) n")
        worker = conn.execute("INSERT INTO users (email, full_name) VALUES ('worker@bench.test', 'Worker') "
                              "RETURNING id").fetchone()[0]
        posters = [r[0] for r in conn.execute("SELECT id FROM users WHERE email LIKE 'poster%'").fetchall()]
        with conn.cursor().copy("COPY tasks (poster_id, title, description, category, price, location_lat, "
                                "location_lng, deadline, risk_level, created_at) FROM STDIN") as copy:
            for n in range(count):
                title = " ".join(rng.sample(WORDS, 3)).capitalize()
                copy.write_row((rng.choice(posters), title, f"{title} - {' '.join(rng.sample(WORDS, 6))}",
                                rng.choice(CATEGORIES), rng.randrange(500, 20000),
                                round(CENTER[0] + (rng.random() - 0.5) * SPAN_DEG[0], 7),
                                round(CENTER[1] + (rng.random() - 0.5) * SPAN_DEG[1], 7),
                                now + timedelta(hours=1 + n % 300), rng.choice(("low",) * 8 + ("medium", "high")),
                                now - timedelta(minutes=1 + n % 40000)))
        conn.execute("INSERT INTO escrows (task_id, amount, state, funded_at) "
                     "SELECT id, price, 'PENDING', NULL FROM tasks")
        conn.execute("UPDATE escrows SET state = 'FUNDED', funded_at = now()")
        if rated:
            with conn.cursor().copy("COPY poster_rating_totals (poster_id, ratings, stars) FROM STDIN") as copy:
                for poster in rng.sample(posters, 300):
                    n = rng.randint(1, 40)
                    copy.write_row((poster, n, sum(rng.choice((3, 4, 4, 5, 5, 5)) for _ in range(n))))
        conn.execute("VACUUM ANALYZE")
    return worker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rated", action="store_true", help="give posters rating totals")
    parser.add_argument("--only", default="", help="run only the shapes whose name contains this")
    args = parser.parse_args()
    server = TestServer()
    with server.database() as url:
        started = time.perf_counter()
        worker = seed(url, args.tasks, args.rated)
        print(f"seeded {args.tasks} OPEN funded tasks{', rated posters' if args.rated else ''} "
              f"in {time.perf_counter() - started:.0f} s")
        # One connection, so its server process is the one doing every query: its CPU time per
        # page is what a page costs, however many others share the machine's cores meanwhile.
        db = Database(url, min_size=1, max_size=1).open()
        services = Services(db)
        with db.transaction() as conn:
            backend = psutil.Process(conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])

        def cpu_ms() -> float:
            times = backend.cpu_times()
            return (times.user + times.system) * 1000
        rng = random.Random(7)

        def near() -> dict[str, float]:
            return {"lat": CENTER[0] + (rng.random() - 0.5) * SPAN_DEG[0] * 0.8,
                    "lng": CENTER[1] + (rng.random() - 0.5) * SPAN_DEG[1] * 0.8}

        shapes = {
            "relevance, 5 km": lambda: {**near(), "radius_km": 5},
            "relevance, 40 km (default)": lambda: near(),
            "distance, 5 km": lambda: {**near(), "radius_km": 5, "sort": "distance"},
            "relevance, no position": lambda: {},
            "relevance, no position, page 2": lambda: {"cursor": first_page_cursor},
            "newest, no position": lambda: {"sort": "newest"},
            "newest, 40 km": lambda: {**near(), "sort": "newest"},
            "price, 5 km": lambda: {**near(), "radius_km": 5, "sort": "price"},
            "price, no position": lambda: {"sort": "price"},
            "search 'dog', 10 km": lambda: {**near(), "radius_km": 10, "q": "dog walk"},
            "search 'faucet', no position": lambda: {"q": "faucet", "sort": "newest"},
            "search, 6 words OR'd, 40 km": lambda: {**near(), "q": BROAD},
        }
        first_page_cursor = services.feed.feed(worker).unwrap()["next_cursor"]
        for name, make in shapes.items():
            if args.only not in name:
                continue
            samples, cpu = [], 0.0
            for _ in range(args.n):
                kw = make()
                start, cpu_start = time.perf_counter(), cpu_ms()
                services.feed.feed(worker, **kw).unwrap()
                samples.append((time.perf_counter() - start) * 1000)
                cpu += cpu_ms() - cpu_start
            print(f"{name:32} {percentiles(samples)}   server CPU {cpu / args.n:5.1f} ms/page")
        cursor_samples, cpu = [], 0.0
        second_page = "relevance, 5 km, second page"
        for _ in range(args.n if args.only in second_page else 0):
            kw = {**near(), "radius_km": 5}
            first = services.feed.feed(worker, **kw).unwrap()
            start, cpu_start = time.perf_counter(), cpu_ms()
            services.feed.feed(worker, **kw, cursor=first["next_cursor"]).unwrap()
            cursor_samples.append((time.perf_counter() - start) * 1000)
            cpu += cpu_ms() - cpu_start
        if cursor_samples:
            print(f"{second_page:32} {percentiles(cursor_samples)}   "
                  f"server CPU {cpu / args.n:5.1f} ms/page")
        db.close()
        route(url, worker, args, near)
    server.close()
    return 0


def route(url: str, worker: Any, args: argparse.Namespace, near: Any) -> None:
    """The default page and a rated poster's 40 km page through the HTTP route, in process."""
    shapes = {"route, relevance, 40 km": lambda: near(), "route, relevance, no position": lambda: {}}
    shapes = {name: make for name, make in shapes.items() if args.only in name}
    if not shapes:
        return
    project = "hustlexp-bench"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE users SET firebase_uid = 'bench-worker' WHERE id = %s", (worker,))
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"HUSTLEXP_ENV": "development", "DATABASE_URL": url, "FIREBASE_PROJECT_ID": project,
                          "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099", "HUSTLEXP_STORAGE_DIR": tmp})
        client = app.test_client()
        headers = {"Authorization": f"Bearer {emulator_token('bench-worker', 'worker@bench.test', project)}"}
        for name, make in shapes.items():
            samples = []
            for _ in range(args.n):
                start = time.perf_counter()
                response = client.get("/api/tasks/feed", query_string=make(), headers=headers)
                samples.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.get_json()
            print(f"{name:32} {percentiles(samples)}")
        close_app(app)


if __name__ == "__main__":
    raise SystemExit(main())
