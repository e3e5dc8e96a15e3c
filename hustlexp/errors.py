"""The one error tree: every failure a client can see is a DomainError with a code,
an HTTP status and a message. Services raise (or return) them; the API renders them."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class ValidationError(DomainError):
    code, status = "VALIDATION_ERROR", 400


class AuthRequired(DomainError):
    code, status = "AUTH_REQUIRED", 401


class AuthInvalid(DomainError):
    code, status = "AUTH_INVALID", 401


class Forbidden(DomainError):
    code, status = "FORBIDDEN", 403


class AccountSuspended(Forbidden):
    """An admin suspended the account: nothing works until an admin lifts it."""

    code = "ACCOUNT_SUSPENDED"


class AccountClosed(Forbidden):
    """The owner deleted the account; within the grace period only resuming it works."""

    code = "ACCOUNT_CLOSED"


class NotFound(DomainError):
    code, status = "NOT_FOUND", 404


class PayloadTooLarge(DomainError):
    code, status = "PAYLOAD_TOO_LARGE", 413


class Conflict(DomainError):
    code, status = "CONFLICT", 409


class RateLimited(DomainError):
    code, status = "RATE_LIMITED", 429

    def __init__(self, message: str, *, retry_after: int, limit: int | None = None, window: int | None = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        # The rule that refused (requests per `window` seconds), for the RateLimit-* headers.
        self.limit = limit
        self.window = window


class PaymentProviderError(DomainError):
    """Stripe refused or could not be reached while a request waited on it."""

    code, status = "PAYMENT_PROVIDER_ERROR", 502


class Unavailable(DomainError):
    """A dependency (the database) is away; the client should retry after `retry_after` s."""

    code, status = "SERVICE_UNAVAILABLE", 503

    def __init__(self, message: str, *, retry_after: int = 5, **kw: Any) -> None:
        super().__init__(message, details={"retry_after": retry_after}, **kw)
        self.retry_after = retry_after
        self.reason = message
