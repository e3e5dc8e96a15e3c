"""The payments gateway: the one module that talks to Stripe's API.

It wraps a `stripe.StripeClient` of its own (never the module-global `stripe.api_key`), so
several gateways (a test's fake, a served E2E fake, production) can live in one process.
Every call that moves or reserves money takes an idempotency key the caller derives from our
own ids, so a retry after a lost response can never charge or pay twice. Every Stripe failure
leaves as a `PaymentError` that says whether trying again later can help.

No call waits on Stripe unbounded: connecting gives up after 5 s and waiting for an answer after
20 s (stripe's own default is 80 s, longer than gunicorn lets a request live), and the library
retries a dropped or timed-out call at most `max_network_retries` times with the same
idempotency key. Inside `stripe_budget(seconds)` (services.stripe_http; every API request runs
in one) all the Stripe calls together, retries included, get at most that long: what is not
done by then fails as a retryable PaymentError, so a committed change answers success and the
outbox retry job finishes the money.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import stripe
from stripe import SignatureVerificationError, WebhookSignature  # by name: stripe.<name> is an import per use

from hustlexp.errors import DomainError, PaymentProviderError
from hustlexp.services.stripe_http import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, StripeHTTPClient

log = logging.getLogger("hustlexp.payments")

CURRENCY = "usd"
WEBHOOK_TOLERANCE_SECONDS = 300

# Stripe codes that mean "busy, try again", whatever status or error class carries them.
_RETRYABLE_CODES = frozenset({"lock_timeout", "rate_limit", "token_in_use"})
# What Stripe answers when asked to cancel an intent that is past cancelling (or already canceled).
_UNEXPECTED_STATE = frozenset({"payment_intent_unexpected_state"})


class PaymentError(PaymentProviderError):
    """A Stripe call failed. `retryable` tells the outbox whether a later attempt with the same
    idempotency key can succeed (network trouble, Stripe 5xx, rate limits, lock timeouts) or
    not (declines, invalid requests, bad credentials)."""

    def __init__(self, message: str, *, retryable: bool, stripe_code: str | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.stripe_code = stripe_code
        self.http_status = http_status


class WebhookSignatureError(DomainError):
    code, status = "WEBHOOK_SIGNATURE_INVALID", 400


@dataclass(frozen=True)
class Intent:
    """What we keep of a PaymentIntent. `client_secret` goes to the app so it can confirm the
    payment itself: card data never reaches us."""

    id: str
    # Kept out of repr so it never lands in a log line or a traceback.
    client_secret: str | None = field(repr=False)
    status: str
    amount: int
    currency: str
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    amount_received: int = 0


class PaymentsGateway:
    def __init__(self, secret_key: str, *, api_base: str | None = None,
                 http_client: stripe.HTTPClient | None = None, webhook_secret: str | None = None,
                 connect_webhook_secret: str | None = None,
                 max_network_retries: int = 0, read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        if not secret_key:
            raise ValueError("a Stripe secret key is required")
        if not 0 < read_timeout <= READ_TIMEOUT_SECONDS:
            raise ValueError(f"read_timeout must be in (0, {READ_TIMEOUT_SECONDS}] seconds")
        self.webhook_secret = webhook_secret
        # Events about connected accounts (account.updated) come from a Connect endpoint, which
        # Stripe signs with its own secret; one URL may serve both endpoints.
        self.connect_webhook_secret = connect_webhook_secret
        # One call waits at most this long for each of its 1 + max_network_retries tries.
        self.read_timeout = read_timeout
        self.max_network_retries = max_network_retries
        if http_client is None:
            http_client = StripeHTTPClient(connect_timeout=min(CONNECT_TIMEOUT_SECONDS, read_timeout),
                                           read_timeout=read_timeout)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=http_client,
            max_network_retries=max_network_retries,
        )

    @property
    def call_seconds(self) -> float:
        """What one call may take when Stripe never answers: every try waits out its read timeout.
        Run inside `stripe_budget(call_seconds)`, several calls together take no longer."""
        return self.read_timeout * (1 + self.max_network_retries)

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None, *,
              idempotency_key: str | None = None) -> dict[str, Any]:
        """One API call (retries, errors and budget as for any stripe call); the answer as the
        plain JSON Stripe sent. No StripeObject tree is built: that was over a third of a call's
        CPU on our side (issue 11), and we read a few fields."""
        options = {"idempotency_key": idempotency_key} if idempotency_key is not None else {}
        answer: dict[str, Any] = self._client.raw_request(method, path, **(params or {}), **options).data
        return answer

    # -- PaymentIntents ---------------------------------------------------------------

    def create_payment_intent(self, *, amount: int, escrow_id: str, task_id: str, poster_id: str,
                              idempotency_key: str) -> Intent:
        _require_cents(amount)
        ids = {"escrow_id": escrow_id, "task_id": task_id, "poster_user_id": poster_id}
        with _stripe_call("payment_intents.create", ids):
            pi = self._call("post", "/v1/payment_intents", {
                "amount": amount,
                "currency": CURRENCY,
                "capture_method": "automatic",
                # Ties the charge to the transfer that later pays the worker.
                "transfer_group": escrow_id,
                "metadata": {"escrow_id": escrow_id, "task_id": task_id, "poster_user_id": poster_id},
            }, idempotency_key=idempotency_key)
        return _intent(pi)

    def retrieve_payment_intent(self, payment_intent_id: str) -> Intent:
        with _stripe_call("payment_intents.retrieve", {"payment_intent_id": payment_intent_id}):
            pi = self._call("get", f"/v1/payment_intents/{_quoted(payment_intent_id)}")
        return _intent(pi)

    def cancel_payment_intent(self, payment_intent_id: str, *, idempotency_key: str) -> Intent:
        """Cancel; an intent that is already canceled is the wanted outcome, not an error."""
        ids = {"payment_intent_id": payment_intent_id}
        try:
            with _stripe_call("payment_intents.cancel", ids, quiet_codes=_UNEXPECTED_STATE):
                pi = self._call("post", f"/v1/payment_intents/{_quoted(payment_intent_id)}/cancel",
                                idempotency_key=idempotency_key)
        except PaymentError as err:
            if err.stripe_code not in _UNEXPECTED_STATE:
                raise
            current = self.retrieve_payment_intent(payment_intent_id)
            if current.status == "canceled":
                return current
            log.warning("stripe payment_intents.cancel refused: payment_intent_id=%s status=%s",
                        payment_intent_id, current.status)
            raise
        return _intent(pi)

    def charge_risk_level(self, charge_id: str) -> str | None:
        """Radar's risk level of a charge (normal, elevated, highest...), None when unscored."""
        with _stripe_call("charges.retrieve", {"charge_id": charge_id}):
            charge = self._call("get", f"/v1/charges/{_quoted(charge_id)}")
        level = (charge.get("outcome") or {}).get("risk_level")
        return str(level) if level else None

    # -- Money out ----------------------------------------------------------------------

    def create_transfer(self, *, amount: int, destination: str, escrow_id: str, task_id: str,
                        worker_id: str, idempotency_key: str, request_id: str | None = None) -> str:
        _require_cents(amount)
        ids = {"escrow_id": escrow_id, "task_id": task_id, "worker_user_id": worker_id,
               "destination": destination}
        with _stripe_call("transfers.create", ids):
            transfer = self._call("post", "/v1/transfers", {
                "amount": amount,
                "currency": CURRENCY,
                "destination": destination,
                "transfer_group": escrow_id,
                "metadata": _traced({"escrow_id": escrow_id, "task_id": task_id, "worker_user_id": worker_id},
                                    request_id),
            }, idempotency_key=idempotency_key)
        return str(transfer["id"])

    def find_transfer(self, escrow_id: str) -> str | None:
        """The transfer already made for this escrow, if any. Idempotency keys expire after a
        day, so a late retry looks here before paying again."""
        with _stripe_call("transfers.list", {"escrow_id": escrow_id}):
            page = self._call("get", "/v1/transfers", {"transfer_group": escrow_id, "limit": 10})
        for transfer in page["data"]:
            if (transfer.get("metadata") or {}).get("escrow_id") == escrow_id:
                return str(transfer["id"])
        return None

    def create_refund(self, *, payment_intent_id: str, amount: int, escrow_id: str, reason_note: str,
                      idempotency_key: str, request_id: str | None = None) -> str:
        _require_cents(amount)
        ids = {"escrow_id": escrow_id, "payment_intent_id": payment_intent_id}
        with _stripe_call("refunds.create", ids):
            refund = self._call("post", "/v1/refunds", {
                "payment_intent": payment_intent_id,
                "amount": amount,
                "reason": "requested_by_customer",
                "metadata": _traced({"escrow_id": escrow_id, "refund_reason": reason_note}, request_id),
            }, idempotency_key=idempotency_key)
        return str(refund["id"])

    # -- Connect (Express accounts of workers) ------------------------------------------

    def create_express_account(self, *, user_id: str, email: str | None, idempotency_key: str) -> dict[str, Any]:
        """A new Express account that can receive transfers, tagged with our user id."""
        params: dict[str, Any] = {"type": "express", "business_type": "individual",
                                  "capabilities": {"transfers": {"requested": True}},
                                  "metadata": {"hustlexp_user_id": user_id}}
        if email:
            params["email"] = email
        with _stripe_call("accounts.create", {"user_id": user_id}):
            account = self._call("post", "/v1/accounts", params, idempotency_key=idempotency_key)
        return account_snapshot(account)

    def retrieve_account(self, account_id: str) -> dict[str, Any]:
        with _stripe_call("accounts.retrieve", {"account_id": account_id}):
            account = self._call("get", f"/v1/accounts/{_quoted(account_id)}")
        return account_snapshot(account)

    def create_account_link(self, *, account_id: str, refresh_url: str, return_url: str) -> dict[str, Any]:
        """A one-time onboarding link for the account (Stripe makes a new one per call; no key)."""
        with _stripe_call("account_links.create", {"account_id": account_id}):
            link = self._call("post", "/v1/account_links", {"account": account_id, "refresh_url": refresh_url,
                                                            "return_url": return_url, "type": "account_onboarding"})
        return {"url": str(link["url"]), "expires_at": int(link["expires_at"])}

    # -- Webhooks -----------------------------------------------------------------------

    def construct_event(self, payload: bytes, signature_header: str | None, *,
                        secret: str | None = None,
                        tolerance: int = WEBHOOK_TOLERANCE_SECONDS) -> dict[str, Any]:
        """The event in a webhook body, as a plain dict, once its Stripe-Signature header proves
        it was signed with our secret (or the Connect endpoint's) within `tolerance` seconds."""
        secrets = [secret] if secret is not None else [s for s in (self.webhook_secret, self.connect_webhook_secret)
                                                       if s]
        try:
            _verify_with_any(payload, signature_header, secrets or [""], tolerance)
            # The stripe library refuses only old timestamps; a future one is as suspect.
            if _signed_at(signature_header) > time.time() + tolerance:
                raise WebhookSignatureError("webhook timestamp is in the future")
            # The stdlib parser: orjson reads integers past 64 bits as floats, which the shape check
            # would then refuse (the contract test sends such valid JSON).
            event = json.loads(payload)
        except SignatureVerificationError as err:
            raise WebhookSignatureError("webhook signature verification failed") from err
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise WebhookSignatureError("webhook body is not a JSON event") from err
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) \
                or not isinstance(event.get("type"), str):
            raise WebhookSignatureError("webhook body is not a JSON event")
        return event


def _verify_with_any(payload: bytes, header: str | None, secrets: list[str], tolerance: int) -> None:
    for n, secret in enumerate(secrets, start=1):
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance)
            return
        except SignatureVerificationError:
            if n == len(secrets):
                raise


def account_snapshot(account: dict[str, Any]) -> dict[str, Any]:
    """What we keep of a Stripe Account (API answer or account.updated object)."""
    requirements = account.get("requirements") or {}
    return {"id": str(account["id"]), "details_submitted": bool(account.get("details_submitted")),
            "payouts_enabled": bool(account.get("payouts_enabled")),
            "charges_enabled": bool(account.get("charges_enabled")),
            "currently_due": [str(item) for item in requirements.get("currently_due") or []],
            "disabled_reason": requirements.get("disabled_reason"),
            "metadata": {str(k): str(v) for k, v in (account.get("metadata") or {}).items()}}


def _traced(metadata: dict[str, str], request_id: str | None) -> dict[str, str]:
    """Metadata plus the id of the request that queued the movement. It is fixed on the outbox
    row, so every retry under one idempotency key sends the very same parameters."""
    return {**metadata, "request_id": request_id} if request_id else metadata


def _signed_at(header: str | None) -> int:
    """The t= of a Stripe-Signature header that verify_header already accepted."""
    stamps = [item[2:] for item in (header or "").split(",") if item.strip().startswith("t=")]
    return int(stamps[0].strip()) if stamps else 0


def _require_cents(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"amount must be a positive integer number of cents, not {amount!r}")


def _intent(pi: dict[str, Any]) -> Intent:
    return Intent(
        id=str(pi["id"]),
        client_secret=pi.get("client_secret"),
        status=str(pi["status"]),
        amount=int(pi["amount"]),
        currency=str(pi["currency"]),
        metadata={str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
        amount_received=int(pi.get("amount_received") or 0),
    )


def _quoted(object_id: str) -> str:
    """An id as one path segment, whatever it holds."""
    return quote(object_id, safe="")


@contextmanager
def _stripe_call(operation: str, ids: dict[str, str], *,
                 quiet_codes: frozenset[str] = frozenset()) -> Iterator[None]:
    """Turns any StripeError raised inside into a PaymentError and logs it with our ids (the
    ids only: request bodies may hold personal data)."""
    try:
        yield
    except stripe.StripeError as exc:
        error = to_payment_error(exc)
        if error.stripe_code not in quiet_codes:
            log.warning("stripe %s failed: %s error=%s code=%s http_status=%s retryable=%s request_id=%s",
                        operation, " ".join(f"{k}={v}" for k, v in ids.items()), type(exc).__name__,
                        error.stripe_code, error.http_status, error.retryable, exc.request_id)
        raise error from exc


def to_payment_error(exc: stripe.StripeError) -> PaymentError:
    code = exc.code or (exc.error.code if exc.error is not None else None)
    return PaymentError(
        f"payment provider error: {type(exc).__name__}" + (f" ({code})" if code else ""),
        retryable=_is_retryable(exc, code),
        stripe_code=code,
        http_status=exc.http_status,
    )


def _is_retryable(exc: stripe.StripeError, code: str | None) -> bool:
    # Stripe says outright when a retry would or would not help; that beats any guess of ours.
    advice = _header(exc, "stripe-should-retry")
    if advice in ("true", "false"):
        return advice == "true"
    if code in _RETRYABLE_CODES:
        return True
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(exc, stripe.CardError | stripe.InvalidRequestError | stripe.AuthenticationError
                  | stripe.PermissionError | stripe.IdempotencyError):
        return False
    status = exc.http_status
    return status is None or status >= 500 or status == 409


def _header(exc: stripe.StripeError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value).lower()
    return None
