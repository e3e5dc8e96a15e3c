"""PayoutDeskService: the admin payout desk over money_outbox (one source of truth).

Desk statuses map onto the outbox like this (disjoint, so each row shows in at most one):
- PENDING: due now or backing off after a retryable failure;
- WAITING_FOR_ACCOUNT: a PENDING transfer whose worker cannot be paid yet (no account, or payouts off)
  (last_error in outbox.WAITING_FOR_ACCOUNT);
- FAILED_PERMANENT: gave up (or refused for good by Stripe), waiting for an admin;
- LOCKED: not sent (PENDING or FAILED_PERMANENT) because a chargeback holds its escrow, or an
  attempt that died mid-send (PROCESSING past its lease) on a held escrow: no new attempt may
  start until the hold lifts, and then the retry, under the same idempotency key, settles
  whether Stripe had it.
A retry puts a PENDING or FAILED_PERMANENT row back to PENDING, due now, audited; a LOCKED
row cannot be retried until its chargeback closes in our favour."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.errors import Conflict, NotFound
from hustlexp.services import audit
from hustlexp.services.base import Service, one, returns_result, trim_page
from hustlexp.services.outbox import WAITING_FOR_ACCOUNT

DESK_STATUSES = ("PENDING", "WAITING_FOR_ACCOUNT", "FAILED_PERMANENT", "LOCKED")
_HELD = "held_by_chargeback(o.escrow_id, o.kind)"
# Constant SQL per desk status; values travel as parameters.
_FILTERS = {
    "PENDING": f"o.status = 'PENDING' AND NOT coalesce(o.last_error = ANY(%(waiting)s), false) AND NOT {_HELD}",
    "WAITING_FOR_ACCOUNT": f"o.status = 'PENDING' AND o.last_error = ANY(%(waiting)s) AND NOT {_HELD}",
    "FAILED_PERMANENT": f"o.status = 'FAILED_PERMANENT' AND NOT {_HELD}",
    "LOCKED": f"""(o.status IN ('PENDING', 'FAILED_PERMANENT')
                   OR (o.status = 'PROCESSING' AND o.next_attempt_at <= %(now)s)) AND {_HELD}""",
}
RETRYABLE = ("PENDING", "FAILED_PERMANENT")


class PayoutDeskService(Service):
    @returns_result
    def payouts(self, admin_id: UUID, *, status: str, limit: int, after: UUID | None = None) -> dict[str, Any]:
        """Rows in one desk status, oldest first; `after` is the last id of the previous page."""
        condition = _FILTERS[status]
        with self.db.transaction() as conn:
            audit.require_admin(conn, admin_id, "can_access_financials")
            rows = conn.execute(
                f"""SELECT o.id, o.escrow_id, e.task_id, o.kind, o.amount, o.recipient_id, o.status,
                           o.attempt_count, o.next_attempt_at, o.last_attempt_at, o.last_error,
                           o.stripe_object_id, o.created_at, e.chargeback_hold
                      FROM money_outbox o JOIN escrows e ON e.id = o.escrow_id
                     WHERE {condition}
                       AND (%(after)s::uuid IS NULL OR (o.created_at, o.id) >
                            (SELECT created_at, id FROM money_outbox WHERE id = %(after)s))
                     ORDER BY o.created_at, o.id LIMIT %(limit)s""",
                {"waiting": list(WAITING_FOR_ACCOUNT), "after": after, "limit": limit + 1,
                 "now": self.s.clock()}).fetchall()
        rows, more = trim_page(rows, limit)
        for row in rows:
            row["desk_status"] = status
        return {"payouts": rows, "has_more": more, "next_after": rows[-1]["id"] if more else None}

    @returns_result
    def retry(self, admin_id: UUID, outbox_id: UUID) -> dict[str, Any]:
        with self.db.transaction() as conn:
            role = audit.require_admin(conn, admin_id, "can_override_escrow")
            row = one(conn, f"""SELECT o.*, {_HELD} AS held FROM money_outbox o WHERE o.id = %s
                                FOR UPDATE OF o""", (outbox_id,))
            if row is None:
                raise NotFound("money movement not found")
            if row["held"]:
                raise Conflict("a chargeback holds this escrow: nothing is sent until it closes in our favour",
                               code="HX204", details={"status": "LOCKED"})
            if row["status"] not in RETRYABLE:
                raise Conflict(f"a {row['status']} movement cannot be retried", details={"status": row["status"]})
            updated = one(conn, """UPDATE money_outbox SET status = 'PENDING', next_attempt_at = now()
                                    WHERE id = %s RETURNING id, status, next_attempt_at""", (outbox_id,))
            assert updated is not None
            action_id = audit.record(conn, role, "PAYOUT_RETRY",
                                     {"outbox_id": str(outbox_id), "kind": row["kind"], "amount": row["amount"],
                                      "previous_status": row["status"], "last_error": row["last_error"]},
                                     escrow_id=row["escrow_id"], user_id=row["recipient_id"])
            self.s.outbox.wake(conn, [outbox_id])
            return {"id": outbox_id, "previous_status": row["status"], "status": updated["status"],
                    "next_attempt_at": updated["next_attempt_at"], "action_id": action_id}
