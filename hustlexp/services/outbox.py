"""MoneyOutbox: the only path by which money leaves (DESIGN §7.8).

No request waits on Stripe: the transaction that writes a row also NOTIFYs CHANNEL (delivered
at commit, never for a rollback), and a dispatcher LISTENing on it (hustlexp.jobs.dispatcher;
`hustlexp serve` starts one in development, `hustlexp jobs worker` runs one in production)
sends the row within moments. `Services(send_inline=True)` instead sends in the caller's
thread right after commit (service tests, one-shot CLI passes with no dispatcher around).

A row is claimed in a short transaction (PENDING -> PROCESSING), Stripe is called with no
lock held, and the outcome is written in a second short transaction. The idempotency key
is fixed per escrow and kind, so however often a row is retried — by the request that
wrote it, by the retry job, by two job workers at once — Stripe moves the money once.

A claim is a lease: the attempt gets the Stripe budget of one call (`PaymentsGateway.call_seconds`,
all its calls together), and the claimed row's next_attempt_at is set to when that budget and
LEASE_MARGIN have run out. A row still PROCESSING past it was left by a process that died (or
lost the database) mid-attempt; any dispatcher or payouts pass takes it again, with the same
idempotency key. The outcome of an attempt is written only while the row is still that
attempt's (same attempt_count, still PROCESSING), so a late answer never overwrites a newer one.

Failures that a retry can cure (network, Stripe 5xx, 409, 429) back off 5 min, 30 min, 2 h,
24 h, then the row is FAILED_PERMANENT and admins are told. A failure no retry can cure (an
invalid request, a bad destination, bad credentials: 4xx but 409/429) is FAILED_PERMANENT at
once, with the same alert. A transfer to a worker with no connected account yet, or whose account
Stripe says cannot take payouts now (services.connect), waits without counting as a failure: it
goes out once the account exists and can (connect.apply makes it due then)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from hustlexp.domain import MoneyKind, MoneyStatus
from hustlexp.obs import context
from hustlexp.services.admin_alerts import alert_admins
from hustlexp.services.base import Service, one, returns_result
from hustlexp.services.connect import PAYABLE_SQL, PAYOUT_ACCOUNT_JOIN

log = logging.getLogger(__name__)

BACKOFF = (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=24))
NO_ACCOUNT_RECHECK = timedelta(hours=1)
# A claim outlives its Stripe budget by this much: time to write the outcome.
LEASE_MARGIN = timedelta(seconds=5)
# Failed attempts back off and belong to the payouts job (every 5 minutes). Where no job worker
# runs (`hustlexp serve` alone, in development) the dispatcher takes a retry left this overdue.
UNJOBBED_RETRY_GRACE = timedelta(minutes=6)
# The outcome of an attempt is written only to the row as that attempt claimed it.
FENCE = "id = %s AND status = 'PROCESSING' AND attempt_count = %s"
# What dispatch() answers for an attempt whose lease ran out and whose row a newer one took.
SUPERSEDED = "SUPERSEDED"
# NOTIFY channel whose payload is a comma-separated list of money_outbox ids now due.
CHANNEL = "hustlexp_money_outbox"
# last_error of a PENDING transfer waiting for its worker's payout account (the admin desk's
# WAITING_FOR_ACCOUNT): none connected yet, or Stripe says the account cannot take payouts now.
NO_ACCOUNT = "NO_PAYOUT_ACCOUNT"
PAYOUTS_DISABLED = "PAYOUTS_DISABLED"
WAITING_FOR_ACCOUNT = (NO_ACCOUNT, PAYOUTS_DISABLED)


class NoPayoutAccount(Exception):
    """The worker cannot be paid yet: `reason` is NO_PAYOUT_ACCOUNT (none connected) or
    PAYOUTS_DISABLED (Stripe says the account cannot take payouts now)."""

    def __init__(self, reason: str = NO_ACCOUNT) -> None:
        super().__init__(reason)
        self.reason = reason


# Stripe refusing a transfer because the destination cannot take one yet: the transfer waits
# for account.updated like one to a worker we know is restricted, it never fails.
ACCOUNT_NOT_READY_CODES = frozenset({"insufficient_capabilities_for_transfer"})


class MoneyOutbox(Service):
    @returns_result
    def dispatch(self, outbox_id: UUID) -> dict[str, Any]:
        """Try one movement now, if it is due and nobody else holds it."""
        row = self._claim(outbox_id)
        if row is None:
            return {"id": outbox_id, "status": "not_due"}
        return self._send(row)

    @returns_result
    def retry_due(self, limit: int = 100) -> dict[str, int]:
        """One pass of the retry job: every due movement (claims whose lease ran out included),
        oldest first."""
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(
                """SELECT id FROM money_outbox
                    WHERE status IN ('PENDING', 'PROCESSING') AND next_attempt_at <= %s
                      AND NOT held_by_chargeback(escrow_id, kind)
                    ORDER BY next_attempt_at LIMIT %s""", (self.s.clock(), limit)).fetchall()]
        counts = {"due": len(ids), "succeeded": 0, "failed": 0, "waiting": 0, "skipped": 0}
        for outbox_id in ids:
            status = self.dispatch(outbox_id).unwrap()["status"]
            key = {"SUCCEEDED": "succeeded", "PENDING": "failed", "FAILED_PERMANENT": "failed",
                   "CANCELLED": "succeeded", "WAITING": "waiting"}.get(status, "skipped")
            counts[key] += 1
        return counts

    @returns_result
    def dispatcher_due(self, limit: int = 500) -> dict[str, Any]:
        """What a dispatcher sends without being told (a NOTIFY sent while it was not listening
        is lost): due rows never attempted, claims whose lease ran out, and retries left overdue
        by UNJOBBED_RETRY_GRACE. Also `next_in`: seconds until the next row becomes such (None:
        no row will by itself), so the dispatcher wakes for it."""
        with self.db.transaction() as conn:
            row = one(conn, """
                WITH live AS (
                    SELECT id, CASE WHEN status = 'PROCESSING' OR last_attempt_at IS NULL THEN next_attempt_at
                                    ELSE next_attempt_at + %(grace)s END AS taken_at
                      FROM money_outbox WHERE status IN ('PENDING', 'PROCESSING')
                       AND NOT held_by_chargeback(escrow_id, kind))
                SELECT ARRAY(SELECT id FROM live WHERE taken_at <= %(now)s
                              ORDER BY taken_at LIMIT %(limit)s) AS due,
                       extract(epoch FROM (SELECT min(taken_at) FROM live WHERE taken_at > %(now)s) - %(now)s)::float
                           AS next_in""",
                      {"grace": UNJOBBED_RETRY_GRACE, "now": self.s.clock(), "limit": limit})
        assert row is not None
        return {"due": list(row["due"]), "next_in": row["next_in"]}

    def enqueue(self, conn: Any, *, escrow_id: Any, kind: MoneyKind, amount: int, recipient: Any,
                key: str) -> UUID:
        """Write a PENDING row in the caller's transaction and wake the dispatcher at commit."""
        row = one(conn, """WITH row AS (
                               INSERT INTO money_outbox (escrow_id, kind, amount, recipient_id, idempotency_key,
                                                         last_error, request_id)
                               VALUES (%s, %s, %s, %s, %s, NULL, %s) RETURNING id)
                           SELECT id, pg_notify(%s, id::text) FROM row""",
                  (escrow_id, kind.value, amount, recipient, key, context.current_request_id(), CHANNEL))
        assert row is not None
        self._after_commit([row["id"]])
        return UUID(str(row["id"]))

    @returns_result
    def release_waiting_for(self, user_id: UUID) -> dict[str, int]:
        """A worker just connected a payout account: make their waiting transfers due now (in
        the caller's transaction) and hand them to the dispatcher. Sends nothing itself."""
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(
                """UPDATE money_outbox SET next_attempt_at = now()
                    WHERE recipient_id = %s AND kind = 'TRANSFER' AND status = 'PENDING' RETURNING id""",
                (user_id,)).fetchall()]
            self.wake(conn, ids)
        return {"due": len(ids)}

    def wake(self, conn: Any, ids: list[Any]) -> None:
        """Rows the caller just made due (in its transaction): the dispatcher hears of them at commit."""
        if ids:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ",".join(str(i) for i in ids)))
            self._after_commit(ids)

    def _after_commit(self, ids: list[Any]) -> None:
        if self.s.send_inline:
            self.db.after_commit(lambda: [self.dispatch(i) for i in ids])

    @returns_result
    def list_for_escrow(self, escrow_id: UUID) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            return list(conn.execute("SELECT * FROM money_outbox WHERE escrow_id = %s ORDER BY created_at",
                                     (escrow_id,)).fetchall())

    # -- steps -----------------------------------------------------------------

    def _claim(self, outbox_id: UUID) -> dict[str, Any] | None:
        """PENDING and due, or PROCESSING past its lease -> PROCESSING under a new lease. The row
        comes with what the Stripe call needs (its escrow's task and PaymentIntent, the
        recipient's account and whether it can be paid), read in the claim itself."""
        now = self.s.clock()
        lease = timedelta(seconds=self.s.payments.call_seconds) + LEASE_MARGIN
        with self.db.transaction() as conn:
            return one(conn, f"""
                UPDATE money_outbox o
                   SET status = 'PROCESSING', attempt_count = attempt_count + 1, last_attempt_at = %(now)s,
                       next_attempt_at = %(lease_end)s
                  FROM (SELECT id, escrow_id, recipient_id FROM money_outbox
                         WHERE id = %(id)s AND status IN ('PENDING', 'PROCESSING') AND next_attempt_at <= %(now)s
                           AND NOT held_by_chargeback(escrow_id, kind)
                         FOR UPDATE SKIP LOCKED) due
                  JOIN escrows e ON e.id = due.escrow_id
                  LEFT JOIN users u ON u.id = due.recipient_id
                  {PAYOUT_ACCOUNT_JOIN}
                 WHERE o.id = due.id
             RETURNING o.*, e.task_id, e.stripe_payment_intent_id, u.stripe_connect_id, {PAYABLE_SQL} AS payable""",
                       {"id": outbox_id, "now": now, "lease_end": now + lease})

    @staticmethod
    def _still_ours(cursor: Any, row: dict[str, Any]) -> bool:
        """Whether an outcome UPDATE (fenced on status and attempt_count) found its attempt."""
        if cursor.rowcount == 1:
            return True
        log.warning("outbox %s: attempt %s outlived its lease; a newer attempt owns the row", row["id"],
                    row["attempt_count"])
        return False

    def _send(self, row: dict[str, Any]) -> dict[str, Any]:
        from hustlexp.services.payments import PaymentError
        from hustlexp.services.stripe_http import stripe_budget

        # Logs of this attempt (in a request or a job) carry the id of the request that queued it.
        with context.bound(row["request_id"]):
            try:
                with stripe_budget(self.s.payments.call_seconds):
                    stripe_id = self._call_stripe(row)
            except NoPayoutAccount as waiting:
                return self._wait_for_account(row, waiting.reason)
            except PaymentError as exc:
                if row["kind"] == MoneyKind.TRANSFER and exc.stripe_code in ACCOUNT_NOT_READY_CODES:
                    return self._wait_for_account(row, PAYOUTS_DISABLED)
                return self._failed(row, exc)
            return self._succeeded(row, stripe_id)

    def _call_stripe(self, row: dict[str, Any]) -> str:
        """The Stripe call of a claimed row (_claim read what it needs)."""
        payments = self.s.payments
        escrow_id = str(row["escrow_id"])
        kind = MoneyKind(row["kind"])
        if kind is MoneyKind.TRANSFER:
            if not row["stripe_connect_id"]:
                raise NoPayoutAccount
            if not row["payable"]:
                raise NoPayoutAccount(PAYOUTS_DISABLED)
            if row["attempt_count"] > 1:
                # Stripe forgets idempotency keys after a day and our last back-off is a day:
                # a retry first asks whether an earlier attempt did pay.
                paid = payments.find_transfer(escrow_id)
                if paid is not None:
                    return paid
            return str(payments.create_transfer(
                amount=row["amount"], destination=row["stripe_connect_id"], escrow_id=escrow_id,
                task_id=str(row["task_id"]), worker_id=str(row["recipient_id"]),
                idempotency_key=row["idempotency_key"], request_id=row["request_id"]))
        if kind is MoneyKind.REFUND:
            return str(payments.create_refund(
                payment_intent_id=row["stripe_payment_intent_id"], amount=row["amount"],
                escrow_id=escrow_id, reason_note="task_refund", idempotency_key=row["idempotency_key"],
                request_id=row["request_id"]))
        intent = payments.cancel_payment_intent(row["stripe_payment_intent_id"],
                                                idempotency_key=row["idempotency_key"])
        return str(intent.id)

    def _succeeded(self, row: dict[str, Any], stripe_id: str) -> dict[str, Any]:
        done = f"""UPDATE money_outbox SET status = 'SUCCEEDED', stripe_object_id = %s, completed_at = now(),
                                          last_error = NULL WHERE {FENCE}"""
        column = {"TRANSFER": "stripe_transfer_id", "REFUND": "stripe_refund_id"}.get(row["kind"])
        if column is not None:
            # The escrow keeps the id in the same statement (one row: the escrow of a row still ours).
            done = f"""WITH done AS ({done} RETURNING escrow_id, stripe_object_id)
                       UPDATE escrows e SET {column} = done.stripe_object_id FROM done WHERE e.id = done.escrow_id"""
        with self.db.transaction() as conn:
            cursor = conn.execute(done, (stripe_id, row["id"], row["attempt_count"]))
            if not self._still_ours(cursor, row):
                return {"id": row["id"], "status": SUPERSEDED, "stripe_id": stripe_id}
        log.info("outbox %s: %s of %s cents done at Stripe (%s)", row["id"], row["kind"], row["amount"],
                 stripe_id)
        return {"id": row["id"], "status": MoneyStatus.SUCCEEDED.value, "stripe_id": stripe_id}

    def _wait_for_account(self, row: dict[str, Any], reason: str) -> dict[str, Any]:
        with self.db.transaction() as conn:
            cursor = conn.execute(f"""UPDATE money_outbox SET status = 'PENDING', attempt_count = attempt_count - 1,
                                             next_attempt_at = %s, last_error = %s WHERE {FENCE}""",
                                  (self.s.clock() + NO_ACCOUNT_RECHECK, reason, row["id"], row["attempt_count"]))
            if not self._still_ours(cursor, row):
                return {"id": row["id"], "status": SUPERSEDED}
        log.info("outbox %s: worker %s cannot be paid yet (%s); transfer waits", row["id"],
                 row["recipient_id"], reason)
        return {"id": row["id"], "status": "WAITING"}

    def _failed(self, row: dict[str, Any], exc: Any) -> dict[str, Any]:
        error = f"{getattr(exc, 'stripe_code', None) or type(exc).__name__}: {exc}"[:1000]
        attempts = row["attempt_count"]
        if row["kind"] == MoneyKind.CANCEL_INTENT and not getattr(exc, "retryable", True):
            # The intent can no longer be cancelled (it succeeded or was cancelled already); a
            # payment that did land is refunded by the payment_intent.succeeded handler.
            status, next_at = MoneyStatus.CANCELLED, None
        elif attempts > len(BACKOFF) or not getattr(exc, "retryable", True):
            status, next_at = MoneyStatus.FAILED_PERMANENT, None
        else:
            status, next_at = MoneyStatus.PENDING, self.s.clock() + BACKOFF[attempts - 1]
        with self.db.transaction() as conn:
            cursor = conn.execute(f"""UPDATE money_outbox SET status = %s, last_error = %s,
                                             next_attempt_at = coalesce(%s, next_attempt_at) WHERE {FENCE}""",
                                  (status.value, error, next_at, row["id"], row["attempt_count"]))
            if not self._still_ours(cursor, row):
                return {"id": row["id"], "status": SUPERSEDED, "error": error}
            if status is MoneyStatus.FAILED_PERMANENT:
                alert_admins(self, conn, "PAYOUT_FAILED_PERMANENT", metadata={
                    "outbox_id": str(row["id"]), "escrow_id": str(row["escrow_id"]), "kind": row["kind"],
                    "amount": row["amount"], "error": error})
        log.warning("outbox %s: %s of %s cents failed (attempt %s): %s -> %s", row["id"], row["kind"],
                    row["amount"], attempts, error, status.value)
        return {"id": row["id"], "status": status.value, "error": error}

