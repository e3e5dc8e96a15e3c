"""Connection pool and the transaction helper.

``db.transaction()`` opens a transaction on a pooled connection and binds that connection
to the current context; a ``db.transaction()`` nested inside it (a service calling another
service) becomes a savepoint on the same connection. Only the outermost block commits, so
a release, its XP row, badges and notifications commit or vanish together. Services never
call ``commit()``.

``db.after_commit(fn)`` queues work that must happen only once the outermost transaction
has committed (calling Stripe, for example): it never runs if the transaction rolls back.

When PostgreSQL is away (down, restarting, unreachable) a transaction raises Unavailable (503,
retry later) instead of an unhandled psycopg error. Each lent connection is checked before
any work is sent on it, so connections killed by a restart are replaced, not used, and the pool
keeps reconnecting on its own: a transaction's BEGIN is its check (a connection that fails it
has run nothing, so the transaction begins again on a checked one: no extra round trip when
all is well), and a connection lent for one statement is checked with an empty query first. A transaction waits for a
connection in slices of OUTAGE_WAIT_SECONDS and gives up at the first slice once the database
is known to be away (a lent connection failed its check, a connection attempt failed, or a
transaction lost its connection) instead of waiting the full pool timeout: during an outage
requests fail fast, so the workers stay free to
answer (GET /health among them)."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from hustlexp.db.errors import translate, unavailable
from hustlexp.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# A connection attempt to a host that does not answer gives up after this long.
CONNECT_TIMEOUT_SECONDS = 5
# psycopg_pool retries a failed connection with a doubling delay until this many seconds have
# passed (its default, 300 s, lets the delay grow to minutes during a long outage, and the pool
# would then wait that long after the database is back). Past it the attempt is dropped and the
# next request starts a fresh one, so a recovered database is used again within seconds.
RECONNECT_WINDOW_SECONDS = 10.0
OUTAGE_WAIT_SECONDS = 0.5
# Every statement is prepared on its first run (psycopg's default waits for the fifth). The
# pool lends its connections in turn, so each one meets every statement afresh: with the
# default, a worker parsed and planned each statement five times per connection after a start
# (or after a rollback, which drops a connection's prepared statements), and the benchmark's
# lifecycle cost about a sixth more CPU in its first seconds (issue 11). The cache holds the whole
# app's statements, so a rarely run one is not prepared only to push a hot one out.
PREPARED_MAX = 200


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.prepared_max = PREPARED_MAX


@dataclass
class _Scope:
    conn: psycopg.Connection[dict[str, Any]]
    after_commit: list[Callable[[], object]] = field(default_factory=list)


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("hustlexp_db_scope", default=None)


class Database:
    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 10,
                 timeout: float = 10.0) -> None:
        self.conninfo = conninfo
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
            kwargs={"row_factory": dict_row, "autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    "prepare_threshold": 0},
            configure=_configure, reconnect_timeout=RECONNECT_WINDOW_SECONDS,
            name="hustlexp",
        )
        # time.monotonic() of the first failure of the current outage; None while all is well.
        self.away_since: float | None = None
        # The pool's count of failed connection attempts when a transaction last succeeded.
        self._connect_errors_seen = 0

    def open(self, wait: bool = True) -> Database:
        self.pool.open(wait=wait)
        return self

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A transaction (or a savepoint inside the current one). Database rule violations
        leave as DomainError (see hustlexp.db.errors)."""
        scope = _scope.get()
        if scope is not None:
            with _translated(), scope.conn.transaction():
                yield scope.conn
            return
        with self._begun() as conn:
            scope = _Scope(conn)
            token = _scope.set(scope)
            try:
                yield conn
            finally:
                _scope.reset(token)
        self._connect_errors_seen = self._connect_errors()
        if self.away_since is not None:
            log.warning("database back after %.1f s", time.monotonic() - self.away_since)
            self.away_since = None
        for fn in scope.after_commit:
            try:
                fn()
            except Exception:  # the commit stands; the outbox retry job picks up what failed
                log.exception("after-commit work failed")

    @contextmanager
    def _begun(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection inside a transaction. BEGIN is the connection's first round
        trip and doubles as its check: on a connection that a restart (or anything) ended it
        fails before any work was sent, and the transaction begins again on a checked one.
        (Polling the socket instead lent connections a restart under load had ended, which
        then answered 503: tests/faults test_postgres_restart_mid_load, issue 11.)"""
        for checked in (False, True):
            stack = ExitStack()
            conn = stack.enter_context(self._lent(checked=checked))
            try:
                stack.enter_context(conn.transaction())
            except BaseException as exc:
                if isinstance(exc, psycopg.OperationalError) and not checked:
                    conn.close()  # BEGIN ran nothing; given back closed, the pool replaces it
                    stack.close()
                    self._mark_away("a pooled connection failed at BEGIN")
                    continue
                stack.__exit__(type(exc), exc, exc.__traceback__)  # gives the connection back; raises translated
                raise
            with stack:
                yield conn
            return

    @contextmanager
    def _connection(self, *, checked: bool) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        give_up = time.monotonic() + self.pool.timeout
        while True:
            try:
                conn = self.pool.getconn(timeout=OUTAGE_WAIT_SECONDS)
            except PoolTimeout:
                if self._away() or time.monotonic() >= give_up:
                    raise
                continue
            if not checked or self._checks_out(conn):
                break
        try:
            yield conn
        finally:
            self.pool.putconn(conn)

    def _away(self) -> bool:
        return self.away_since is not None or self._connect_errors() > self._connect_errors_seen

    def _connect_errors(self) -> int:
        return int(self.pool.get_stats().get("connections_errors", 0))

    def _mark_away(self, reason: str) -> None:
        if self.away_since is None:
            self.away_since = time.monotonic()
            log.error("database unavailable: %s", reason)

    def _checks_out(self, conn: psycopg.Connection[dict[str, Any]]) -> bool:
        """The check before lending a connection for work that cannot be begun again (one
        statement): a round trip (an empty query). A connection that fails it is closed and
        given back, so the pool replaces it; it also tells us the database may be away."""
        try:
            ConnectionPool.check_connection(conn)
            return True
        except Exception:
            self._mark_away("a pooled connection failed its check")
            conn.close()
            self.pool.putconn(conn)
            return False

    @contextmanager
    def one_statement(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection for ONE statement, read or write, which is atomic on its own and needs
        no BEGIN/COMMIT around it: one round trip instead of three. Inside a transaction it is
        that transaction's connection. The database being away is Unavailable, as for transactions."""
        scope = _scope.get()
        if scope is not None:
            yield scope.conn
            return
        with self._lent(checked=True) as conn:
            yield conn

    def run_repeatable(self, run: Callable[[psycopg.Connection[dict[str, Any]]], T]) -> T:
        """`run(conn)`: ONE statement that does no harm if it runs twice (a read; a counter),
        on a connection lent without the empty-query check (inside a transaction, on that
        transaction's connection). If the connection turns out dead (a restart ended it), the
        statement runs once more on a checked connection: the check's round trip is paid only
        when a connection has failed, never when all is well."""
        scope = _scope.get()
        if scope is not None:
            return run(scope.conn)
        with self._lent(checked=False) as conn:
            try:
                return run(conn)
            except psycopg.OperationalError:
                if not conn.closed:
                    raise
                self._mark_away("a pooled connection failed its first statement")
        with self._lent(checked=True) as conn:
            return run(conn)

    @contextmanager
    def _lent(self, *, checked: bool) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection whose errors leave translated; the database being away marks the outage."""
        try:
            with _translated(), self._connection(checked=checked) as conn:
                yield conn
        except Unavailable as exc:
            if isinstance(exc.__cause__, psycopg.Error | PoolTimeout):
                self._mark_away(exc.reason)
            raise

    def after_commit(self, fn: Callable[[], object]) -> None:
        scope = _scope.get()
        if scope is None:
            raise RuntimeError("after_commit needs an open transaction")
        scope.after_commit.append(fn)

    @staticmethod
    def current() -> psycopg.Connection[dict[str, Any]]:
        """The connection of the transaction this code runs in (no savepoint of its own)."""
        scope = _scope.get()
        if scope is None:
            raise RuntimeError("no open transaction")
        return scope.conn

    @staticmethod
    def in_transaction() -> bool:
        return _scope.get() is not None


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        err = translate(exc) if isinstance(exc, psycopg.Error) else None
        err = err or unavailable(exc)
        if err is None:
            raise
        raise err from exc


def set_local(conn: psycopg.Connection[Any], name: str, value: str | None) -> None:
    """Set a transaction-local setting (read by triggers, e.g. hustlexp.trust_reason)."""
    conn.execute("SELECT set_config(%s, %s, true)", (name, value or ""))
