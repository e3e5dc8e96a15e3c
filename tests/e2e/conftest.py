"""E2E fixtures: the whole system, served as in production and driven over real HTTP.

- ``served`` (session): a fresh clone of the schema (``pg.database()``), fake Stripe as a real
  HTTP server (``FakeStripe.serve()``), the tests' Firebase certificate on a local HTTP server,
  and the API itself as a separate process: ``python -m tests.e2e.server`` = ``hustlexp serve``
  (gunicorn, 2 workers) with firebase-admin's certificate URL pointed at ours. Started once,
  answered GET /health 200 before any test runs, stopped with SIGTERM at the end.
- ``world`` (per test): a ``tests.e2e.system.World`` on that system with its own SQL
  connection. Every test registers its own users and posts its own tasks, so tests share the
  server and database without sharing state; each one ends with ``world.check_money()``
  (enforced: a passing test that never checked the money fails).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from tests.api.conftest import SigningKey, cert_url, signing_key  # noqa: F401  (fixtures reused)
from tests.e2e.server import CERT_URL_VARIABLE
from tests.e2e.system import Served, World
from tests.fakes.stripe_fake import FakeStripe
from tests.pg import TestServer

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_ID = "hustlexp-e2e"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0
# Variables that would change what the served process talks to or how it verifies tokens.
SCRUBBED = ("DATABASE_URL", "STRIPE_API_BASE", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
            "FIREBASE_PROJECT_ID", "FIREBASE_AUTH_EMULATOR_HOST", "FIREBASE_ADMIN_KEY", "HUSTLEXP_ENV",
            "HUSTLEXP_STORAGE_DIR", "HUSTLEXP_PGDATA", "FCM_API_BASE", "FCM_CREDENTIALS", "HUSTLEXP_RATE_LIMITS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def _wait_for_health(base_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the API process exited with {proc.returncode}:\n{_log_tail(log_path)}")
        try:
            response = requests.get(f"{base_url}/health", timeout=5)
            if response.status_code == 200 and response.json()["checks"] == {"database": "ok"}:
                return
        except requests.RequestException:  # not listening yet, or a worker still booting
            pass
        time.sleep(0.2)
    raise AssertionError(f"GET /health never answered 200:\n{_log_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def serve_stack(pg: TestServer, cert_url: str, signing_key: SigningKey, workdir: Path,  # noqa: F811
                **settings: str) -> Iterator[Served]:
    """The whole system as served: a fresh database, fake Stripe over HTTP, `hustlexp serve`
    (gunicorn, 2 workers) in its own process, up and healthy; stopped on exit. `settings` are
    extra environment variables for the served process (tests/faults shortens the Stripe timeout)."""
    log_path = workdir / "server.log"
    webhook_secret = f"whsec_e2e_{secrets.token_hex(16)}"
    with pg.database() as db_url, FakeStripe() as fake:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        env |= {
            "HUSTLEXP_ENV": "test",
            "DATABASE_URL": db_url,
            "STRIPE_API_BASE": fake.serve(),
            "STRIPE_SECRET_KEY": "sk_test_e2e",
            "STRIPE_WEBHOOK_SECRET": webhook_secret,
            "FIREBASE_PROJECT_ID": PROJECT_ID,
            "HUSTLEXP_STORAGE_DIR": str(workdir / "uploads"),
            CERT_URL_VARIABLE: cert_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        } | settings
        port = _free_port()
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.server", "--host", "127.0.0.1",
                                     "--port", str(port), "--workers", "2", "--access-log"],
                                    cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_for_health(base_url, proc, log_path)
            yield Served(base_url=base_url, db_url=db_url, fake=fake, webhook_secret=webhook_secret,
                         project_id=PROJECT_ID, signing_key=signing_key, env=env, workdir=workdir,
                         log_path=log_path, api_pid=proc.pid)
        finally:
            _stop(proc)


@pytest.fixture(scope="session")
def served(pg: TestServer, cert_url: str, signing_key: SigningKey,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # No library retries: these tests inject single Stripe failures and watch the outbox meet them.
    with serve_stack(pg, cert_url, signing_key, tmp_path_factory.mktemp("e2e"),
                     STRIPE_MAX_NETWORK_RETRIES="0") as stack:
        yield stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    return report


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.fixture
def world(served: Served, request: pytest.FixtureRequest) -> Iterator[World]:
    with psycopg.connect(served.db_url, autocommit=True, row_factory=dict_row) as conn:
        w = World(served, conn)
        yield w
    if request.node.stash.get(_CALL_PASSED, False):
        assert w.money_checked, "every E2E test ends with world.check_money()"
