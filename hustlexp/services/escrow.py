"""EscrowService: the money of one task, from PaymentIntent to payout or refund.

An escrow's amount is the task price, frozen at creation (INV-4). State changes happen under
a row lock; money never moves inside them. A state change that moves money writes a
money_outbox row in the same transaction, and the Stripe call runs after commit
(hustlexp.services.outbox), keyed by our own ids, so a retry can never pay twice."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from hustlexp.domain import EscrowState, MoneyKind, TaskState
from hustlexp.errors import Conflict, DomainError, Forbidden, NotFound
from hustlexp.services import audit
from hustlexp.services.base import Service, one, returns_result

log = logging.getLogger(__name__)

PLATFORM_FEE_PERCENT = 15


def worker_payout(amount: int) -> int:
    """What the worker receives for `amount` cents: floor(85 %); the platform keeps the rest."""
    return amount * (100 - PLATFORM_FEE_PERCENT) // 100


def split_amounts(amount: int, worker_percent: int) -> tuple[int, int]:
    """(release, refund) for a SPLIT ruling: release = floor(amount × p / 100), refund = the rest."""
    release = amount * worker_percent // 100
    return release, amount - release


class EscrowService(Service):
    # -- reads ---------------------------------------------------------------

    @returns_result
    def get_by_id(self, escrow_id: UUID, viewer_id: UUID | None = None) -> dict[str, Any]:
        with self.db.transaction() as conn:
            escrow = _escrow(conn, "id", escrow_id)
            _require_viewer(conn, escrow, viewer_id)
            return escrow

    @returns_result
    def get_by_task_id(self, task_id: UUID, viewer_id: UUID | None = None) -> dict[str, Any]:
        """The task's escrow; with viewer_id, only for the task's poster, worker or an admin."""
        with self.db.transaction() as conn:
            escrow = _escrow(conn, "task_id", task_id)
            _require_viewer(conn, escrow, viewer_id)
            return escrow

    # -- funding -------------------------------------------------------------

    @returns_result
    def create_payment_intent(self, escrow_id: UUID, *, actor_id: UUID | None = None) -> dict[str, Any]:
        """The PaymentIntent the poster confirms in the app: reuses a live one, else creates it.
        Stripe is called with no lock held; the idempotency key makes concurrent calls converge."""
        with self.db.transaction() as conn:
            escrow = _escrow(conn, "id", escrow_id)
            task = one(conn, "SELECT poster_id FROM tasks WHERE id = %s", (escrow["task_id"],))
        assert task is not None
        if actor_id is not None and actor_id != task["poster_id"]:
            raise Forbidden("only the task's poster pays its escrow")
        if escrow["state"] != EscrowState.PENDING:
            raise Conflict(f"the escrow is {escrow['state']}, not PENDING: nothing to pay")

        payments = self.s.payments
        existing = escrow["stripe_payment_intent_id"]
        key = f"pi-{escrow['id']}"
        if existing:
            intent = payments.retrieve_payment_intent(existing)
            if intent.status != "canceled":
                return _intent_out(escrow, intent)
            key += f"-after-{existing}"  # the old key would hand back the cancelled intent
        intent = payments.create_payment_intent(
            amount=escrow["amount"], escrow_id=str(escrow["id"]), task_id=str(escrow["task_id"]),
            poster_id=str(task["poster_id"]), idempotency_key=key)
        with self.db.transaction() as conn:
            row = one(conn, "SELECT * FROM escrows WHERE id = %s FOR UPDATE", (escrow_id,))
            assert row is not None
            if row["state"] != EscrowState.PENDING:
                raise Conflict(f"the escrow became {row['state']} while paying")
            if row["stripe_payment_intent_id"] in (None, existing):
                conn.execute("UPDATE escrows SET stripe_payment_intent_id = %s WHERE id = %s",
                             (intent.id, escrow_id))
                row["stripe_payment_intent_id"] = intent.id
        if row["stripe_payment_intent_id"] != intent.id:
            # A concurrent request stored its intent first: everyone answers with that one.
            intent = payments.retrieve_payment_intent(row["stripe_payment_intent_id"])
        return _intent_out(row, intent)

    @returns_result
    def first_intent(self, escrow: dict[str, Any], poster_id: UUID) -> dict[str, Any]:
        """The PaymentIntent of an escrow just created (task.create already holds its row and
        poster): Stripe, then one conditional UPDATE; anything unexpected takes the general path.
        The UPDATE may run twice (it stores this intent or finds it stored), so it goes without the
        pool's empty-query check."""
        intent = self.s.payments.create_payment_intent(
            amount=escrow["amount"], escrow_id=str(escrow["id"]), task_id=str(escrow["task_id"]),
            poster_id=str(poster_id), idempotency_key=f"pi-{escrow['id']}")
        stored = self.db.run_repeatable(lambda conn: one(conn, """
            UPDATE escrows SET stripe_payment_intent_id = %(intent)s
             WHERE id = %(escrow)s AND state = 'PENDING' AND coalesce(stripe_payment_intent_id, %(intent)s) = %(intent)s
            RETURNING id""", {"intent": intent.id, "escrow": escrow["id"]}))
        if stored is None:
            return self.create_payment_intent(escrow["id"]).unwrap()
        return _intent_out(escrow, intent)

    def payment_succeeded(self, conn: Any, *, payment_intent_id: str, amount_received: int,
                          escrow_id: str | None = None, risk_level: str | None = None,
                          claim: tuple[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """payment_intent.succeeded, inside the webhook's transaction (no savepoint of its own: an
        error rolls the whole delivery back, and its event id with it): PENDING -> FUNDED when
        the amount is exactly the escrow's, with Radar's `risk_level` of the charge (None: not
        known). A payment landing on an escrow that already ended is refunded (late payment).

        The usual delivery (our escrow id in the metadata, the escrow PENDING, the amount right)
        is one UPDATE that locks the escrow and checks all three; any other is locked, read and
        judged below. `claim` (an INSERT ... RETURNING and its named parameters: the webhook's
        claim on the event) runs first, in that same statement when it can: None comes back,
        and nothing changes, when it returns no row."""
        claimed = claim is None
        by_id = _uuid_or_none(escrow_id)
        if by_id is not None:
            claimed, funded = self._fund(conn, "e.id = %(escrow)s AND e.state = 'PENDING' AND e.amount = %(amount)s",
                                         {"escrow": by_id, "amount": amount_received}, payment_intent_id,
                                         risk_level, claim)
            if not claimed:
                return None
            if funded is not None:
                return funded
        if claim is not None and not claimed and one(conn, claim[0], claim[1]) is None:
            return None
        escrow = _locked_by_intent(conn, payment_intent_id, escrow_id)
        if escrow is None:
            log.warning("payment %s matches no escrow", payment_intent_id)
            return {"result": "ignored", "reason": "unknown_payment_intent"}
        state = escrow["state"]
        if state == EscrowState.PENDING:
            if amount_received != escrow["amount"]:
                log.error("payment %s received %s cents for escrow %s of %s: not funding",
                          payment_intent_id, amount_received, escrow["id"], escrow["amount"])
                return {"result": "skipped", "reason": "amount_mismatch", "escrow_id": escrow["id"]}
            funded = self._fund(conn, "e.id = %(escrow)s", {"escrow": escrow["id"]}, payment_intent_id, risk_level)[1]
            assert funded is not None
            return funded
        if state == EscrowState.REFUNDED and escrow["funded_at"] is None:
            # Paid after the task ended unpaid: keep the state, give the money back.
            conn.execute("UPDATE escrows SET funded_at = now(), stripe_payment_intent_id = "
                         "coalesce(stripe_payment_intent_id, %s) WHERE id = %s",
                         (payment_intent_id, escrow["id"]))
            self._queue(conn, escrow, MoneyKind.REFUND, escrow["amount"], None)
            return {"result": "processed", "escrow_id": escrow["id"], "state": state,
                    "action": "late_payment_refunded"}
        return {"result": "skipped", "reason": f"escrow already {state}", "escrow_id": escrow["id"]}

    def _fund(self, conn: Any, where: str, params: dict[str, Any], payment_intent_id: str,
              risk_level: str | None, claim: tuple[str, dict[str, Any]] | None = None
              ) -> tuple[bool, dict[str, Any] | None]:
        """PENDING -> FUNDED for the escrow `where` names (None: no such row); the poster to
        notify comes back with the update. With `claim`, it runs first in the same statement
        and the update happens only when it returned a row (the bool says whether it did)."""
        update = f"""
            UPDATE escrows e SET state = 'FUNDED', funded_at = now(),
                                 stripe_payment_intent_id = coalesce(e.stripe_payment_intent_id, %(intent)s),
                                 payment_risk_level = coalesce(%(risk)s, e.payment_risk_level)
              FROM tasks t{", claim" if claim else ""} WHERE {where} AND t.id = e.task_id
            RETURNING e.id AS escrow_id, e.amount, t.id, t.poster_id"""
        params = params | {"intent": payment_intent_id, "risk": risk_level}
        if claim is None:
            task, claimed = one(conn, update, params), True
        else:
            row = one(conn, f"""WITH claim AS ({claim[0]}), funded AS ({update})
                                SELECT EXISTS (SELECT FROM claim) AS hx_claimed, funded.*
                                  FROM (SELECT 1) AS one LEFT JOIN funded ON true""", params | claim[1])
            assert row is not None
            claimed = row.pop("hx_claimed")
            task = row if row["escrow_id"] is not None else None
        if task is None:
            return claimed, None
        self._notify(task["poster_id"], "ESCROW_FUNDED", task_id=task["id"], metadata={"amount": task["amount"]})
        return claimed, {"result": "processed", "escrow_id": task["escrow_id"], "state": "FUNDED"}

    @returns_result
    def handle_payment_canceled(self, *, payment_intent_id: str, escrow_id: str | None = None
                                ) -> dict[str, Any]:
        """payment_intent.canceled: close a PENDING escrow whose task already ended; else nothing."""
        with self.db.transaction() as conn:
            escrow = _locked_by_intent(conn, payment_intent_id, escrow_id)
            if escrow is None:
                return {"result": "ignored", "reason": "unknown_payment_intent"}
            task = one(conn, "SELECT state FROM tasks WHERE id = %s", (escrow["task_id"],))
            assert task is not None
            if escrow["state"] == EscrowState.PENDING and task["state"] in (
                    TaskState.CANCELLED, TaskState.EXPIRED):
                conn.execute("UPDATE escrows SET state = 'REFUNDED', refunded_at = now() WHERE id = %s",
                             (escrow["id"],))
                return {"result": "processed", "escrow_id": escrow["id"], "state": "REFUNDED"}
            if escrow["stripe_payment_intent_id"] == payment_intent_id and escrow["state"] == "PENDING":
                # The poster's intent was cancelled while the task is live: a new one will be made.
                return {"result": "processed", "escrow_id": escrow["id"], "state": "PENDING"}
            return {"result": "skipped", "reason": f"escrow is {escrow['state']}"}

    @returns_result
    def record_stripe_id(self, *, escrow_id: str, kind: str, stripe_id: str) -> dict[str, Any]:
        """transfer.created / charge.refunded: remember Stripe's id if we have not yet."""
        column = {"transfer": "stripe_transfer_id", "refund": "stripe_refund_id"}[kind]
        with self.db.transaction() as conn:
            row = one(conn, f"SELECT id, {column} AS known FROM escrows WHERE id = %s FOR UPDATE",
                      (_uuid_or_none(escrow_id),))
            if row is None:
                return {"result": "ignored", "reason": "unknown_escrow"}
            if row["known"] is None:
                conn.execute(f"UPDATE escrows SET {column} = %s WHERE id = %s", (stripe_id, row["id"]))
            return {"result": "processed", "escrow_id": row["id"]}

    # -- lifecycle -------------------------------------------------------------

    @returns_result
    def lock_for_dispute(self, escrow_id: UUID) -> dict[str, Any]:
        with self.db.transaction() as conn:
            escrow = _lock(conn, escrow_id)
            if escrow["state"] != EscrowState.FUNDED:
                raise Conflict(f"only a FUNDED escrow can be disputed; this one is {escrow['state']}")
            return _update(conn, escrow_id, "state = 'LOCKED_DISPUTE'")

    @returns_result
    def release(self, escrow_id: UUID, *, actor_id: UUID | None = None) -> dict[str, Any]:
        """FUNDED/LOCKED_DISPUTE -> RELEASED once the task is COMPLETED (INV-2), paying the worker
        floor(85 %). Releasing a RELEASED escrow returns it unchanged."""
        with self.db.transaction() as conn:
            escrow = _lock(conn, escrow_id)
            task = _task(conn, escrow["task_id"])
            role = None
            if actor_id is not None:
                role = self._require_poster_or_admin(conn, task, actor_id, "can_override_escrow")
            return self._release(conn, escrow, task, role)

    def release_completed(self, conn: Any, task: dict[str, Any]) -> dict[str, Any]:
        """release() for the completion chain, inside its transaction: the caller holds the
        COMPLETED task's row, so only the escrow is locked (no savepoint, no re-read). Releasing
        a FUNDED or LOCKED_DISPUTE escrow is one UPDATE, its lock and state check in one; any
        other state is read and judged as release() judges it."""
        escrow = one(conn, "UPDATE escrows SET state = 'RELEASED', released_at = now() "
                           "WHERE task_id = %s AND state IN ('FUNDED', 'LOCKED_DISPUTE') RETURNING *", (task["id"],))
        if escrow is not None:
            return self._released(conn, escrow, task, None)
        escrow = one(conn, "SELECT * FROM escrows WHERE task_id = %s FOR UPDATE", (task["id"],))
        if escrow is None:
            raise NotFound("escrow not found")
        return self._release(conn, escrow, task, None)

    def _release(self, conn: Any, escrow: dict[str, Any], task: dict[str, Any], role: dict[str, Any] | None
                 ) -> dict[str, Any]:
        if escrow["state"] == EscrowState.RELEASED:
            return escrow
        if escrow["state"] not in (EscrowState.FUNDED, EscrowState.LOCKED_DISPUTE):
            raise Conflict(f"a {escrow['state']} escrow cannot be released",
                           code="HX002" if escrow["state"] in ("REFUNDED", "REFUND_PARTIAL") else None)
        if task["state"] != TaskState.COMPLETED:
            raise Conflict("the escrow is released only when its task is completed", code="HX201")
        return self._released(conn, _update(conn, escrow["id"], "state = 'RELEASED', released_at = now()"), task, role)

    def _released(self, conn: Any, escrow: dict[str, Any], task: dict[str, Any], role: dict[str, Any] | None
                  ) -> dict[str, Any]:
        """What follows an escrow's move to RELEASED: the worker's transfer queued, an admin's audit."""
        self._queue(conn, escrow, MoneyKind.TRANSFER, worker_payout(escrow["amount"]), task["worker_id"])
        if role is not None:
            audit.record(conn, role, "ESCROW_RELEASE", {"payout": worker_payout(escrow["amount"])},
                         escrow_id=escrow["id"], task_id=task["id"], user_id=task["worker_id"])
        return escrow

    @returns_result
    def refund(self, escrow_id: UUID, *, actor_id: UUID | None = None, reason: str = "task_cancelled"
               ) -> dict[str, Any]:
        """Give the poster everything back: FUNDED/LOCKED_DISPUTE -> REFUNDED with a Stripe refund;
        PENDING -> REFUNDED with no money moved and the PaymentIntent cancelled."""
        with self.db.transaction() as conn:
            escrow = _lock(conn, escrow_id)
            task = _task(conn, escrow["task_id"])
            if actor_id is not None:
                role = self._require_poster_or_admin(conn, task, actor_id, "can_override_escrow")
                allowed = (TaskState.CANCELLED, TaskState.EXPIRED) + (
                    (TaskState.DISPUTED,) if role is not None else ())
                if task["state"] not in allowed:
                    raise Conflict(f"the task is {task['state']}; refunds follow a cancellation or ruling")
            state = escrow["state"]
            if state in (EscrowState.RELEASED, EscrowState.REFUNDED, EscrowState.REFUND_PARTIAL):
                raise Conflict(f"the escrow is already {state}", code="HX002")
            if state == EscrowState.PENDING:
                escrow = _update(conn, escrow_id, "state = 'REFUNDED', refunded_at = now()")
                if escrow["stripe_payment_intent_id"]:
                    self._queue(conn, escrow, MoneyKind.CANCEL_INTENT, 0, None)
                return escrow
            escrow = _update(conn, escrow_id, "state = 'REFUNDED', refunded_at = now()")
            self._queue(conn, escrow, MoneyKind.REFUND, escrow["amount"], task["poster_id"], note=reason)
            if actor_id is not None and task["poster_id"] != actor_id:
                audit.record(conn, audit.require_admin(conn, actor_id), "ESCROW_REFUND",
                             {"reason": reason}, escrow_id=escrow_id, task_id=task["id"])
            return escrow

    @returns_result
    def split(self, escrow_id: UUID, worker_percent: int) -> dict[str, Any]:
        """A SPLIT ruling: LOCKED_DISPUTE -> REFUND_PARTIAL; the worker's share is released (and paid
        at 85 %), the rest refunded. release + refund = amount (escrow_partial_sum_check)."""
        if not 1 <= worker_percent <= 99:
            raise DomainError("split_percent must be 1..99", code="VALIDATION_ERROR", status=400)
        with self.db.transaction() as conn:
            escrow = _lock(conn, escrow_id)
            if escrow["state"] != EscrowState.LOCKED_DISPUTE:
                raise Conflict(f"only a disputed escrow can be split; this one is {escrow['state']}")
            task = _task(conn, escrow["task_id"])
            release, refund = split_amounts(escrow["amount"], worker_percent)
            escrow = _update(conn, escrow_id,
                             "state = 'REFUND_PARTIAL', release_amount = %(release)s, "
                             "refund_amount = %(refund)s, released_at = now(), refunded_at = now()",
                             {"release": release, "refund": refund})
            if worker_payout(release) > 0:
                self._queue(conn, escrow, MoneyKind.TRANSFER, worker_payout(release), task["worker_id"])
            if refund > 0:
                self._queue(conn, escrow, MoneyKind.REFUND, refund, task["poster_id"], note="dispute_split")
            return escrow

    # -- internals -------------------------------------------------------------

    def _queue(self, conn: Any, escrow: dict[str, Any], kind: MoneyKind, amount: int,
               recipient: Any, note: str | None = None) -> None:
        """Write the outbox row now; the dispatcher calls Stripe once the outermost transaction commits."""
        key = {MoneyKind.TRANSFER: "transfer", MoneyKind.REFUND: "refund",
               MoneyKind.CANCEL_INTENT: "cancel-pi"}[kind] + f"-{escrow['id']}"
        self.s.outbox.enqueue(conn, escrow_id=escrow["id"], kind=kind, amount=amount, recipient=recipient,
                              key=key)
        log.info("escrow %s: %s of %s cents queued (%s)", escrow["id"], kind.value, amount, note or key)

    def _require_poster_or_admin(self, conn: Any, task: dict[str, Any], actor_id: UUID, flag: str
                                 ) -> dict[str, Any] | None:
        """None for the poster; the admin_roles row for an admin holding `flag`; else Forbidden."""
        if task["poster_id"] == actor_id:
            return None
        return audit.require_admin(conn, actor_id, flag)


def _escrow(conn: Any, column: str, value: Any) -> dict[str, Any]:
    query = {"id": "SELECT * FROM escrows WHERE id = %s", "task_id": "SELECT * FROM escrows WHERE task_id = %s"}
    row = one(conn, query[column], (value,))
    if row is None:
        raise NotFound("escrow not found")
    return row


def _require_viewer(conn: Any, escrow: dict[str, Any], viewer_id: UUID | None) -> None:
    if viewer_id is not None:
        task = _task(conn, escrow["task_id"])
        audit.require_party_or_admin(conn, (task["poster_id"], task["worker_id"]), viewer_id,
                                     "only the task's poster, its worker or an admin can see its escrow")


def _lock(conn: Any, escrow_id: Any) -> dict[str, Any]:
    row = one(conn, "SELECT * FROM escrows WHERE id = %s FOR UPDATE", (escrow_id,))
    if row is None:
        raise NotFound("escrow not found")
    return row


def _task(conn: Any, task_id: Any) -> dict[str, Any]:
    row = one(conn, "SELECT * FROM tasks WHERE id = %s", (task_id,))
    assert row is not None, "an escrow always has its task"
    return row


def _update(conn: Any, escrow_id: Any, assignments: str, params: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    row = one(conn, f"UPDATE escrows SET {assignments} WHERE id = %(id)s RETURNING *",
              {"id": escrow_id, **(params or {})})
    assert row is not None
    return row


def _locked_by_intent(conn: Any, payment_intent_id: str, escrow_id: str | None) -> dict[str, Any] | None:
    """The escrow a Stripe event is about, locked: by our metadata id first (the event may
    arrive before we stored the intent id), then by the intent id."""
    by_id = _uuid_or_none(escrow_id)
    if by_id is not None:
        row = one(conn, "SELECT * FROM escrows WHERE id = %s FOR UPDATE", (by_id,))
        if row is not None:
            return row
    return one(conn, "SELECT * FROM escrows WHERE stripe_payment_intent_id = %s FOR UPDATE",
               (payment_intent_id,))


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _intent_out(escrow: dict[str, Any], intent: Any) -> dict[str, Any]:
    return {"escrow_id": escrow["id"], "payment_intent_id": intent.id, "client_secret": intent.client_secret,
            "amount": escrow["amount"], "status": intent.status}
