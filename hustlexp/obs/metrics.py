"""Prometheus metrics, safe under gunicorn's worker processes.

`hustlexp serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker
starts, so every worker writes its samples to files there and any worker answering
GET /metrics reports the sum of all of them (prometheus_client's multiprocess mode). Without
the variable (tests, a single process) the default registry is used.

Per request: one histogram sample (route template, method, status). Sampled at most once a
second per process: the connection pool's size, use and waiting requests. Read from the
database only when scraped: money_outbox rows by status and the oldest pending one's age,
job lag, the newest job-worker heartbeat."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_LATENCY = Histogram(
    "hustlexp_http_request_duration_seconds", "Request latency by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
WEBHOOK_OUTCOMES = Counter("hustlexp_stripe_webhooks_total", "Stripe webhook deliveries by outcome.", ["outcome"])
POOL_SIZE = Gauge("hustlexp_db_pool_size", "Connections open in the pool.", multiprocess_mode="livesum")
POOL_IN_USE = Gauge("hustlexp_db_pool_in_use", "Connections lent out.", multiprocess_mode="livesum")
POOL_MAX = Gauge("hustlexp_db_pool_max", "The pool's maximum size.", multiprocess_mode="livesum")
POOL_WAITING = Gauge("hustlexp_db_pool_waiting", "Requests waiting for a connection.", multiprocess_mode="livesum")
WORKER_UP = Gauge("hustlexp_api_worker_up", "1 per live API process (pid label in multiprocess mode).",
                  multiprocess_mode="liveall")

POOL_SAMPLE_SECONDS = 1.0
_last_pool_sample = 0.0


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


# (route, method, status) -> its histogram child: labels() takes a lock and checks its
# arguments on every call. Bounded: route templates x methods x statuses.
_latency_children: dict[tuple[str, str, int], Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    child = _latency_children.get(key)
    if child is None:
        child = _latency_children[key] = REQUEST_LATENCY.labels(route, method, str(status))
    child.observe(seconds)


def sample_pool(pool: Any) -> None:
    """The pool's gauges, refreshed at most once a second per process (cheap on the request path)."""
    global _last_pool_sample
    now = time.monotonic()
    if now - _last_pool_sample < POOL_SAMPLE_SECONDS:
        return
    _last_pool_sample = now
    stats = pool.get_stats()
    size = stats.get("pool_size", 0)
    POOL_SIZE.set(size)
    POOL_IN_USE.set(size - stats.get("pool_available", 0))
    POOL_MAX.set(stats.get("pool_max", 0))
    POOL_WAITING.set(stats.get("requests_waiting", 0))


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time (`snapshot` is ReadinessService's)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot()
        rows = GaugeMetricFamily("hustlexp_outbox_rows", "money_outbox rows by status.", labels=["status"])
        for status, n in sorted(snap["outbox_by_status"].items()):
            rows.add_metric([status], n)
        yield rows
        for name, key, doc in (
                ("hustlexp_outbox_oldest_pending_age_seconds", "oldest_pending_age_seconds",
                 "Age of the oldest money movement not yet sent."),
                ("hustlexp_job_lag_seconds", "job_lag_seconds", "How long the oldest due job has waited."),
                ("hustlexp_job_worker_heartbeat_age_seconds", "worker_heartbeat_age_seconds",
                 "Seconds since a job worker last reported.")):
            value = snap.get(key)
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))


def exposition(snapshot: Callable[[], dict[str, Any]]) -> tuple[bytes, str]:
    """The scrape body: every process's samples (multiprocess) or this one's, plus the
    database gauges."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(snapshot))
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST


def worker_started() -> None:
    WORKER_UP.set(1)


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges stop counting."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)
