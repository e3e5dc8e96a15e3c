"""WalletService: where a user's money is (WALLET_UI_SPEC §2, §3.2), in integer cents.

One source of truth: the escrows and the money outbox, read as they are. Nothing here is
stored or counted separately, so the wallet cannot drift from the money that moved.

- A worker's earnings are their TRANSFER rows: PAID (Stripe made the transfer), ON_THE_WAY (due,
  or being retried), WAITING_FOR_PAYOUT_ACCOUNT (the worker cannot be paid yet: connect.PAYABLE_SQL,
  the rule the outbox itself follows), FAILED (an admin must act). The fee kept is what the
  escrow released minus what the worker receives.
- A poster's payments are their tasks' escrows: charged (the payment landed), held (still in
  escrow), released (to the worker, fee included) and refunded (the refund row queued for it;
  `refund_status` says whether Stripe made it). For every task charged = held + released + refunded."""

from __future__ import annotations

from typing import Any

from hustlexp.services.base import Service, decode_cursor, encode_cursor, one, page_params, returns_result, trim_page
from hustlexp.services.connect import PAYABLE_SQL, PAYOUT_ACCOUNT_JOIN
from hustlexp.services.user import require_user

EARNING_STATUSES = ("PAID", "ON_THE_WAY", "WAITING_FOR_PAYOUT_ACCOUNT", "FAILED")

# The worker %(me)s's payouts, one row per task. PAYABLE_SQL and the join are constants.
_PAYOUTS = f"""
    SELECT o.id, o.escrow_id, e.task_id, t.title AS task_title, o.amount,
           (CASE WHEN e.state = 'REFUND_PARTIAL' THEN e.release_amount ELSE e.amount END) - o.amount AS fee_kept,
           CASE WHEN o.status = 'SUCCEEDED' THEN 'PAID'
                WHEN o.status = 'FAILED_PERMANENT' THEN 'FAILED'
                WHEN o.status = 'CANCELLED' THEN 'CANCELLED'
                WHEN (SELECT {PAYABLE_SQL} FROM users u {PAYOUT_ACCOUNT_JOIN} WHERE u.id = %(me)s) THEN 'ON_THE_WAY'
                ELSE 'WAITING_FOR_PAYOUT_ACCOUNT' END AS status,
           o.stripe_object_id AS stripe_transfer_id, e.released_at, o.created_at, o.completed_at AS paid_at
      FROM money_outbox o JOIN escrows e ON e.id = o.escrow_id JOIN tasks t ON t.id = e.task_id
     WHERE o.recipient_id = %(me)s AND o.kind = 'TRANSFER'"""

# The poster %(me)s's tasks and what happened to each one's money.
_PAYMENTS = """
    SELECT t.id AS task_id, t.title AS task_title, t.state AS task_state, e.id AS escrow_id,
           e.state AS escrow_state, e.amount AS price,
           CASE WHEN e.funded_at IS NOT NULL THEN e.amount ELSE 0 END AS charged,
           CASE WHEN e.state IN ('FUNDED', 'LOCKED_DISPUTE') THEN e.amount ELSE 0 END AS held,
           CASE e.state WHEN 'RELEASED' THEN e.amount WHEN 'REFUND_PARTIAL' THEN e.release_amount ELSE 0 END
               AS released,
           coalesce(r.amount, 0) AS refunded, r.status AS refund_status, r.stripe_object_id AS stripe_refund_id,
           e.funded_at, e.released_at, e.refunded_at, t.created_at
      FROM tasks t JOIN escrows e ON e.task_id = t.id
      LEFT JOIN money_outbox r ON r.escrow_id = e.id AND r.kind = 'REFUND'
     WHERE t.poster_id = %(me)s"""


class WalletService(Service):
    @returns_result
    def earnings(self, user_id: Any, *, limit: int | None = 20, cursor: str | None = None) -> dict[str, Any]:
        """{totals: {paid, on_the_way, waiting_for_payout_account, failed}, payouts (newest first),
        next_cursor, has_more}. Totals cover every payout, not only this page."""
        params = _keyset(user_id, limit, cursor)
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            sums = {r["status"]: r["cents"] for r in conn.execute(
                f"SELECT status, sum(amount)::bigint AS cents FROM ({_PAYOUTS}) p GROUP BY status", params)}
            rows = conn.execute(f"""
                SELECT * FROM ({_PAYOUTS}) p
                 WHERE %(after_at)s::timestamptz IS NULL OR (p.created_at, p.id) < (%(after_at)s, %(after_id)s::uuid)
                 ORDER BY p.created_at DESC, p.id DESC LIMIT %(limit)s""", params).fetchall()
        return {"totals": {status.lower(): int(sums.get(status) or 0) for status in EARNING_STATUSES},
                **_page("payouts", rows, params, "id")}

    @returns_result
    def payments(self, user_id: Any, *, limit: int | None = 20, cursor: str | None = None) -> dict[str, Any]:
        """{totals: {charged, held, released, refunded}, payments (one per task posted, newest
        first), next_cursor, has_more}. Totals cover every task, not only this page."""
        params = _keyset(user_id, limit, cursor)
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            totals = one(conn, f"""SELECT coalesce(sum(charged), 0)::bigint AS charged,
                                          coalesce(sum(held), 0)::bigint AS held,
                                          coalesce(sum(released), 0)::bigint AS released,
                                          coalesce(sum(refunded), 0)::bigint AS refunded
                                     FROM ({_PAYMENTS}) p""", params)
            rows = conn.execute(f"""
                SELECT * FROM ({_PAYMENTS}) p
                 WHERE %(after_at)s::timestamptz IS NULL
                    OR (p.created_at, p.task_id) < (%(after_at)s, %(after_id)s::uuid)
                 ORDER BY p.created_at DESC, p.task_id DESC LIMIT %(limit)s""", params).fetchall()
        assert totals is not None
        return {"totals": {k: int(v) for k, v in totals.items()}, **_page("payments", rows, params, "task_id")}


def _keyset(user_id: Any, limit: int | None, cursor: str | None) -> dict[str, Any]:
    """Query parameters of one keyset page, newest first: one row more than the page tells
    whether another follows."""
    size, _ = page_params(limit, 0)
    after = decode_cursor(cursor) if cursor else None
    return {"me": user_id, "limit": size + 1, "after_at": after[0] if after else None,
            "after_id": after[1] if after else None}


def _page(name: str, rows: list[dict[str, Any]], params: dict[str, Any], id_key: str) -> dict[str, Any]:
    rows, has_more = trim_page(rows, params["limit"] - 1)
    return {name: rows, "has_more": has_more,
            "next_cursor": encode_cursor(rows[-1]["created_at"], rows[-1][id_key]) if has_more else None}


