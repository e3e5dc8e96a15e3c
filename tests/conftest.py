"""Fixtures shared by every suite. No database is mocked: each test gets its own clone of
a template database holding sql/schema.sql, on a real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from hustlexp.db import Database
from tests.fakes.stripe_fake import FakeStripe
from tests.pg import TestServer


@pytest.fixture(scope="session")
def pg() -> Iterator[TestServer]:
    server = TestServer()
    yield server
    server.close()


@pytest.fixture
def db_url(pg: TestServer) -> Iterator[str]:
    with pg.database() as url:
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A raw autocommit connection to this test's database (kill tests use it directly)."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, min_size=1, max_size=25).open()
    yield database
    database.close()


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    """Stripe for one test: the real `stripe` library talks to this in-process fake."""
    with FakeStripe() as fake:
        yield fake


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: nothing here may quietly not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("skipped tests are failures in CI", red=True)
        session.exitstatus = 1
