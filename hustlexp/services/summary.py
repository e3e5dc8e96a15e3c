"""The operator's one-page summary (GET /api/admin/metrics): tasks by state, escrow money by
state, the money outbox backlog, open disputes and the moderation queue. Plain aggregate
queries over indexed state columns; an admin opens it, nothing polls it."""

from __future__ import annotations

from typing import Any

from hustlexp.services import audit
from hustlexp.services.base import Service, one, returns_result


class SummaryService(Service):
    @returns_result
    def summary(self, admin_id: Any) -> dict[str, Any]:
        """Admin with can_access_financials."""
        with self.db.transaction() as conn:
            audit.require_admin(conn, admin_id, "can_access_financials")
            tasks = {r["state"]: r["n"] for r in conn.execute(
                "SELECT state, count(*) AS n FROM tasks GROUP BY state").fetchall()}
            escrows = {r["state"]: {"count": r["n"], "amount_cents": r["amount"]} for r in conn.execute(
                "SELECT state, count(*) AS n, coalesce(sum(amount), 0)::bigint AS amount FROM escrows GROUP BY state"
            ).fetchall()}
            outbox = {r["status"]: r["n"] for r in conn.execute(
                "SELECT status, count(*) AS n FROM money_outbox GROUP BY status").fetchall()}
            oldest = one(conn, "SELECT extract(epoch FROM now() - min(created_at))::bigint AS age "
                               "FROM money_outbox WHERE status IN ('PENDING', 'PROCESSING')")
            disputes = one(conn, "SELECT count(*) FILTER (WHERE state <> 'RESOLVED') AS open, "
                                 "count(*) FILTER (WHERE state = 'EVIDENCE_REQUESTED') AS evidence_requested "
                                 "FROM disputes")
            moderation = one(conn, "SELECT count(*) AS n FROM task_messages "
                                   "WHERE moderation_status = 'quarantined' AND deleted_at IS NULL")
            review = one(conn, "SELECT count(*) AS n FROM tasks WHERE review_requested_at IS NOT NULL "
                               "AND state NOT IN ('COMPLETED', 'CANCELLED', 'EXPIRED')")
            users = {r["account_status"]: r["n"] for r in conn.execute(
                "SELECT account_status, count(*) AS n FROM users GROUP BY account_status").fetchall()}
            assert disputes is not None and moderation is not None and review is not None and oldest is not None
            return {
                "tasks_by_state": tasks, "escrows_by_state": escrows,
                "outbox": {"by_status": outbox, "backlog": outbox.get("PENDING", 0) + outbox.get("PROCESSING", 0),
                           "oldest_pending_age_seconds": oldest["age"]},
                "disputes": {"open": disputes["open"], "evidence_requested": disputes["evidence_requested"]},
                "moderation_queue": moderation["n"], "tasks_for_review": review["n"], "users_by_status": users,
            }
