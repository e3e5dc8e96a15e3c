"""PostgreSQL going away under a running app: connections killed by a restart are never lent,
a request whose connection dies answers 503 SERVICE_UNAVAILABLE with Retry-After (never a 500),
and the app recovers by itself. (tests/faults restarts a real server under load.)"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from hustlexp import config
from hustlexp.errors import Unavailable
from tests.api.conftest import data, error


def _kill_app_connections(conn: Any) -> int:
    """What a PostgreSQL restart does to every pooled connection of this database: each backend
    is ended (and gone, as after a restart, before this returns)."""
    rows = conn.execute("SELECT pg_terminate_backend(pid, 10000) AS killed FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    return len(rows)


def test_connections_killed_by_a_restart_are_replaced_not_lent(client: Any, register: Any, conn: Any) -> None:
    _, headers = register(client)
    assert client.get("/api/users/me", headers=headers).status_code == 200
    assert _kill_app_connections(conn) >= 1

    for _ in range(3):  # every pooled connection was dead; none reaches a request
        response = client.get("/api/users/me", headers=headers)
        assert response.status_code == 200, response.get_json()


def test_a_transaction_on_a_connection_killed_by_a_restart_begins_again(services: Any, conn: Any) -> None:
    with services.db.transaction() as tx:  # the pool now holds an idle connection
        tx.execute("SELECT 1")
    assert _kill_app_connections(conn) >= 1
    for _ in range(3):  # BEGIN, the lent connection's check, fails on the dead one: nothing is lost
        with services.db.transaction() as tx:
            assert tx.execute("SELECT 1 AS one").fetchone() == {"one": 1}


def test_a_repeatable_statement_on_a_dead_connection_runs_again_on_a_checked_one(services: Any, conn: Any) -> None:
    db = services.db
    assert db.run_repeatable(lambda c: c.execute("SELECT 1 AS one").fetchone()) == {"one": 1}
    assert _kill_app_connections(conn) >= 1
    runs: list[int] = []

    def select(c: Any) -> Any:
        runs.append(1)
        return c.execute("SELECT 2 AS two").fetchone()

    assert db.run_repeatable(select) == {"two": 2}
    assert len(runs) == 2  # once on the dead connection, once on a checked one
    # Twice at most: a statement that kills its own connection each time is Unavailable.
    suicidal: list[int] = []
    with pytest.raises(Unavailable):
        db.run_repeatable(lambda c: suicidal.append(1) or c.execute("SELECT pg_terminate_backend(pg_backend_pid())"))
    assert len(suicidal) == 2


def test_connection_lost_mid_transaction_is_unavailable(services: Any) -> None:
    with pytest.raises(Unavailable) as caught, services.db.transaction() as tx:
        tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "SERVICE_UNAVAILABLE", 5)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    with services.db.transaction() as tx:  # and the next one works
        assert tx.execute("SELECT 1 AS one").fetchone() == {"one": 1}


def test_request_whose_connection_dies_answers_503_with_retry_after(client: Any, register: Any,
                                                                      conn: Any) -> None:
    user, headers = register(client)
    answers: list[Any] = []
    with conn.transaction():
        conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user["id"],))
        request = threading.Thread(target=lambda: answers.append(
            client.patch("/api/users/me", json={"full_name": "Blocked Name"}, headers=headers)))
        request.start()
        while not conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock'").fetchone()["n"]:
            time.sleep(0.02)  # the PATCH now waits on our row lock, inside its transaction
        _kill_app_connections(conn)
    request.join()

    [response] = answers
    assert response.status_code == 503
    assert error(response)["code"] == "SERVICE_UNAVAILABLE"
    assert response.get_json()["error"]["details"] == {"retry_after": 5}
    assert response.headers["Retry-After"] == "5"
    assert response.content_type == "application/json"
    # Nothing was written, and the app serves again without a restart.
    assert data(client.get("/api/users/me", headers=headers))["full_name"] == user["full_name"]


def test_stripe_timeout_and_retries_are_bounded_settings() -> None:
    defaults = config.load({})
    assert (defaults.stripe_timeout, defaults.stripe_max_network_retries) == (20.0, 2)
    tuned = config.load({"STRIPE_TIMEOUT_SECONDS": "2.5", "STRIPE_MAX_NETWORK_RETRIES": "0"})
    assert (tuned.stripe_timeout, tuned.stripe_max_network_retries) == (2.5, 0)
    for name, value in [("STRIPE_TIMEOUT_SECONDS", "80"), ("STRIPE_TIMEOUT_SECONDS", "0"),
                        ("STRIPE_TIMEOUT_SECONDS", "soon"), ("STRIPE_MAX_NETWORK_RETRIES", "9"),
                        ("STRIPE_MAX_NETWORK_RETRIES", "1.5")]:
        with pytest.raises(config.ConfigError, match=name):
            config.load({name: value})
