"""The id of the request (or job run) being served, carried through logs, the money outbox
and Stripe metadata. A contextvar: each thread, and each job run, has its own."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = "X-Request-ID"
# A client's id is taken as is only when it is short and plain (it lands in logs and metadata).
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,100}")

_request_id: ContextVar[str | None] = ContextVar("hustlexp_request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def accept(header_value: str | None) -> str:
    """The client's X-Request-ID when it is acceptable, else a new one."""
    if header_value and _ACCEPTED.fullmatch(header_value):
        return header_value
    return os.urandom(16).hex()  # 128 random bits, as a uuid4 has, without building one


@contextmanager
def bound(request_id: str | None) -> Iterator[str | None]:
    """Make `request_id` current inside the block (None keeps the one already current)."""
    if request_id is None:
        yield _request_id.get()
        return
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


def set_for_request(request_id: str) -> object:
    """Bind for a request whose end is a separate hook; returns the token for `reset`."""
    return _request_id.set(request_id)


def reset(token: object) -> None:
    try:
        _request_id.reset(token)  # type: ignore[arg-type]
    except (ValueError, RuntimeError):  # a token of another context, or already used
        _request_id.set(None)
