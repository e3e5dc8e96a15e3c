"""GET /metrics under `hustlexp serve` with two gunicorn workers: whichever worker answers
the scrape reports the samples of both (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.api.test_serve import HUSTLEXP, START_TIMEOUT, free_port, wait_for_health

HEALTH_CALLS = 40


def _json_or_none(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _worker_pids(body: str) -> set[str]:
    return set(re.findall(r'hustlexp_api_worker_up\{pid="(\d+)"\} 1\.0', body))


def _health_count(body: str) -> float:
    found = re.search(r'hustlexp_http_request_duration_seconds_count\{method="GET",route="/health",'
                      r'status="200"\} ([0-9.e+]+)', body)
    assert found, body[:2000]
    return float(found.group(1))


def _wait_for_both_workers(base: str, proc: subprocess.Popen[bytes]) -> None:
    """The second worker may still be importing when the first answers; each reports itself
    (hustlexp_api_worker_up) once its app is built."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "hustlexp serve exited"
        if len(_worker_pids(requests.get(f"{base}/metrics", timeout=10).text)) == 2:
            return
        time.sleep(0.5)
    raise AssertionError("the second worker never reported")


def test_metrics_add_up_across_two_gunicorn_workers(tmp_path: Path, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIREBASE_AUTH_EMULATOR_HOST", "STRIPE_API_BASE", "PROMETHEUS_MULTIPROC_DIR")}
    env |= {"HUSTLEXP_ENV": "development", "DATABASE_URL": db_url, "HUSTLEXP_STORAGE_DIR": str(tmp_path / "up"),
            "HUSTLEXP_LOG_FORMAT": "json"}
    port = free_port()
    proc = subprocess.Popen([*HUSTLEXP, "serve", "--port", str(port), "--workers", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc)
        _wait_for_both_workers(base, proc)
        before = _health_count(requests.get(f"{base}/metrics", timeout=10).text)
        for n in range(HEALTH_CALLS):
            # A new connection each time, so both workers take some of them.
            answer = requests.get(f"{base}/health", timeout=10,
                                  headers={"Connection": "close", "X-Request-ID": f"probe-{n}"})
            assert answer.status_code == 200 and answer.headers["X-Request-ID"] == f"probe-{n}"
        for _ in range(6):
            scraped = requests.get(f"{base}/metrics", timeout=10, headers={"Connection": "close"})
            assert scraped.status_code == 200
            body = scraped.text
            assert len(_worker_pids(body)) == 2, body[:3000]  # both workers' files are read
            assert _health_count(body) == before + HEALTH_CALLS
            assert "hustlexp_outbox_rows" in body
            # 24 threads a worker (the default), each worker's pool capped at 16 connections.
            pool_max = re.search(r"^hustlexp_db_pool_max ([0-9.e+]+)$", body, re.M)
            assert pool_max and float(pool_max.group(1)) == 2 * 16, body[:3000]
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output.decode(errors="replace")[-2000:]
        # The workers logged one JSON line per request, each with its request id.
        access = [line for line in map(_json_or_none, output.decode(errors="replace").splitlines())
                  if line and line.get("event") == "request" and line["route"] == "/health"]
        assert sorted(a["request_id"] for a in access if a["request_id"].startswith("probe-")) == \
            sorted(f"probe-{n}" for n in range(HEALTH_CALLS))
        assert all(a["status"] == 200 and a["duration_ms"] >= 0 and a["logger"] == "hustlexp.access"
                   for a in access)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
