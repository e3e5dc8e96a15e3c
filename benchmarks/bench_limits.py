"""What a shared request limit costs each request: `RateLimits.hit` (one UPSERT on the
UNLOGGED rate_limit_counters table) against a bare `SELECT 1` round trip on the same pool, on an
embedded PostgreSQL. Measured with one caller and with 8 threads hitting distinct keys and one
shared key (a hot key serialises on its row lock).

    python benchmarks/bench_limits.py [--n 3000] [--rounds 3]

Prints microseconds per call (best of the rounds); the difference is the limit's own cost.
Numbers depend on the machine; they are for comparing changes, not for asserting."""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hustlexp.db import Database
from hustlexp.services import Services
from tests.pg import TestServer


def _per_call_us(fn, n: int, threads: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    if threads == 1:
        for i in range(n):
            fn(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, range(n)))
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = TestServer()
    try:
        with server.database() as url:
            db = Database(url, min_size=8, max_size=8).open()
            services = Services(db)
            limits = services.limits

            def bare(i: int) -> None:
                with db.one_statement() as conn:
                    conn.execute("SELECT 1").fetchone()

            cases = {
                "SELECT 1 (baseline)": (bare, 1),
                "limit hit, one caller": (lambda i: limits.hit("writes", f"user-{i % 500}"), 1),
                "SELECT 1, 8 threads": (bare, 8),
                "limit hit, 8 threads, distinct keys": (lambda i: limits.hit("writes", f"user-{i % 500}"), 8),
                "limit hit, 8 threads, one hot key": (lambda i: limits.hit("writes", "hot"), 8),
            }
            best = {name: float("inf") for name in cases}
            for _ in range(args.rounds):
                for name, (fn, threads) in cases.items():
                    best[name] = min(best[name], _per_call_us(fn, args.n, threads))
            db.close()
    finally:
        server.close()
    width = max(map(len, best))
    for name, us in best.items():
        print(f"{name:<{width}}  {us:8.1f} us/call")
    print(f"{'limit cost per request (one caller)':<{width}}  "
          f"{best['limit hit, one caller'] - best['SELECT 1 (baseline)']:8.1f} us over a bare round trip")


if __name__ == "__main__":
    main()
