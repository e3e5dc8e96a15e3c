"""Who may take which task, now: the one predicate `accept` checks and the feed filters by, so
the two can never disagree (MATCHING_ALGORITHMS "Eligibility Check", PRODUCT_SPEC §8.2).

RULES is an ordered list of conditions over a task `t`, its escrow `e` and the worker `u`; all
must hold. The feed ANDs them into its WHERE clause (PREDICATE); `refusal` evaluates each for one
task and names the first that fails, so accept can say why. Risk clearance depends on the
worker's tier: pass `risk_clearance(tier)` as %(risk_clearance)s."""

from __future__ import annotations

from typing import Any

from hustlexp.domain import RiskLevel
from hustlexp.services.base import one

# Trust tier -> the task risk levels it clears (INV-ELIGIBILITY-1; critical: nobody).
RISK_CLEARANCE: dict[int, frozenset[str]] = {
    1: frozenset({RiskLevel.LOW}),
    2: frozenset({RiskLevel.LOW, RiskLevel.MEDIUM}),
    3: frozenset({RiskLevel.LOW, RiskLevel.MEDIUM}),
    4: frozenset({RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH}),
}

RULES: tuple[tuple[str, str], ...] = (
    ("TASK_NOT_OPEN", "t.state = 'OPEN'"),
    ("ESCROW_NOT_FUNDED", "e.state = 'FUNDED'"),
    # A chargeback holds the money, or Radar scored the payment `highest` and no admin cleared it.
    ("PAYMENT_UNDER_REVIEW", "e.chargeback_hold IS NULL AND (e.payment_risk_level IS DISTINCT FROM 'highest' "
                             "OR e.risk_cleared_at IS NOT NULL)"),
    ("OWN_TASK", "t.poster_id <> u.id"),
    ("ACCOUNT_PAUSED", "u.account_status <> 'PAUSED'"),
    ("ACCOUNT_SUSPENDED", "u.account_status = 'ACTIVE'"),
    ("TRUST_TIER", "u.trust_tier >= coalesce(t.required_trust_tier, 0)"),
    ("RISK_LEVEL", "t.risk_level = ANY(%(risk_clearance)s)"),
)

# The rules' SQL is the constants above; values travel as parameters.
PREDICATE = " AND ".join(f"({condition})" for _, condition in RULES)


def risk_clearance(tier: int) -> list[str]:
    return sorted(str(level) for level in RISK_CLEARANCE[tier])


def update_if_eligible(conn: Any, task_id: Any, user_id: Any, tier: int, assignments: str
                       ) -> dict[str, Any] | None:
    """Apply `assignments` (SQL over the task's columns; the user's id is %(user)s) to the task
    only if every rule holds for the user, in one statement: the task row as updated, or None
    when a rule fails (refusal() names it). The caller holds the task's lock."""
    return one(conn, f"""UPDATE tasks t SET {assignments} FROM escrows e, users u
                          WHERE t.id = %(task)s AND e.task_id = t.id AND u.id = %(user)s AND {PREDICATE}
                         RETURNING t.*""",
               {"task": task_id, "user": user_id, "risk_clearance": risk_clearance(tier)})


def refusal(conn: Any, task_id: Any, user_id: Any, tier: int) -> dict[str, Any] | None:
    """None when the user may take the task now; else {reason, task columns...} for the first rule
    that fails. The caller has checked that both rows exist."""
    failed = ", ".join(f"NOT coalesce({condition}, false) AS {reason.lower()}" for reason, condition in RULES)
    row = one(conn, f"""SELECT t.state, e.state AS escrow_state, t.required_trust_tier, t.risk_level,
                               u.trust_tier, {failed}
                          FROM tasks t LEFT JOIN escrows e ON e.task_id = t.id, users u
                         WHERE t.id = %(task)s AND u.id = %(user)s""",
                  {"task": task_id, "user": user_id, "risk_clearance": risk_clearance(tier)})
    assert row is not None
    for reason, _ in RULES:
        if row[reason.lower()]:
            return row | {"reason": reason}
    return None
