"""An in-process Stripe, just large enough for HustleXP's calls, driven through the REAL stripe
library: either as the library's HTTP client (`http_client()`, no sockets) or as a real HTTP
server on 127.0.0.1 (`serve()`, for E2E runs where the API is another process that reaches it
through STRIPE_API_BASE). Both paths answer from the same state, under one lock.

What it models, because our money safety depends on it:
- form-encoded requests exactly as stripe-python sends them (`metadata[escrow_id]=...`), with
  unknown parameters refused like Stripe does;
- idempotency: a POST repeating an Idempotency-Key replays the stored response with no second
  effect; the same key with other parameters (or on another endpoint) is a 400
  `idempotency_error`. Only successful responses are stored, so a retry after a refusal or an
  injected failure is evaluated afresh;
- refunds never exceed what was captured minus earlier refunds;
- failures on demand (`fail_next`), including a response lost *after* the effect happened,
  and a Stripe that accepts the connection and never answers (`kind="hang"`, until `unhang()`);
- Connect: Express accounts that start restricted, one-time Account Links a browser follows
  (served: a GET that redirects), `account.updated` events, and transfers refused while the
  destination's transfers capability is inactive (see the Connect section).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import stripe
from requests.structures import CaseInsensitiveDict

from tests.fakes.served import LocalServer

FailureKind = Literal["api_error", "network", "card_error", "rate_limit", "lock_timeout",
                      "invalid_request", "auth", "conflict", "hang"]
# How long a hung request waits for unhang() at most before its connection is dropped.
HANG_SECONDS = 120.0
Response = tuple[int, str, dict[str, str]]

CANCELABLE = frozenset({"requires_payment_method", "requires_capture", "requires_confirmation",
                        "requires_action", "processing"})
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
CANCEL_REASONS = REFUND_REASONS | {"abandoned"}
# Where the served fake answers a browser opening an Account Link.
ONBOARDING_PATH = "/connect/onboarding/"
# What one request line or header line, and a request's header count, may reach (as http.server).
_MAX_LINE = 65536
_MAX_HEADERS = 100


class NetworkFailure(Exception):
    """The connection dies before any response: the HTTP client adapter turns it into
    stripe.APIConnectionError, the served fake closes the socket without answering."""


class _StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code is not None:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param is not None:
            self.body["param"] = param
        self.body.update(extra)


@dataclass
class _Failure:
    path_prefix: str
    kind: FailureKind
    remaining: int
    method: str | None
    after_effect: bool


@dataclass(frozen=True)
class _Stored:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: str


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class FakeStripe:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.transfers: list[dict[str, Any]] = []
        self.refunds: list[dict[str, Any]] = []
        # (METHOD, path, decoded params, Idempotency-Key or None), every request received,
        # including those an injected failure then refused.
        self.calls: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.events: list[dict[str, Any]] = []
        self._idempotent: dict[str, _Stored] = {}
        self._failures: list[_Failure] = []
        self._unhang = threading.Event()
        self._server: LocalServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None
        # Seconds every request served over HTTP waits before it is answered (benchmarks
        # switch it on to see how the API behaves while Stripe is slow).
        self.latency = 0.0
        # TCP connections accepted over HTTP (clients that keep theirs alive open few).
        self.connections = 0
        # The client-side ports of the HTTP connections whose request is being answered now (a
        # hung call among them): a connection a client keeps alive between calls is not listed.
        self.answering: set[int] = set()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, dict[str, Any]]]]] = [
            ("POST", re.compile(r"/v1/payment_intents"), self._create_payment_intent),
            ("GET", re.compile(r"/v1/payment_intents/(?P<pi_id>[^/]+)"), self._retrieve_payment_intent),
            ("POST", re.compile(r"/v1/payment_intents/(?P<pi_id>[^/]+)/cancel"), self._cancel_payment_intent),
            ("POST", re.compile(r"/v1/transfers"), self._create_transfer),
            ("GET", re.compile(r"/v1/transfers"), self._list_transfers),
            ("POST", re.compile(r"/v1/refunds"), self._create_refund),
            ("GET", re.compile(r"/v1/refunds"), self._list_refunds),
        ]
        self._init_money_events()
        self._init_connect()

    # -- ways in ------------------------------------------------------------------------

    def http_client(self) -> FakeStripeHTTPClient:
        """An HTTP client for stripe.StripeClient(http_client=...): no network at all."""
        return FakeStripeHTTPClient(self)

    def serve(self) -> str:
        """Serve this fake over real HTTP on a free local port; returns the base URL to use as
        STRIPE_API_BASE (or PaymentsGateway(api_base=...))."""
        if self._server is not None:
            assert self.base_url is not None
            return self.base_url
        fake = self

        class Handler(_FakeStripeRequestHandler):
            stripe_fake = fake

        server = LocalServer(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-stripe", daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
        self.base_url = None

    def __enter__(self) -> FakeStripe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ------------------------------------------------------------------

    def fail_next(self, path_prefix: str, times: int = 1, kind: FailureKind = "api_error", *,
                  method: str | None = None, after_effect: bool = False) -> None:
        """The next `times` requests whose path starts with `path_prefix` (and whose method is
        `method`, if given) fail as `kind`. By default they fail before doing anything, so a
        retry succeeds afresh. With after_effect=True the request takes effect (and its response
        is stored under its idempotency key) and only then is the answer lost: the case
        idempotency keys exist for. A retry under the same key that meets one of the remaining
        failures is replayed (no second effect) and loses its answer the same way."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            if kind == "hang":
                self._unhang.clear()
            self._failures.append(_Failure(path_prefix, kind, times, method and method.upper(),
                                           after_effect))

    def unhang(self) -> None:
        """Let every hung request go (its connection drops) and stop hanging new ones."""
        with self._lock:
            self._failures = [f for f in self._failures if f.kind != "hang"]
        self._unhang.set()

    def money_out(self, escrow_id: str) -> dict[str, int]:
        """Cents that left the platform for this escrow, by kind."""
        with self._lock:
            return {
                "transferred": sum(t["amount"] for t in self.transfers
                                   if t["metadata"].get("escrow_id") == escrow_id),
                "refunded": sum(r["amount"] for r in self.refunds
                                if r["status"] == "succeeded"
                                and r["metadata"].get("escrow_id") == escrow_id),
            }

    def event(self, type_: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A webhook event of `type_` carrying a snapshot of `obj`, with a fresh evt_ id."""
        event = {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": stripe.api_version,
            "created": int(time.time()),
            "data": {"object": copy.deepcopy(dict(obj))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        with self._lock:
            self.events.append(event)
        return copy.deepcopy(event)

    def succeed_payment(self, pi_id: str, amount: int | None = None) -> dict[str, Any]:
        """The poster's payment went through: the intent is succeeded with `amount` (default:
        its full amount) received. Returns the `payment_intent.succeeded` event."""
        with self._lock:
            pi = self.payment_intents[pi_id]
            if pi["status"] == "canceled":
                raise ValueError(f"{pi_id} is canceled and cannot succeed")
            pi.update(status="succeeded", amount_received=pi["amount"] if amount is None else amount,
                      amount_capturable=0, latest_charge=pi["latest_charge"] or _new_id("ch"),
                      last_payment_error=None)
            return self.event("payment_intent.succeeded", pi)

    def fail_payment(self, pi_id: str, decline_code: str = "generic_decline") -> dict[str, Any]:
        """The poster's card was declined. Returns the `payment_intent.payment_failed` event."""
        with self._lock:
            pi = self.payment_intents[pi_id]
            pi.update(status="requires_payment_method", last_payment_error={
                "type": "card_error", "code": "card_declined", "decline_code": decline_code,
                "message": "Your card was declined."})
            return self.event("payment_intent.payment_failed", pi)

    def cancel_event(self, pi_id: str) -> dict[str, Any]:
        """The intent is canceled (unless it already was). Returns `payment_intent.canceled`."""
        with self._lock:
            pi = self.payment_intents[pi_id]
            if pi["status"] != "canceled":
                if pi["status"] not in CANCELABLE:
                    raise ValueError(f"{pi_id} is {pi['status']} and cannot be canceled")
                pi.update(status="canceled", canceled_at=int(time.time()), cancellation_reason="abandoned")
            return self.event("payment_intent.canceled", pi)

    @staticmethod
    def sign(event_or_payload: Mapping[str, Any] | str | bytes, secret: str,
             timestamp: int | None = None) -> tuple[bytes, str]:
        """(body, Stripe-Signature header) as Stripe would deliver them, signed with `secret`."""
        if isinstance(event_or_payload, bytes):
            payload = event_or_payload.decode("utf-8")
        elif isinstance(event_or_payload, str):
            payload = event_or_payload
        else:
            payload = json.dumps(event_or_payload)
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
        return payload.encode("utf-8"), header

    # -- the request path -----------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: str | bytes
               ) -> Response:
        """Answer one API request: (status, JSON body, response headers). Raises NetworkFailure
        when the connection is to die instead."""
        method = method.upper()
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        lowered = {k.lower(): v for k, v in headers.items()}
        key = lowered.get("idempotency-key") if method == "POST" else None
        params = decode_form(body if method == "POST" else query)
        with self._lock:
            self.calls.append((method, path, copy.deepcopy(params), key))
            failure = self._take_failure(method, path)
            hang_first = failure is not None and failure.kind == "hang" and not failure.after_effect
            if failure is not None and not failure.after_effect and not hang_first:
                return self._fail(failure.kind)
        if hang_first:
            return self._fail("hang")
        with self._lock:
            try:
                self._authenticate(lowered.get("authorization"))
                if key is not None and key in self._idempotent:
                    # A replay loses its answer to an injected failure like the first request did.
                    answer = self._replay(self._idempotent[key], method, path, params, key)
                else:
                    status, obj = self._route(method, path, params)
                    answer = _response(status, obj)
                    if key is not None:
                        self._idempotent[key] = _Stored(method, path, params, status, answer[1])
            except _StripeError as err:
                return _response(err.status, {"error": err.body})
            if failure is not None and failure.kind != "hang":
                return self._fail(failure.kind)
        if failure is not None:
            return self._fail(failure.kind)
        return answer

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if path.startswith(failure.path_prefix) and failure.method in (None, method):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _fail(self, kind: FailureKind) -> Response:
        if kind == "hang":
            # Called without the lock held, so other requests are answered meanwhile.
            self._unhang.wait(HANG_SECONDS)
            raise NetworkFailure("fake Stripe hung up after hanging")
        if kind == "network":
            raise NetworkFailure("connection reset by fake Stripe")
        errors: dict[str, tuple[int, dict[str, Any]]] = {
            "api_error": (500, {"type": "api_error",
                                "message": "An unknown error occurred while processing your request."}),
            "card_error": (402, {"type": "card_error", "code": "card_declined",
                                 "decline_code": "generic_decline", "message": "Your card was declined."}),
            # Since API 2015-09-08 a rate-limited request is a bare 429, with no error code.
            "rate_limit": (429, {"type": "invalid_request_error",
                                 "message": "Too many requests hit the API too quickly."}),
            "lock_timeout": (429, {"type": "invalid_request_error", "code": "lock_timeout",
                                   "message": "This object cannot be accessed right now because another "
                                              "API request or Stripe process is currently accessing it."}),
            "invalid_request": (400, {"type": "invalid_request_error", "code": "parameter_invalid_empty",
                                      "message": "Invalid request (injected by the fake)."}),
            "auth": (401, {"type": "invalid_request_error", "message": "Invalid API Key provided."}),
            "conflict": (409, {"type": "idempotency_error",
                               "message": "There is currently another in-progress request using this "
                                          "Idempotent Key (that probably means you submitted twice)."}),
        }
        status, error = errors[kind]
        return _response(status, {"error": error})

    @staticmethod
    def _authenticate(authorization: str | None) -> None:
        if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise _StripeError(401, "invalid_request_error", "You did not provide an API key.")

    @staticmethod
    def _replay(stored: _Stored, method: str, path: str, params: dict[str, Any], key: str) -> Response:
        if (stored.method, stored.path) != (method, path):
            raise _StripeError(400, "idempotency_error",
                               f"Keys for idempotent requests can only be used for the same endpoint they "
                               f"were first used for ('{stored.method} {stored.path}' vs '{method} {path}').")
        if stored.params != params:
            raise _StripeError(400, "idempotency_error",
                               f"Keys for idempotent requests can only be used with the same parameters "
                               f"they were first used with. Try using a key other than '{key}'.")
        return stored.status, stored.body, {"Request-Id": _new_id("req"), "Idempotent-Replayed": "true",
                                            "Content-Type": "application/json"}

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return handler(params, **match.groupdict())
        raise _StripeError(404, "invalid_request_error",
                           f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                           f"or we can help at https://support.stripe.com/.")

    # -- endpoints (called under the lock) -----------------------------------------------

    def _create_payment_intent(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _allow(params, {"amount", "currency", "capture_method", "metadata", "description", "transfer_group",
                        "automatic_payment_methods", "payment_method_types", "customer", "receipt_email",
                        "statement_descriptor_suffix", "setup_future_usage", "radar_options",
                        "on_behalf_of", "application_fee_amount"})
        amount = _int_param(params, "amount", required=True)
        if amount < 50:
            raise _StripeError(400, "invalid_request_error", "Amount must be at least $0.50 usd",
                               code="amount_too_small", param="amount")
        currency = _str_param(params, "currency", required=True).lower()
        capture_method = _str_param(params, "capture_method") or "automatic_async"
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise _StripeError(400, "invalid_request_error", f"Invalid capture_method: {capture_method}",
                               code="parameter_invalid_string", param="capture_method")
        pi_id = _new_id("pi")
        pi = {
            "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": 0, "automatic_payment_methods": {"enabled": True},
            "canceled_at": None, "cancellation_reason": None, "capture_method": capture_method,
            "client_secret": f"{pi_id}_secret_{secrets.token_hex(12)}", "confirmation_method": "automatic",
            "created": int(time.time()), "currency": currency, "description": params.get("description"),
            "last_payment_error": None, "latest_charge": None, "livemode": False,
            "metadata": _metadata(params), "payment_method": None, "payment_method_types": ["card"],
            "status": "requires_payment_method", "transfer_group": params.get("transfer_group"),
        }
        self.payment_intents[pi_id] = pi
        return 200, pi

    def _payment_intent(self, pi_id: str, param: str = "intent") -> dict[str, Any]:
        pi = self.payment_intents.get(pi_id)
        if pi is None:
            status = 404 if param == "intent" else 400
            raise _StripeError(status, "invalid_request_error", f"No such payment_intent: '{pi_id}'",
                               code="resource_missing", param=param)
        return pi

    def _retrieve_payment_intent(self, params: dict[str, Any], pi_id: str) -> tuple[int, dict[str, Any]]:
        _allow(params, {"client_secret"})
        return 200, self._payment_intent(pi_id)

    def _cancel_payment_intent(self, params: dict[str, Any], pi_id: str) -> tuple[int, dict[str, Any]]:
        _allow(params, {"cancellation_reason"})
        pi = self._payment_intent(pi_id)
        if pi["status"] not in CANCELABLE:
            raise _StripeError(
                400, "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a "
                f"PaymentIntent with one of the following statuses may be canceled: "
                f"{', '.join(sorted(CANCELABLE))}.",
                code="payment_intent_unexpected_state", payment_intent=copy.deepcopy(pi))
        reason = _str_param(params, "cancellation_reason")
        if reason is not None and reason not in CANCEL_REASONS:
            raise _StripeError(400, "invalid_request_error", f"Invalid cancellation_reason: {reason}",
                               code="parameter_invalid_string", param="cancellation_reason")
        pi.update(status="canceled", canceled_at=int(time.time()), cancellation_reason=reason)
        return 200, pi

    def _create_transfer(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _allow(params, {"amount", "currency", "destination", "transfer_group", "metadata", "description",
                        "source_transaction", "source_type"})
        amount = _int_param(params, "amount", required=True)
        if amount < 1:
            raise _StripeError(400, "invalid_request_error", "Amount must be at least 1 cent",
                               code="amount_too_small", param="amount")
        currency = _str_param(params, "currency", required=True).lower()
        destination = _str_param(params, "destination", required=True)
        if not destination.startswith("acct_"):
            raise _StripeError(400, "invalid_request_error", f"No such destination: '{destination}'",
                               code="resource_missing", param="destination")
        self._check_transfer_destination(destination)
        tr_id = _new_id("tr")
        transfer = {
            "id": tr_id, "object": "transfer", "amount": amount, "amount_reversed": 0,
            "balance_transaction": _new_id("txn"), "created": int(time.time()), "currency": currency,
            "description": params.get("description"), "destination": destination,
            "destination_payment": _new_id("py"), "livemode": False, "metadata": _metadata(params),
            "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                          "url": f"/v1/transfers/{tr_id}/reversals"},
            "reversed": False, "source_transaction": params.get("source_transaction"),
            "source_type": "card", "transfer_group": params.get("transfer_group"),
        }
        self.transfers.append(transfer)
        return 200, transfer

    def _list_transfers(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _allow(params, {"transfer_group", "destination", "limit"})
        filters = {name: params[name] for name in ("transfer_group", "destination") if name in params}
        found = [t for t in reversed(self.transfers) if all(t[k] == v for k, v in filters.items())]
        return 200, _page("/v1/transfers", found, params)

    def _create_refund(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _allow(params, {"payment_intent", "amount", "reason", "metadata", "instructions_email",
                        "refund_application_fee", "reverse_transfer"})
        pi = self._payment_intent(_str_param(params, "payment_intent", required=True), "payment_intent")
        if pi["status"] != "succeeded":
            raise _StripeError(
                400, "invalid_request_error",
                f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                code="payment_intent_unexpected_state", param="payment_intent")
        already = sum(r["amount"] for r in self.refunds
                      if r["payment_intent"] == pi["id"] and r["status"] == "succeeded")
        remaining = pi["amount_received"] - already
        if remaining <= 0:
            raise _StripeError(400, "invalid_request_error", f"Charge {pi['latest_charge']} has already been "
                               "refunded.", code="charge_already_refunded")
        amount = _int_param(params, "amount")
        if amount is None:
            amount = remaining
        if amount < 1:
            raise _StripeError(400, "invalid_request_error", "Amount must be at least 1 cent",
                               code="amount_too_small", param="amount")
        if amount > remaining:
            raise _StripeError(400, "invalid_request_error",
                               f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                               f"({remaining})", code="amount_too_large", param="amount")
        reason = _str_param(params, "reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise _StripeError(400, "invalid_request_error", f"Invalid reason: {reason}",
                               code="parameter_invalid_string", param="reason")
        refund = {
            "id": _new_id("re"), "object": "refund", "amount": amount, "balance_transaction": _new_id("txn"),
            "charge": pi["latest_charge"], "created": int(time.time()), "currency": pi["currency"],
            "metadata": _metadata(params), "payment_intent": pi["id"], "reason": reason,
            "status": "succeeded",
        }
        self.refunds.append(refund)
        return 200, refund

    def _list_refunds(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _allow(params, {"payment_intent", "limit"})
        found = [r for r in reversed(self.refunds)
                 if "payment_intent" not in params or r["payment_intent"] == params["payment_intent"]]
        return 200, _page("/v1/refunds", found, params)

    # -- charges, disputes, Radar, transfer reversals, payouts (issue 12: money events) ------
    # State and routes of their own, so other extensions of the fake merge without touching them.

    def _init_money_events(self) -> None:
        self.disputes: dict[str, dict[str, Any]] = {}
        self.payouts: dict[str, dict[str, Any]] = {}
        # PaymentIntent id -> the Radar risk level its charge gets (default "normal").
        self.risk_levels: dict[str, str] = {}
        self._routes.append(("GET", re.compile(r"/v1/charges/(?P<ch_id>[^/]+)"), self._retrieve_charge))

    def set_risk(self, pi_id: str, risk_level: str) -> None:
        """Radar will score the charge of this intent `risk_level` (normal, elevated, highest)."""
        with self._lock:
            self._payment_intent(pi_id)
            self.risk_levels[pi_id] = risk_level

    def charge_of(self, pi_id: str) -> dict[str, Any]:
        """The charge object of a succeeded intent, as GET /v1/charges/{id} answers it."""
        with self._lock:
            pi = self._payment_intent(pi_id)
            if not pi.get("latest_charge"):
                raise ValueError(f"{pi_id} has no charge yet")
            return self._charge(pi)

    def _charge(self, pi: dict[str, Any]) -> dict[str, Any]:
        risk = self.risk_levels.get(pi["id"], "normal")
        score = {"normal": 20, "elevated": 70, "highest": 90}.get(risk, 50)
        refunded = sum(r["amount"] for r in self.refunds
                       if r["payment_intent"] == pi["id"] and r["status"] == "succeeded")
        return {
            "id": pi["latest_charge"], "object": "charge", "amount": pi["amount"],
            "amount_captured": pi["amount_received"], "amount_refunded": refunded, "currency": pi["currency"],
            "created": pi["created"], "livemode": False, "metadata": dict(pi["metadata"]),
            "outcome": {"network_status": "approved_by_network", "reason": None, "risk_level": risk,
                        "risk_score": score, "seller_message": "Payment complete.", "type": "authorized"},
            "paid": True, "payment_intent": pi["id"], "refunded": refunded >= pi["amount_received"] > 0,
            "disputed": any(d["charge"] == pi["latest_charge"] for d in self.disputes.values()),
            "status": "succeeded", "transfer_group": pi.get("transfer_group"),
        }

    def _retrieve_charge(self, params: dict[str, Any], ch_id: str) -> tuple[int, dict[str, Any]]:
        _allow(params, set())
        for pi in self.payment_intents.values():
            if pi.get("latest_charge") == ch_id:
                return 200, self._charge(pi)
        raise _StripeError(404, "invalid_request_error", f"No such charge: '{ch_id}'", code="resource_missing",
                           param="id")

    def open_dispute(self, pi_id: str, *, amount: int | None = None, reason: str = "fraudulent"
                     ) -> dict[str, Any]:
        """The poster's bank disputes the charge (a chargeback). Returns charge.dispute.created."""
        with self._lock:
            pi = self._payment_intent(pi_id)
            if pi["status"] != "succeeded":
                raise ValueError(f"{pi_id} has no successful charge to dispute")
            dispute = {
                "id": _new_id("dp"), "object": "dispute", "amount": pi["amount_received"] if amount is None
                else amount, "charge": pi["latest_charge"], "currency": pi["currency"], "created": int(time.time()),
                "is_charge_refundable": False, "livemode": False, "metadata": {}, "payment_intent": pi_id,
                "reason": reason, "status": "needs_response",
            }
            self.disputes[dispute["id"]] = dispute
            return self.event("charge.dispute.created", dispute)

    def close_dispute(self, dispute_id: str, outcome: Literal["won", "lost", "warning_closed"]) -> dict[str, Any]:
        """The bank decided. Returns charge.dispute.closed."""
        with self._lock:
            dispute = self.disputes[dispute_id]
            dispute["status"] = outcome
            return self.event("charge.dispute.closed", dispute)

    def reverse_transfer(self, transfer_id: str, amount: int | None = None) -> dict[str, Any]:
        """The platform pulls (part of) a transfer back from the worker. Returns transfer.reversed."""
        with self._lock:
            transfer = next(t for t in self.transfers if t["id"] == transfer_id)
            amount = transfer["amount"] - transfer["amount_reversed"] if amount is None else amount
            if not 0 < amount <= transfer["amount"] - transfer["amount_reversed"]:
                raise ValueError(f"cannot reverse {amount} of {transfer_id}")
            reversal = {"id": _new_id("trr"), "object": "transfer_reversal", "amount": amount,
                        "created": int(time.time()), "currency": transfer["currency"], "metadata": {},
                        "transfer": transfer_id}
            transfer["reversals"]["data"].append(reversal)
            transfer["reversals"]["total_count"] += 1
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            return self.event("transfer.reversed", transfer)

    def fail_payout(self, account: str, amount: int, failure_code: str = "account_closed") -> dict[str, Any]:
        """A connected account's payout to its bank failed. Returns payout.failed, an event of
        that account (the event carries `account`, as Connect events do)."""
        with self._lock:
            payout = {
                "id": _new_id("po"), "object": "payout", "amount": amount, "arrival_date": int(time.time()),
                "currency": "usd", "destination": _new_id("ba"), "failure_code": failure_code,
                "failure_message": "The bank account has been closed.", "livemode": False, "metadata": {},
                "method": "standard", "status": "failed", "type": "bank_account",
            }
            self.payouts[payout["id"]] = payout
            event = self.event("payout.failed", payout)
            event["account"] = account
            self.events[-1]["account"] = account
            return event

    def money_back(self, escrow_id: str) -> dict[str, int]:
        """Cents that came back from elsewhere for this escrow: transfers the platform reversed,
        and charges the poster's bank took back (lost disputes)."""
        with self._lock:
            intents = {pi["id"] for pi in self.payment_intents.values()
                       if pi["metadata"].get("escrow_id") == escrow_id}
            return {
                "reversed": sum(t["amount_reversed"] for t in self.transfers
                                if t["metadata"].get("escrow_id") == escrow_id),
                "charged_back": sum(d["amount"] for d in self.disputes.values()
                                    if d["payment_intent"] in intents and d["status"] == "lost"),
            }


    # -- Connect: Express accounts, Account Links, account.updated (issue 12a) ---------------
    # Accounts made here start restricted (transfers inactive, requirements due). Following an
    # Account Link (a browser GET on the served fake, or follow_link() in process) is the worker
    # finishing Stripe's forms: the account becomes complete and an account.updated event is
    # recorded for the test to deliver. Transfers to an account made here go through only while
    # its transfers capability is active, as at Stripe; other acct_ ids are taken as given.

    def _init_connect(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.account_links: dict[str, dict[str, Any]] = {}
        self._routes += [
            ("POST", re.compile(r"/v1/accounts"), self._create_account),
            ("GET", re.compile(r"/v1/accounts/(?P<account_id>[^/]+)"), self._retrieve_account),
            ("POST", re.compile(r"/v1/account_links"), self._create_account_link),
        ]

    def complete_onboarding(self, account_id: str) -> dict[str, Any]:
        """The worker finished Stripe's forms: details submitted, charges and payouts enabled,
        transfers active, nothing due. Returns the `account.updated` event."""
        with self._lock:
            account = self._account(account_id)
            account.update(details_submitted=True, charges_enabled=True, payouts_enabled=True,
                           capabilities={**account["capabilities"], "transfers": "active"})
            account["requirements"] = _requirements([], disabled_reason=None)
            return self.event("account.updated", account)

    def restrict_account(self, account_id: str, currently_due: tuple[str, ...] = ("individual.verification.document",),
                         disabled_reason: str = "requirements.past_due") -> dict[str, Any]:
        """Stripe wants more from the worker: payouts (and transfers) stop until it gets it.
        Returns the `account.updated` event."""
        with self._lock:
            account = self._account(account_id)
            account.update(payouts_enabled=False, charges_enabled=False,
                           capabilities={**account["capabilities"], "transfers": "inactive"})
            account["requirements"] = _requirements(list(currently_due), disabled_reason=disabled_reason)
            return self.event("account.updated", account)

    def follow_link(self, url_or_id: str) -> tuple[str, dict[str, Any] | None]:
        """Open an Account Link as the worker's browser would: (where Stripe redirects, the
        account.updated event or None). A link works once and for 5 minutes; a used or expired
        one sends the worker to its refresh_url, with nothing changed."""
        link_id = url_or_id.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            link = self.account_links.get(link_id)
            if link is None:
                return "about:blank", None
            if link["used"] or link["expires_at"] < time.time():
                return link["refresh_url"], None
            link["used"] = True
            return link["return_url"], self.complete_onboarding(link["account"])

    def _account(self, account_id: str, param: str | None = None) -> dict[str, Any]:
        account = self.accounts.get(account_id)
        if account is None:
            raise _StripeError(404 if param is None else 400, "invalid_request_error",
                               f"No such account: '{account_id}'", code="resource_missing", param=param)
        return account

    def _check_transfer_destination(self, destination: str) -> None:
        account = self.accounts.get(destination)
        if account is not None and account["capabilities"].get("transfers") != "active":
            raise _StripeError(400, "invalid_request_error",
                               "Your destination account needs to have at least one of the following "
                               "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                               code="insufficient_capabilities_for_transfer", param="destination")

    def _create_account(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _allow(params, {"type", "email", "country", "capabilities", "business_type", "metadata",
                        "business_profile", "settings", "tos_acceptance", "controller"})
        type_ = _str_param(params, "type") or "standard"
        if type_ not in ("express", "standard", "custom"):
            raise _StripeError(400, "invalid_request_error", f"Invalid type: {type_}",
                               code="parameter_invalid_string", param="type")
        business_type = _str_param(params, "business_type")
        if business_type is not None and business_type not in ("individual", "company", "non_profit",
                                                               "government_entity"):
            raise _StripeError(400, "invalid_request_error", f"Invalid business_type: {business_type}",
                               code="parameter_invalid_string", param="business_type")
        requested = params.get("capabilities") or {}
        if not isinstance(requested, dict):
            raise _StripeError(400, "invalid_request_error", "Invalid capabilities", param="capabilities")
        capabilities = {name: "inactive" for name, ask in requested.items()
                        if isinstance(ask, dict) and ask.get("requested") == "true"}
        account_id = _new_id("acct")
        account = {
            "id": account_id, "object": "account", "type": type_, "email": params.get("email"),
            "country": _str_param(params, "country") or "US", "business_type": business_type,
            "capabilities": capabilities, "charges_enabled": False, "payouts_enabled": False,
            "details_submitted": False, "created": int(time.time()), "default_currency": "usd",
            "metadata": _metadata(params),
            "requirements": _requirements(["external_account", "individual.dob.day", "individual.first_name",
                                           "individual.last_name", "tos_acceptance.date", "tos_acceptance.ip"],
                                          disabled_reason="requirements.past_due"),
        }
        self.accounts[account_id] = account
        return 200, account

    def _retrieve_account(self, params: dict[str, Any], account_id: str) -> tuple[int, dict[str, Any]]:
        _allow(params, set())
        return 200, self._account(account_id)

    def _create_account_link(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        _allow(params, {"account", "refresh_url", "return_url", "type", "collect", "collection_options"})
        account = self._account(_str_param(params, "account", required=True), "account")
        type_ = _str_param(params, "type", required=True)
        if type_ not in ("account_onboarding", "account_update"):
            raise _StripeError(400, "invalid_request_error", f"Invalid type: {type_}",
                               code="parameter_invalid_string", param="type")
        urls = {name: _str_param(params, name, required=name == "return_url") for name in ("refresh_url", "return_url")}
        for name, url in urls.items():
            if url is not None and not re.match(r"https?://", url):
                raise _StripeError(400, "invalid_request_error", f"Not a valid URL: {name}",
                                   code="url_invalid", param=name)
        link_id = secrets.token_hex(12)
        created = int(time.time())
        self.account_links[link_id] = {"account": account["id"], "used": False, "expires_at": created + 300,
                                       "refresh_url": urls["refresh_url"] or urls["return_url"],
                                       "return_url": urls["return_url"]}
        base = self.base_url or "https://connect.stripe.test"
        return 200, {"object": "account_link", "created": created, "expires_at": created + 300,
                     "url": f"{base}{ONBOARDING_PATH}{link_id}"}


class FakeStripeHTTPClient(stripe.HTTPClient):
    """stripe-python's custom HTTP client interface, answered by a FakeStripe in-process."""

    name = "hustlexp-fake-stripe"

    def __init__(self, fake: FakeStripe) -> None:
        super().__init__()
        self.fake = fake

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
                *, _usage: list[str] | None = None) -> tuple[str, int, Mapping[str, str]]:
        parts = urlsplit(url)
        try:
            status, body, response_headers = self.fake.handle(method, parts.path, parts.query, headers or {},
                                                              post_data or "")
        except NetworkFailure as err:
            # should_retry=True is what the library's own clients set for a dropped connection.
            raise stripe.APIConnectionError(f"Network error talking to fake Stripe: {err}",
                                            should_retry=True) from err
        return body, status, CaseInsensitiveDict(response_headers)

    def close(self) -> None:
        return None


class _FakeStripeRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 as Stripe's API speaks it to the library: keep-alive, every answer with its
    Content-Length. Only the socket loop is http.server's: a request is read with a plain header
    reader and answered in one write, because http.server's email-based header parsing and
    line-by-line response were most of this fake's CPU per call, and the throughput benchmark
    runs it on the machine it measures (real Stripe's CPU is elsewhere)."""

    stripe_fake: FakeStripe
    protocol_version = "HTTP/1.1"
    # An answer leaves in one write; a client's request may still come in pieces.
    disable_nagle_algorithm = True
    fields: dict[str, str]

    def setup(self) -> None:
        super().setup()
        with self.stripe_fake._lock:
            self.stripe_fake.connections += 1

    def handle_one_request(self) -> None:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            self.close_connection = True
            return
        request = line.decode("latin-1").split()
        fields: dict[str, str] = {}
        well_formed = len(line) <= _MAX_LINE and len(request) == 3 and request[2] in ("HTTP/1.0", "HTTP/1.1")
        for _ in range(_MAX_HEADERS + 1):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, colon, value = raw.decode("latin-1").partition(":")
            well_formed = well_formed and bool(colon) and len(fields) < _MAX_HEADERS and len(raw) <= _MAX_LINE
            fields[name.strip().lower()] = value.strip()
        if not well_formed:
            self.close_connection = True
            self._send(400, {}, b"")
            return
        self.command, self.path, self.request_version = request
        self.fields = fields
        self.close_connection = (self.request_version == "HTTP/1.0"
                                 or fields.get("connection", "").lower() == "close")
        if self.command not in ("GET", "POST", "DELETE"):
            self._send(501, {}, b"")
            return
        self._answer()

    def _answer(self) -> None:
        length = int(self.fields.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        if self.command == "GET" and parts.path.startswith(ONBOARDING_PATH):
            location = self.stripe_fake.follow_link(parts.path.removeprefix(ONBOARDING_PATH))[0]
            self._send(302, {"Location": location}, b"")
            return
        peer = self.client_address[1]
        self.stripe_fake.answering.add(peer)  # from now on, a call (a delayed one too) is open here
        try:
            if self.stripe_fake.latency:
                time.sleep(self.stripe_fake.latency)
            status, text, headers = self.stripe_fake.handle(self.command, parts.path, parts.query, self.fields, body)
        except NetworkFailure:
            # Close without a byte of response: the client sees the connection drop.
            self.close_connection = True
            return
        finally:
            self.stripe_fake.answering.discard(peer)
        self._send(status, headers, text.encode("utf-8"))

    def _send(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers.items()),
                 f"Content-Length: {len(data)}"]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + data)


# -- helpers ----------------------------------------------------------------------------------


def decode_form(text: str) -> dict[str, Any]:
    """Undo stripe-python's form encoding: `metadata[k]=v` → {"metadata": {"k": "v"}},
    `expand[0]=a` → {"expand": ["a"]}. Values stay strings, as Stripe receives them."""
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        head, _, tail = raw_key.partition("[")
        if not tail:
            root[head or str(len(root))] = value
            continue
        path = [head, *_SUBSCRIPT.findall(tail)]
        node = root
        for part in path[:-1]:
            # "[]" appends, as in `expand[]=a` in a query string.
            node = node.setdefault(part or str(len(node)), {})
        node[path[-1] or str(len(node))] = value
    return _listify(root)


_SUBSCRIPT = re.compile(r"([^\[\]]*)\]")


def _listify(node: dict[str, Any]) -> Any:
    """Nested dicts whose keys are all indexes become lists (in place, bottom up)."""
    for key, value in node.items():
        if isinstance(value, dict):
            node[key] = _listify(value)
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def _allow(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed and name != "expand":
            raise _StripeError(400, "invalid_request_error", f"Received unknown parameter: {name}",
                               code="parameter_unknown", param=name)


def _str_param(params: dict[str, Any], name: str, *, required: bool = False) -> Any:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _StripeError(400, "invalid_request_error", f"Missing required param: {name}.",
                               code="parameter_missing", param=name)
        return None
    if not isinstance(value, str):
        raise _StripeError(400, "invalid_request_error", f"Invalid string: {name}",
                           code="parameter_invalid_string", param=name)
    return value


def _int_param(params: dict[str, Any], name: str, *, required: bool = False) -> Any:
    value = _str_param(params, name, required=required)
    if value is None:
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise _StripeError(400, "invalid_request_error", f"Invalid integer: {value}",
                           code="parameter_invalid_integer", param=name)
    return int(value)


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _StripeError(400, "invalid_request_error", "Invalid metadata", code="parameter_invalid_string",
                           param="metadata")
    # Stripe drops keys set to "" (that is how metadata keys are unset).
    return {str(k): str(v) for k, v in metadata.items() if v != ""}


def _requirements(currently_due: list[str], *, disabled_reason: str | None) -> dict[str, Any]:
    return {"currently_due": currently_due, "eventually_due": list(currently_due), "past_due": list(currently_due),
            "pending_verification": [], "errors": [], "current_deadline": None, "disabled_reason": disabled_reason}


def _page(url: str, items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    limit = _int_param(params, "limit") or 10
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def _response(status: int, obj: Mapping[str, Any]) -> Response:
    return status, json.dumps(obj), {"Request-Id": _new_id("req"), "Content-Type": "application/json"}
