"""PaymentRiskService: Stripe Radar's verdict on the charge that funded an escrow
(STRIPE_INTEGRATION §10.4). Every level is kept on the escrow; `elevated` and `highest` are
flagged for review and alert the money admins; `highest` also keeps the task out of anyone's
hands (eligibility rule PAYMENT_UNDER_REVIEW) until an admin clears it, audited."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from hustlexp.errors import Conflict, NotFound
from hustlexp.services import audit
from hustlexp.services.admin_alerts import alert_admins
from hustlexp.services.base import Service, one, returns_result

log = logging.getLogger(__name__)

REVIEWED_LEVELS = ("elevated", "highest")
BLOCKING_LEVEL = "highest"


class PaymentRiskService(Service):
    def record(self, conn: Any, escrow_id: Any, risk_level: str) -> dict[str, Any]:
        """In the funding webhook's transaction, once the escrow is FUNDED with its level stored
        (EscrowService.payment_succeeded): a level under review alerts the money admins."""
        if risk_level in REVIEWED_LEVELS:
            escrow = one(conn, """SELECT e.task_id, e.amount, t.title FROM escrows e JOIN tasks t ON t.id = e.task_id
                                   WHERE e.id = %s""", (escrow_id,))
            assert escrow is not None
            log.warning("escrow %s funded by a payment Radar scored %s: flagged for review", escrow_id, risk_level)
            alert_admins(self, conn, "PAYMENT_RISK_REVIEW", task_id=escrow["task_id"], metadata={
                "title": escrow["title"], "escrow_id": escrow_id, "risk_level": risk_level,
                "amount": escrow["amount"], "blocks_acceptance": risk_level == BLOCKING_LEVEL})
        return {"risk_level": risk_level, "flagged": risk_level in REVIEWED_LEVELS}

    @returns_result
    def clear(self, admin_id: UUID, escrow_id: UUID, *, note: str | None = None) -> dict[str, Any]:
        """An admin reviewed a flagged payment and lets the task go on."""
        with self.db.transaction() as conn:
            role = audit.require_admin(conn, admin_id, "can_override_escrow")
            escrow = one(conn, "SELECT * FROM escrows WHERE id = %s FOR UPDATE", (escrow_id,))
            if escrow is None:
                raise NotFound("escrow not found")
            if escrow["payment_risk_level"] not in REVIEWED_LEVELS:
                raise Conflict("this escrow's payment is not flagged for review",
                               details={"payment_risk_level": escrow["payment_risk_level"]})
            if escrow["risk_cleared_at"] is not None:
                raise Conflict("this escrow's payment was already cleared",
                               details={"risk_cleared_at": escrow["risk_cleared_at"].isoformat()})
            escrow = one(conn, """UPDATE escrows SET risk_cleared_at = now(), risk_cleared_by = %s
                                   WHERE id = %s RETURNING *""", (admin_id, escrow_id))
            assert escrow is not None
            action_id = audit.record(conn, role, "PAYMENT_RISK_CLEAR",
                                     {"risk_level": escrow["payment_risk_level"], "note": note},
                                     escrow_id=escrow_id, task_id=escrow["task_id"])
            return {"escrow_id": escrow_id, "task_id": escrow["task_id"],
                    "payment_risk_level": escrow["payment_risk_level"], "risk_cleared_at": escrow["risk_cleared_at"],
                    "risk_cleared_by": admin_id, "action_id": action_id}
