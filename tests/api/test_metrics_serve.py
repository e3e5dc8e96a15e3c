"""GET /metrics under `hustlexp serve` with two gunicorn workers: whichever worker answers
the scrape reports the samples of both (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import requests

from tests.api.test_serve import HUSTLEXP, START_TIMEOUT, free_port, wait_for_health

HEALTH_CALLS = 40


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
    env |= {"HUSTLEXP_ENV": "development", "DATABASE_URL": db_url, "HUSTLEXP_STORAGE_DIR": str(tmp_path / "up")}
    port = free_port()
    proc = subprocess.Popen([*HUSTLEXP, "serve", "--port", str(port), "--workers", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc)
        _wait_for_both_workers(base, proc)
        before = _health_count(requests.get(f"{base}/metrics", timeout=10).text)
        for _ in range(HEALTH_CALLS):
            # A new connection each time, so both workers take some of them.
            assert requests.get(f"{base}/health", timeout=10, headers={"Connection": "close"}).status_code == 200
        for _ in range(6):
            scraped = requests.get(f"{base}/metrics", timeout=10, headers={"Connection": "close"})
            assert scraped.status_code == 200
            body = scraped.text
            assert len(_worker_pids(body)) == 2, body[:3000]  # both workers' files are read
            assert _health_count(body) == before + HEALTH_CALLS
            assert "hustlexp_outbox_rows" in body and "hustlexp_db_pool_max" in body
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output.decode(errors="replace")[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
