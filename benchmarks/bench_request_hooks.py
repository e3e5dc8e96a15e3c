"""What the observability hook costs each request: the same trivial route on a bare Flask app,
with and without hustlexp.obs.access (request id, JSON access line, latency histogram, pool
sample). No database: only the hook's own cost is measured.

    python benchmarks/bench_request_hooks.py [--n 5000] [--rounds 4]

Prints microseconds per request for both (best of the rounds) and the difference. Numbers depend on the machine;
they are for comparing changes, not for asserting."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask

from hustlexp.obs.access import init_request_log
from hustlexp.obs.logs import ACCESS_LOGGER, JsonFormatter


class _Pool:
    def get_stats(self) -> dict[str, int]:
        return {"pool_size": 4, "pool_available": 3, "pool_max": 10, "requests_waiting": 0}


def _app(hooked: bool) -> Flask:
    app = Flask("bench")
    app.add_url_rule("/ping", "ping", lambda: "pong")
    if hooked:
        init_request_log(app, _Pool())
    return app


def _per_request_us(app: Flask, n: int) -> float:
    client = app.test_client()
    for _ in range(200):  # warm up
        client.get("/ping")
    start = time.perf_counter()
    for _ in range(n):
        client.get("/ping")
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    # The access line is formatted as JSON and written, as in production (to a null stream).
    handler = logging.StreamHandler(open("/dev/null", "w"))  # noqa: SIM115
    handler.setFormatter(JsonFormatter())
    logging.getLogger(ACCESS_LOGGER).addHandler(handler)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    logging.getLogger(ACCESS_LOGGER).propagate = False
    # Interleaved rounds, best of each: a shared machine's noise hits both sides alike.
    bare = hooked = float("inf")
    for _ in range(args.rounds):
        hooked = min(hooked, _per_request_us(_app(True), args.n))
        bare = min(bare, _per_request_us(_app(False), args.n))
    print(f"bare flask:   {bare:8.1f} us/request")
    print(f"with hooks:   {hooked:8.1f} us/request")
    print(f"hook cost:    {hooked - bare:8.1f} us/request")


if __name__ == "__main__":
    main()
