"""PayoutIncidentService: a worker's money that came back (transfer.reversed) or never reached
their bank (payout.failed on their connected account). Each is recorded once per Stripe object
(a reversal that grows updates its row), and the worker and the money admins are told."""

from __future__ import annotations

import logging
from typing import Any

from hustlexp.services.admin_alerts import alert_admins
from hustlexp.services.base import Service, one

log = logging.getLogger(__name__)


class PayoutIncidentService(Service):
    def transfer_reversed(self, transfer: dict[str, Any]) -> dict[str, Any]:
        metadata = transfer.get("metadata") or {}
        with self.db.transaction() as conn:
            escrow = one(conn, """SELECT e.id, t.id AS task_id, t.title, t.worker_id FROM escrows e
                                    JOIN tasks t ON t.id = e.task_id
                                   WHERE e.id::text = %s OR e.stripe_transfer_id = %s""",
                         (metadata.get("escrow_id") or "", transfer["id"]))
            worker = one(conn, "SELECT id FROM users WHERE id::text = %s OR stripe_connect_id = %s",
                         (metadata.get("worker_user_id") or "", transfer.get("destination") or ""))
            return self._record(conn, "TRANSFER_REVERSED", transfer["id"], int(transfer.get("amount_reversed") or 0),
                                account=transfer.get("destination"), user_id=worker and worker["id"], escrow=escrow,
                                category="PAYOUT_REVERSED")

    def payout_failed(self, payout: dict[str, Any], account: str | None) -> dict[str, Any]:
        with self.db.transaction() as conn:
            worker = one(conn, "SELECT id FROM users WHERE stripe_connect_id = %s", (account,)) if account else None
            return self._record(conn, "PAYOUT_FAILED", payout["id"], int(payout.get("amount") or 0), account=account,
                                user_id=worker and worker["id"], escrow=None, category="PAYOUT_FAILED",
                                failure_code=payout.get("failure_code"))

    def _record(self, conn: Any, kind: str, object_id: str, amount: int, *, account: str | None, user_id: Any,
                escrow: dict[str, Any] | None, category: str, failure_code: str | None = None) -> dict[str, Any]:
        # A second reversal of one transfer arrives as a bigger amount_reversed; a replay of the
        # same state (under a new event id) changes nothing and tells nobody twice.
        row = one(conn, """INSERT INTO payout_incidents (kind, stripe_object_id, stripe_account_id, user_id,
                                  escrow_id, amount, failure_code)
                           VALUES (%s, %s, %s, %s, %s, %s, %s)
                           ON CONFLICT (kind, stripe_object_id) DO UPDATE SET amount = EXCLUDED.amount
                                 WHERE payout_incidents.amount < EXCLUDED.amount
                           RETURNING *""",
                  (kind, object_id, account, user_id, escrow and escrow["id"], amount, failure_code))
        if row is None:
            return {"result": "skipped", "reason": f"{kind.lower()} already recorded"}
        task_id = escrow["task_id"] if escrow and escrow["worker_id"] == user_id else None
        # One notice per incident and amount: a grown reversal is news, not a repeat.
        metadata = {"notice_key": f"{row['id']}:{amount}", "incident_id": row["id"], "incident": kind,
                    "stripe_object_id": object_id, "amount": amount,
                    "escrow_id": escrow and escrow["id"], "title": escrow and escrow["title"],
                    "failure_code": failure_code, "stripe_account_id": account}
        if user_id is not None:
            self._notify(user_id, category, task_id=task_id, metadata=metadata)
        alert_admins(self, conn, "PAYOUT_INCIDENT", metadata=metadata | {"user_id": user_id})
        log.warning("%s %s: %s cents, account %s, worker %s", kind, object_id, amount, account, user_id)
        return {"result": "processed", "incident_id": row["id"]}
