"""ChargebackService: the poster's bank disputing the charge that funded an escrow.

charge.dispute.created: if the escrow still holds the money (PENDING/FUNDED/LOCKED_DISPUTE, or
a transfer or refund written but not sent), the escrow is held (`chargeback_hold`): no
release, no refund, nothing sent, and the database refuses them too (HX204). If the money had
already left, the dispute's amount is recorded as the platform's loss. Admins are alerted
either way.

charge.dispute.closed, by outcome:
- won (or an inquiry closed without a chargeback): the hold is lifted and whatever waited is
  due again; no loss.
- lost: the bank gave the poster the money back. A held escrow keeps `CHARGEBACK_LOST` for
  good: it is never released nor refunded, its unsent transfer/refund rows are CANCELLED, and a
  task still live is CANCELLED (no refund: the bank made it). Money that had already left stays
  recorded as lost.

Stripe's order is not assumed: a `closed` with no `created` before it records the chargeback
already closed (and applies its outcome), and the late `created` then changes nothing."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from hustlexp.domain import LIVE_TASK_STATES, EscrowState
from hustlexp.services import audit
from hustlexp.services.admin_alerts import alert_admins
from hustlexp.services.base import Service, one, returns_result, trim_page

log = logging.getLogger(__name__)

# Escrow states in which the money is still with us (a dispute exists only for a charge that succeeded).
HOLDING_STATES = (EscrowState.PENDING, EscrowState.FUNDED, EscrowState.LOCKED_DISPUTE)
# Stripe's closing statuses that leave the money with the platform.
WON = frozenset({"won", "warning_closed"})


class ChargebackService(Service):
    # -- webhooks (inside the webhook's transaction) -------------------------------------

    def opened(self, dispute: dict[str, Any]) -> dict[str, Any]:
        with self.db.transaction() as conn:
            known = one(conn, "SELECT status FROM chargebacks WHERE stripe_dispute_id = %s FOR UPDATE",
                        (dispute["id"],))
            if known is not None:
                return {"result": "skipped", "reason": f"chargeback already {known['status']}"}
            escrow, task = self._escrow_of(conn, dispute)
            held = escrow is not None and self._holds_money(conn, escrow)
            row = self._insert(conn, dispute, escrow, held, status="OPEN")
            if held:
                assert escrow is not None
                conn.execute("UPDATE escrows SET chargeback_hold = 'CHARGEBACK' WHERE id = %s", (escrow["id"],))
            log.warning("chargeback %s opened on escrow %s (%s cents, %s): %s", dispute["id"],
                        escrow and escrow["id"], dispute.get("amount"), dispute.get("reason"),
                        "money held" if held else "money already paid out: loss recorded")
            self._alert(conn, "CHARGEBACK_OPENED", row, task)
            return {"result": "processed", "chargeback_id": row["id"], "money_held": held}

    def closed(self, dispute: dict[str, Any]) -> dict[str, Any]:
        status = "WON" if dispute.get("status") in WON else "LOST" if dispute.get("status") == "lost" else None
        if status is None:
            return {"result": "ignored", "reason": f"dispute status {dispute.get('status')!r} is not final"}
        with self.db.transaction() as conn:
            row = one(conn, "SELECT * FROM chargebacks WHERE stripe_dispute_id = %s FOR UPDATE", (dispute["id"],))
            escrow, task = self._escrow_of(conn, dispute if row is None else {
                "payment_intent": row["stripe_payment_intent_id"], "escrow_id": row["escrow_id"]})
            if row is None:
                # Closed before we heard it open: record it as if it had, then close it.
                held = escrow is not None and self._holds_money(conn, escrow)
                row = self._insert(conn, dispute, escrow, held, status="OPEN")
            elif row["status"] != "OPEN":
                return {"result": "skipped", "reason": f"chargeback already {row['status']}"}
            won = status == "WON"
            row = one(conn, """UPDATE chargebacks SET status = %s, stripe_status = %s, closed_at = now(),
                                      loss_amount = CASE WHEN %s OR money_held THEN 0 ELSE amount END
                                WHERE id = %s RETURNING *""",
                      (status, dispute.get("status"), won, row["id"]))
            assert row is not None
            if row["money_held"] and escrow is not None:
                if won:
                    self._lift_hold(conn, escrow["id"])
                else:
                    self._keep_for_good(conn, escrow["id"], task)
            log.warning("chargeback %s on escrow %s closed: %s", dispute["id"], escrow and escrow["id"], status)
            self._alert(conn, "CHARGEBACK_CLOSED", row, task)
            return {"result": "processed", "chargeback_id": row["id"], "status": status}

    # -- the admin desk ------------------------------------------------------------------

    @returns_result
    def page(self, admin_id: UUID, *, limit: int, before: UUID | None = None, status: str | None = None
             ) -> dict[str, Any]:
        """Chargebacks, newest first; `before` is the last id of the previous page (keyset)."""
        with self.db.transaction() as conn:
            audit.require_admin(conn, admin_id, "can_access_financials")
            rows = conn.execute(
                """SELECT c.*, e.task_id, e.state AS escrow_state, e.chargeback_hold
                     FROM chargebacks c LEFT JOIN escrows e ON e.id = c.escrow_id
                    WHERE (%(status)s::text IS NULL OR c.status = %(status)s)
                      AND (%(before)s::uuid IS NULL OR (c.opened_at, c.id) <
                           (SELECT opened_at, id FROM chargebacks WHERE id = %(before)s))
                    ORDER BY c.opened_at DESC, c.id DESC LIMIT %(limit)s""",
                {"status": status, "before": before, "limit": limit + 1}).fetchall()
        rows, more = trim_page(rows, limit)
        return {"chargebacks": rows, "has_more": more, "next_before": rows[-1]["id"] if more else None}

    # -- internals -----------------------------------------------------------------------

    def _escrow_of(self, conn: Any, dispute: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The disputed escrow (locked) and its task, by our id when we have it, else by the intent."""
        escrow = None
        if dispute.get("escrow_id"):
            escrow = one(conn, "SELECT * FROM escrows WHERE id = %s FOR UPDATE", (dispute["escrow_id"],))
        elif dispute.get("payment_intent"):
            escrow = one(conn, "SELECT * FROM escrows WHERE stripe_payment_intent_id = %s FOR UPDATE",
                         (dispute["payment_intent"],))
        if escrow is None:
            return None, None
        task = one(conn, "SELECT * FROM tasks WHERE id = %s FOR UPDATE", (escrow["task_id"],))
        return escrow, task

    @staticmethod
    def _holds_money(conn: Any, escrow: dict[str, Any]) -> bool:
        if escrow["state"] in HOLDING_STATES:
            return True
        unsent = one(conn, """SELECT 1 FROM money_outbox WHERE escrow_id = %s AND kind IN ('TRANSFER', 'REFUND')
                                 AND status IN ('PENDING', 'FAILED_PERMANENT') LIMIT 1""", (escrow["id"],))
        return unsent is not None

    @staticmethod
    def _insert(conn: Any, dispute: dict[str, Any], escrow: dict[str, Any] | None, held: bool, *, status: str
                ) -> dict[str, Any]:
        amount = int(dispute.get("amount") or 0)
        row = one(conn, """INSERT INTO chargebacks (stripe_dispute_id, escrow_id, stripe_charge_id,
                                  stripe_payment_intent_id, amount, reason, status, stripe_status, money_held,
                                  loss_amount)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                  (dispute["id"], escrow and escrow["id"], dispute.get("charge"), dispute.get("payment_intent"),
                   amount, dispute.get("reason"), status, dispute.get("status"), held, 0 if held else amount))
        assert row is not None
        return row

    def _lift_hold(self, conn: Any, escrow_id: Any) -> None:
        conn.execute("UPDATE escrows SET chargeback_hold = NULL WHERE id = %s AND chargeback_hold = 'CHARGEBACK'",
                     (escrow_id,))
        # What waited behind the hold is due now; the dispatcher hears of it at commit.
        due = [r["id"] for r in conn.execute(
            """UPDATE money_outbox SET next_attempt_at = now() WHERE escrow_id = %s AND status = 'PENDING'
               RETURNING id""", (escrow_id,)).fetchall()]
        self.s.outbox.wake(conn, due)

    def _keep_for_good(self, conn: Any, escrow_id: Any, task: dict[str, Any] | None) -> None:
        conn.execute("UPDATE escrows SET chargeback_hold = 'CHARGEBACK_LOST' WHERE id = %s", (escrow_id,))
        conn.execute("""UPDATE money_outbox SET status = 'CANCELLED', last_error = 'CHARGEBACK_LOST'
                         WHERE escrow_id = %s AND kind IN ('TRANSFER', 'REFUND')
                           AND status IN ('PENDING', 'FAILED_PERMANENT')""", (escrow_id,))
        if task is not None and task["state"] in LIVE_TASK_STATES:
            # The bank gave the poster the money back: the task ends here, with no refund of ours.
            conn.execute("UPDATE tasks SET state = 'CANCELLED', cancelled_at = now() WHERE id = %s", (task["id"],))
            for user_id in {task["poster_id"], task["worker_id"]} - {None}:
                self._notify(user_id, "TASK_CANCELLED", task_id=task["id"],
                             metadata={"title": task["title"], "reason": "chargeback"})

    def _alert(self, conn: Any, category: str, row: dict[str, Any], task: dict[str, Any] | None) -> None:
        alert_admins(self, conn, category, task_id=task and task["id"], metadata={
            "title": task["title"] if task else None, "chargeback_id": row["id"], "escrow_id": row["escrow_id"],
            "dispute_id": row["stripe_dispute_id"], "amount": row["amount"], "status": row["status"],
            "money_held": row["money_held"], "loss_amount": row["loss_amount"]})
