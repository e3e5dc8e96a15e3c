"""StripeWebhookHandler: Stripe's events, verified, applied once (DESIGN §3.6, spec api.md §5).

The event id is inserted into processed_stripe_events in the same transaction as the
event's effect: a replay — even ten deliveries racing each other — finds the id and does
nothing, and a failure rolls both back so Stripe's retry finds a clean slate. Handlers look
escrows up by our own metadata, so no delivery order is assumed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hustlexp.errors import ValidationError
from hustlexp.services.base import Service, about, one, returns_result
from hustlexp.services.connect import event_time

log = logging.getLogger(__name__)

MAX_EVENT_ID = 255  # processed_stripe_events.event_id
MAX_CREATED = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds


class StripeWebhookHandler(Service):
    @returns_result
    def handle(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify and apply one delivery. Signature problems fail with
        WEBHOOK_SIGNATURE_INVALID (400); a handler error propagates (500, Stripe retries)."""
        event = self.s.payments.construct_event(payload, signature)
        try:
            check_event_shape(event)
        except ValidationError as exc:
            # Signed by Stripe yet unusable: retrying will not fix it, and a 5xx would make
            # Stripe redeliver this poison event for days. 400 once, nothing recorded.
            log.warning("stripe event %.80r refused: %s %s", event.get("id"), exc.message, exc.details)
            raise
        return self.process(event)

    def process(self, event: dict[str, Any]) -> dict[str, Any]:
        check_event_shape(event)
        event_id, event_type = event["id"], event["type"]
        looked_up = self._look_up(event)
        with self.db.transaction() as conn:
            # The claim is written with the usual outcome, so only another outcome costs an
            # UPDATE; no other transaction sees the row before this one commits it, outcome and all.
            claim = (_CLAIM, {"event_id": event_id, "event_type": event_type})
            if event_type == "payment_intent.succeeded":
                # The usual funding claims the event in its own statement (None: claimed before).
                outcome = self._payment_succeeded(event["data"]["object"], looked_up.get("risk_level"), claim)
            elif one(conn, *claim) is not None:
                handler = self._handlers(event).get(event_type)
                obj = event["data"]["object"]
                outcome = handler(obj) if handler else self._money_event(event, looked_up)
            else:
                outcome = None
            if outcome is None:
                log.info("stripe event %s (%s) already processed", event_id, event_type)
                return {"event_id": event_id, "type": event_type, "result": "duplicate"}
            if (outcome["result"], outcome.get("reason")) != ("processed", None):
                conn.execute("UPDATE processed_stripe_events SET result = %s, error_message = %s "
                             "WHERE event_id = %s", (outcome["result"], outcome.get("reason"), event_id))
        log.info("stripe event %s (%s): %s", event_id, event_type, outcome)
        return {"event_id": event_id, "type": event_type, **outcome}

    def _handlers(self, event: dict[str, Any]) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "payment_intent.canceled": self._payment_canceled,
            "payment_intent.payment_failed": self._payment_failed,
            "transfer.created": self._transfer_created,
            "charge.refunded": self._charge_refunded,
            # Connect onboarding (issue 12a): our copy of the worker's account, ordered by the event's time.
            "account.updated": lambda account: self.s.connect.apply(account, as_of=event_time(event)).unwrap(),
        }

    def _payment_canceled(self, pi: dict[str, Any]) -> dict[str, Any]:
        return self.s.escrows.handle_payment_canceled(
            payment_intent_id=pi["id"], escrow_id=_meta(pi, "escrow_id")).unwrap()

    def _payment_failed(self, pi: dict[str, Any]) -> dict[str, Any]:
        error = pi.get("last_payment_error") or {}
        log.warning("payment %s failed: %s %s", pi.get("id"), error.get("code"), error.get("message"))
        with self.db.transaction() as conn:
            task = one(conn, """SELECT t.id, t.poster_id, t.title FROM escrows e JOIN tasks t ON t.id = e.task_id
                                 WHERE e.stripe_payment_intent_id = %s OR e.id::text = %s""",
                       (pi.get("id"), _meta(pi, "escrow_id") or ""))
        if task is None:
            return {"result": "ignored", "reason": "unknown_payment_intent"}
        self._notify(task["poster_id"], "PAYMENT_FAILED", **about(task, code=error.get("code")))
        return {"result": "processed"}

    def _transfer_created(self, transfer: dict[str, Any]) -> dict[str, Any]:
        escrow_id = _meta(transfer, "escrow_id") or transfer.get("transfer_group")
        if not escrow_id:
            return {"result": "ignored", "reason": "transfer without escrow metadata"}
        return self.s.escrows.record_stripe_id(escrow_id=escrow_id, kind="transfer",
                                               stripe_id=transfer["id"]).unwrap()

    def _charge_refunded(self, charge: dict[str, Any]) -> dict[str, Any]:
        refunds = (charge.get("refunds") or {}).get("data") or []
        escrow_id = _meta(charge, "escrow_id") or next(
            (_meta(r, "escrow_id") for r in refunds if _meta(r, "escrow_id")), None)
        if not escrow_id or not refunds:
            return {"result": "ignored", "reason": "refund without escrow metadata"}
        return self.s.escrows.record_stripe_id(escrow_id=escrow_id, kind="refund",
                                               stripe_id=refunds[0]["id"]).unwrap()

    # -- money events (issue 12): handlers that need the whole event or a Stripe read ------------

    def _look_up(self, event: dict[str, Any]) -> dict[str, Any]:
        """What an event needs from Stripe's API, read before any lock is taken (a replay skips it).
        A failed read fails the delivery, and Stripe's redelivery tries again."""
        if event["type"] != "payment_intent.succeeded":
            return {}
        charge = event["data"]["object"].get("latest_charge")
        if isinstance(charge, dict):
            return {"risk_level": (charge.get("outcome") or {}).get("risk_level")}
        if not charge:
            return {"risk_level": None}
        # Only a charge Stripe must be asked about costs a look-up first: a replay skips the call.
        if self.db.run_repeatable(lambda conn: one(
                conn, "SELECT 1 FROM processed_stripe_events WHERE event_id = %s", (event["id"],))):
            return {}
        from hustlexp.services.payments import PaymentError

        try:
            return {"risk_level": self.s.payments.charge_risk_level(charge)}
        except PaymentError as exc:
            if exc.retryable:
                raise
            # Stripe will never show us this charge: fund without a verdict rather than refuse forever.
            log.warning("charge %s of event %s unreadable (%s): funding without a risk level", charge,
                        event["id"], exc.stripe_code)
            return {"risk_level": None}

    def _money_event(self, event: dict[str, Any], looked_up: dict[str, Any]) -> dict[str, Any]:
        obj = event["data"]["object"]
        match event["type"]:
            case "charge.dispute.created":
                return self.s.chargebacks.opened(obj)
            case "charge.dispute.closed":
                return self.s.chargebacks.closed(obj)
            case "transfer.reversed":
                return self.s.payout_incidents.transfer_reversed(obj)
            case "payout.failed":
                return self.s.payout_incidents.payout_failed(obj, event.get("account"))
        # Recorded as ignored, so a redelivery is a duplicate: logged here once, never retried.
        log.warning("stripe event %s of unhandled type %s acknowledged and ignored", event["id"], event["type"])
        return {"result": "ignored", "reason": "unhandled event type"}

    def _payment_succeeded(self, pi: dict[str, Any], risk_level: str | None,
                           claim: tuple[str, dict[str, Any]]) -> dict[str, Any] | None:
        # In process()'s transaction, with no savepoints: the funding, its risk level, the
        # notification and the event id commit or roll back together.
        conn = self.db.current()
        outcome = self.s.escrows.payment_succeeded(
            conn, payment_intent_id=pi["id"], amount_received=pi.get("amount_received") or pi.get("amount") or 0,
            escrow_id=_meta(pi, "escrow_id"), risk_level=risk_level, claim=claim)
        if outcome is None:
            return None
        if outcome.get("state") == "FUNDED" and risk_level:
            outcome |= self.s.payment_risk.record(conn, outcome["escrow_id"], risk_level)
        return outcome


# Claims an event for this delivery (no row back: an earlier delivery claimed it), recording the
# usual outcome; a statement of its own, or a data-modifying CTE of the funding's statement.
_CLAIM = """INSERT INTO processed_stripe_events (event_id, event_type, result)
            VALUES (%(event_id)s, %(event_type)s, 'processed') ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id"""

MONEY_EVENT_TYPES = ("charge.dispute.created", "charge.dispute.closed", "transfer.reversed", "payout.failed")
HANDLED_TYPES = ("payment_intent.succeeded", "payment_intent.canceled", "payment_intent.payment_failed",
                  "transfer.created", "charge.refunded", "account.updated",
                  *MONEY_EVENT_TYPES)
# Text the money-event handlers store, and the most each column holds.
_MONEY_EVENT_TEXT = {"charge": 255, "payment_intent": 255, "reason": 100, "status": 50, "destination": 255,
                     "failure_code": 100}


def check_event_shape(event: dict[str, Any]) -> None:
    """Refuse (ValidationError) a verified event whose fields the handlers could not use, so they
    can index and store what they read without guarding every access. Only what some handler
    reads is checked (text it stores must hold no NUL); the rest of Stripe's event passes
    untouched. The OpenAPI document of POST /webhooks/stripe states these same rules."""
    problems: dict[str, list[str]] = {}

    def text(value: Any, path: str, *, low: int = 1, high: int | None = None) -> None:
        if not isinstance(value, str) or len(value) < low or (high is not None and len(value) > high) \
                or not _storable(value):
            problems[path] = [f"text of {low} to {high or 'any'} characters without NUL"]

    def mapping(value: Any, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, dict):
            problems[path] = ["an object"]
            return False
        return True

    def metadata(holder: dict[str, Any], path: str) -> None:
        if mapping(holder.get("metadata"), f"{path}.metadata"):
            for key, value in holder["metadata"].items():
                text(value, f"{path}.metadata.{key}", low=0)

    text(event.get("id"), "id", high=MAX_EVENT_ID)
    text(event.get("type"), "type", high=100)
    created = event.get("created")
    if (created is not None or event.get("type") == "account.updated") and (
            isinstance(created, bool) or not isinstance(created, int) or not 0 <= created <= MAX_CREATED):
        problems["created"] = ["a unix timestamp (account.updated needs one)"]
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        problems["data.object"] = ["an object"]
    else:
        obj, path = data["object"], "data.object"
        if "id" in obj or event.get("type") in HANDLED_TYPES:
            text(obj.get("id"), f"{path}.id")
        for name in ("amount", "amount_received"):
            value = obj.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                problems[f"{path}.{name}"] = ["an integer number of cents"]
        if obj.get("transfer_group") is not None:
            text(obj["transfer_group"], f"{path}.transfer_group", low=0)
        metadata(obj, path)
        if mapping(obj.get("last_payment_error"), f"{path}.last_payment_error"):
            for name in ("code", "message"):
                if obj["last_payment_error"].get(name) is not None:
                    text(obj["last_payment_error"][name], f"{path}.last_payment_error.{name}", low=0)
        # A Connect account (account.updated, issue 12a): what connect.apply reads of it.
        for name in ("details_submitted", "payouts_enabled", "charges_enabled"):
            if obj.get(name) is not None and not isinstance(obj[name], bool):
                problems[f"{path}.{name}"] = ["true or false"]
        if mapping(obj.get("requirements"), f"{path}.requirements"):
            due, reason = obj["requirements"].get("currently_due"), obj["requirements"].get("disabled_reason")
            if due is not None and not isinstance(due, list):
                problems[f"{path}.requirements.currently_due"] = ["a list of text"]
            for n, item in enumerate(due if isinstance(due, list) else []):
                text(item, f"{path}.requirements.currently_due[{n}]", low=0)
            if reason is not None:
                text(reason, f"{path}.requirements.disabled_reason", low=0, high=255)
        if mapping(obj.get("refunds"), f"{path}.refunds") and obj["refunds"].get("data") is not None:
            refunds = obj["refunds"]["data"]
            if not isinstance(refunds, list):
                problems[f"{path}.refunds.data"] = ["a list of refunds"]
            else:
                for n, refund in enumerate(refunds):
                    where = f"{path}.refunds.data[{n}]"
                    if not isinstance(refund, dict):
                        problems[where] = ["an object"]
                        continue
                    text(refund.get("id"), f"{where}.id")
                    metadata(refund, where)
        _check_money_event(event, obj, text, problems)
    if problems:
        raise ValidationError("the webhook event is malformed", details=problems)


def _check_money_event(event: dict[str, Any], obj: dict[str, Any], text: Callable[..., None],
                       problems: dict[str, list[str]]) -> None:
    """check_event_shape's part for the money events' fields (issue 12); other types pass untouched."""
    if event.get("type") not in MONEY_EVENT_TYPES:
        if event.get("type") == "payment_intent.succeeded":
            _check_latest_charge(obj.get("latest_charge"), text, problems)
        return
    for name, high in _MONEY_EVENT_TEXT.items():
        if obj.get(name) is not None:
            text(obj[name], f"data.object.{name}", low=0, high=high)
    if event.get("account") is not None:
        text(event["account"], "account", high=255)
    value = obj.get("amount_reversed")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        problems["data.object.amount_reversed"] = ["an integer number of cents"]


def _check_latest_charge(charge: Any, text: Callable[..., None], problems: dict[str, list[str]]) -> None:
    if isinstance(charge, dict):
        outcome = charge.get("outcome")
        if outcome is not None and not isinstance(outcome, dict):
            problems["data.object.latest_charge.outcome"] = ["an object"]
        elif outcome and outcome.get("risk_level") is not None:
            text(outcome["risk_level"], "data.object.latest_charge.outcome.risk_level", high=20)
    elif charge is not None:
        text(charge, "data.object.latest_charge", high=255)


def _storable(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _meta(obj: dict[str, Any], key: str) -> str | None:
    value = (obj.get("metadata") or {}).get(key)
    return str(value) if value else None
