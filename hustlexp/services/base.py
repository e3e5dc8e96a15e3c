"""What every service shares: a handle on the other services, and the `returns_result`
decorator that makes each public method return a ServiceResult.

Conventions (all services):
- A public method opens `with self.db.transaction() as conn:` (a savepoint when a caller
  already holds a transaction) and never commits. Raise DomainError subclasses inside;
  the decorator turns them into ServiceResult failures after the savepoint rolled back.
- A service calling another uses `self.s.<other>.<method>(...).unwrap()` so a failure
  rolls the whole outer transaction back.
- Lock what you change (`SELECT ... FOR UPDATE`) before checking its state.
- SQL only with parameters; rows come back as dicts (dict_row)."""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import UUID

from hustlexp.domain import ServiceResult
from hustlexp.errors import DomainError, ValidationError

if TYPE_CHECKING:
    from hustlexp.db import Database
    from hustlexp.services import Services

log = logging.getLogger("hustlexp.services")

P = ParamSpec("P")
T = TypeVar("T")


def returns_result(fn: Callable[P, T]) -> Callable[P, ServiceResult[T]]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ServiceResult[T]:
        try:
            return ServiceResult.success(fn(*args, **kwargs))
        except DomainError as err:
            log.info("%s refused: %s %s", fn.__qualname__, err.code, err.message)
            return ServiceResult.failure(err)

    return wrapper


class Service:
    def __init__(self, services: Services) -> None:
        self.s = services

    @property
    def db(self) -> Database:
        return self.s.db

    def _delete_files_after_commit(self, keys: list[str]) -> None:
        """Stored files go only once the rows naming them are gone for good (never if the
        transaction rolls back); a file that cannot be deleted is logged and left behind."""
        if not keys:
            return
        storage = self.s.storage

        def delete() -> None:
            for key in keys:
                try:
                    storage.delete(key)
                except (OSError, ValueError) as exc:
                    log.warning("could not delete stored object %s: %s", key, exc)

        self.db.after_commit(delete)

    def _notify(self, user_id: Any, category: str, **kw: Any) -> None:
        """Notify inside the caller's transaction (no savepoint: nothing here recovers from a
        failed notification): if notifying fails, the change it announces rolls back with it."""
        if self.db.in_transaction():
            from hustlexp.services.notification import Notice  # (notification imports this module)

            # record_all, not record: nothing reads the row back, so none is sent back.
            self.s.notifications.record_all(self.db.current(), [Notice(user_id, category, **kw)])
        else:
            self.s.notifications.notify(user_id, category, **kw).unwrap()


def about(task: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """notify() arguments for an event of `task` (the templates name the task by its title)."""
    return {"task_id": task["id"], "metadata": {"title": task["title"], **metadata}}


def page_params(limit: int | None, offset: int | None, *, default: int = 20, maximum: int = 100
                ) -> tuple[int, int]:
    """Validated (limit, offset): limit 1..maximum, offset >= 0."""
    limit = default if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= maximum:
        raise ValidationError(f"limit must be between 1 and {maximum}", details={"limit": [f"1..{maximum}"]})
    if offset < 0:
        raise ValidationError("offset must be 0 or more", details={"offset": [">= 0"]})
    return limit, offset


def trim_page(rows: list[T], limit: int) -> tuple[list[T], bool]:
    """A page read with LIMIT limit + 1: its first `limit` rows, and whether more follow (the
    extra row says so without counting the rest)."""
    return rows[:limit], len(rows) > limit


def encode_cursor(at: datetime, row_id: Any) -> str:
    """An opaque keyset cursor: the (timestamp, id) of a page's last row."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(timestamp, id) of a cursor from encode_cursor; anything else is a 400 naming `cursor`."""
    try:
        at, row_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        return datetime.fromisoformat(at), str(UUID(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("the cursor is not valid", details={"cursor": ["use next_cursor as returned"]}) from None


def one(conn: Any, query: str, params: Any = None) -> dict[str, Any] | None:
    """The first row of a query (dict), or None."""
    row: dict[str, Any] | None = conn.execute(query, params).fetchone()
    return row


def returning(conn: Any, query: str, params: Any = None) -> dict[str, Any]:
    """The row a write returns (INSERT/UPDATE ... RETURNING) when it must exist."""
    row: dict[str, Any] | None = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row
