"""Connection pool and the transaction helper.

``db.transaction()`` opens a transaction on a pooled connection and binds that connection
to the current context; a ``db.transaction()`` nested inside it (a service calling another
service) becomes a savepoint on the same connection. Only the outermost block commits, so
a release, its XP row, badges and notifications commit or vanish together. Services never
call ``commit()``.

``db.after_commit(fn)`` queues work that must happen only once the outermost transaction
has committed (calling Stripe, for example): it never runs if the transaction rolls back."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from hustlexp.db.errors import translate

log = logging.getLogger(__name__)


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
            kwargs={"row_factory": dict_row, "autocommit": True},
            name="hustlexp",
        )

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
        with self.pool.connection() as conn:
            scope = _Scope(conn)
            token = _scope.set(scope)
            try:
                with _translated(), conn.transaction():
                    yield conn
            finally:
                _scope.reset(token)
        for fn in scope.after_commit:
            try:
                fn()
            except Exception:  # the commit stands; the outbox retry job picks up what failed
                log.exception("after-commit work failed")

    @contextmanager
    def one_statement(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection for ONE statement, read or write, which is atomic on its own and needs
        no BEGIN/COMMIT around it: one round trip instead of three. Inside a transaction it is
        that transaction's connection."""
        scope = _scope.get()
        if scope is not None:
            yield scope.conn
            return
        with self.pool.connection() as conn, _translated():
            yield conn

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
    except psycopg.Error as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from exc


def set_local(conn: psycopg.Connection[Any], name: str, value: str | None) -> None:
    """Set a transaction-local setting (read by triggers, e.g. hustlexp.trust_reason)."""
    conn.execute("SELECT set_config(%s, %s, true)", (name, value or ""))
