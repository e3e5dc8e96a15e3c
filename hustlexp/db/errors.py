"""SQLSTATE -> DomainError: the one place a database error becomes a client-visible error.

Trigger codes are raised as the SQLSTATE itself (class HX). psycopg maps unknown classes to
OperationalError, so we must translate by ``exc.sqlstate`` before anything treats an
OperationalError as a connection problem worth retrying."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout

from hustlexp.errors import Conflict, DomainError, Forbidden, NotFound, Unavailable, ValidationError

# SQLSTATEs of a server going away or not taking connections: admin/crash shutdown, starting
# up or shutting down, too many connections. Class 08 (connection exceptions) is matched whole.
_AWAY = frozenset({"57P01", "57P02", "57P03", "53300"})

# code -> (error class, HTTP status, what the client is told)
_SQLSTATES: dict[str, tuple[type[DomainError], int, str]] = {
    "HX001": (Conflict, 409, "The task is finished and can no longer change."),
    "HX002": (Conflict, 409, "The escrow is settled and can no longer change."),
    "HX003": (ValidationError, 400, "The escrow amount must equal the task price."),
    "HX004": (Conflict, 409, "An escrow amount never changes."),
    "HX101": (Conflict, 409, "XP is awarded only for a released escrow."),
    "HX102": (Forbidden, 403, "The XP ledger is append-only."),
    "HX103": (Forbidden, 403, "The trust and badge counters are kept by the database alone."),
    "HX201": (Conflict, 409, "An escrow is released only when its task is completed."),
    "HX202": (Conflict, 409, "That money movement does not match its escrow."),
    "HX203": (Conflict, 409, "An escrow is refunded only after its task was cancelled or expired."),
    "HX204": (Conflict, 409, "A chargeback holds this escrow: its money can be neither released nor refunded."),
    "HX301": (Conflict, 409, "A task completes only with an accepted proof."),
    "HX401": (Forbidden, 403, "Badges are append-only."),
    "HX801": (Conflict, 409, "Messages can be sent only while the task is in progress."),
    "HX802": (Forbidden, 403, "Only the task's poster and worker can message each other."),
    "HX807": (Conflict, 409, "Ratings can only be submitted after the task is COMPLETED."),
    "HX808": (Conflict, 409, "The rating window has closed (7 days after completion)."),
    "HX809": (Forbidden, 403, "Ratings cannot be changed after submission."),
    "HX810": (ValidationError, 400, "A rating is 1 to 5 stars."),
    "HX811": (ValidationError, 400, "A rating comment holds at most 500 characters."),
    "HX812": (Forbidden, 403, "Only the task's poster and worker rate each other."),
    "23505": (Conflict, 409, "That already exists."),
    "23514": (ValidationError, 400, "A value is outside what is allowed."),
    "23503": (NotFound, 404, "A referenced record does not exist."),
    "23502": (ValidationError, 400, "A required value is missing."),
    "22001": (ValidationError, 400, "A value is too long."),
    "P0001": (ValidationError, 400, "The request breaks a data rule."),
    "40001": (Conflict, 409, "A concurrent change won; try again."),
    "40P01": (Conflict, 409, "A concurrent change won; try again."),
    "55P03": (Conflict, 409, "The record is busy; try again."),
}

# Codes whose HTTP code is the SQLSTATE itself; generic ones get the class's code.
_GENERIC = {"23505": "CONFLICT", "23514": "VALIDATION_ERROR", "23503": "NOT_FOUND",
            "23502": "VALIDATION_ERROR", "22001": "VALIDATION_ERROR", "P0001": "VALIDATION_ERROR",
            "40001": "CONFLICT", "40P01": "CONFLICT", "55P03": "CONFLICT"}


def translate(exc: psycopg.Error) -> DomainError | None:
    """The DomainError for a database error, or None when it is not a rule we know
    (a real fault: connection lost, syntax error...), which callers must re-raise."""
    state = exc.sqlstate
    if state is None or state not in _SQLSTATES:
        return None
    cls, status, message = _SQLSTATES[state]
    diag = exc.diag
    details = {"sqlstate": state}
    if diag.constraint_name:
        details["constraint"] = diag.constraint_name
    err = cls(message, code=_GENERIC.get(state, state), status=status, details=details)
    err.__cause__ = exc
    return err


def unavailable(exc: BaseException) -> Unavailable | None:
    """Unavailable (503, retry later) when `exc` says the database cannot be reached right now:
    no pooled connection in time, a connection lost (psycopg gives those no SQLSTATE), the
    server shutting down or restarting. None for anything else."""
    if isinstance(exc, PoolTimeout):
        reason = "no database connection"
    elif isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (
            exc.sqlstate is None or exc.sqlstate.startswith("08") or exc.sqlstate in _AWAY):
        reason = f"database unreachable ({exc.sqlstate or type(exc).__name__})"
    else:
        return None
    err = Unavailable("The service is temporarily unavailable; try again shortly.")
    err.reason = reason
    err.__cause__ = exc
    return err
