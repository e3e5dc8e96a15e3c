"""Trust tiers (domain §5, DESIGN §7.12): promotion from metrics, penalties, admin overrides,
and the eligibility check a worker passes before accepting a task.

Tier changes are logged by the `trust_tier_audit` trigger alone; this module only describes
each change through transaction-local settings before the UPDATE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from hustlexp.db import set_local
from hustlexp.domain import AccountStatus, EscrowState, RiskLevel, TaskState
from hustlexp.errors import Conflict, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, one, page_params, returns_result

TIER_NAMES = {1: "ROOKIE", 2: "VERIFIED", 3: "TRUSTED", 4: "ELITE"}
TIER_BENEFITS = {
    1: ["Base XP rate", "Low-risk tasks"],
    2: ["1.5× XP", "Low- and medium-risk tasks"],
    3: ["2× XP", "Priority matching", "Low- and medium-risk tasks"],
    4: ["2× XP", "Priority matching", "VIP support", "Low-, medium- and high-risk tasks"],
}
RISK_CLEARANCE: dict[int, frozenset[str]] = {
    1: frozenset({RiskLevel.LOW}),
    2: frozenset({RiskLevel.LOW, RiskLevel.MEDIUM}),
    3: frozenset({RiskLevel.LOW, RiskLevel.MEDIUM}),
    4: frozenset({RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH}),
}
TIER2_TASKS = 5
TIER3_TASKS = 20
TIER3_APPROVAL_PERCENT = 95
ELITE_TASKS = 100
ELITE_RATING = 4.8
# ELITE needs a rating system we do not have: only an admin grants it (DESIGN §7.12).
HIGHEST_EARNED_TIER = 3

_METRICS = """
SELECT u.trust_tier, u.is_verified,
       (SELECT count(*) FROM tasks t WHERE t.worker_id = u.id AND t.state = 'COMPLETED') AS completed,
       (SELECT count(*) FROM proofs p WHERE p.submitter_id = u.id AND p.state = 'ACCEPTED') AS accepted,
       (SELECT count(*) FROM proofs p WHERE p.submitter_id = u.id AND p.state = 'REJECTED') AS rejected
  FROM users u WHERE u.id = %s
"""

Conn = psycopg.Connection[dict[str, Any]]


def tier_from_metrics(m: dict[str, Any]) -> int:
    """The highest earnable tier whose (cumulative) requirements all hold. A user with no
    reviewed proof has no approval rate and so does not reach tier 3."""
    tier = 1
    if m["completed"] >= TIER2_TASKS and m["is_verified"]:
        tier = 2
        reviewed = m["accepted"] + m["rejected"]
        if (m["completed"] >= TIER3_TASKS and reviewed > 0
                and m["accepted"] * 100 >= TIER3_APPROVAL_PERCENT * reviewed):
            tier = 3
    return tier


def approval_percent(m: dict[str, Any]) -> float | None:
    reviewed = m["accepted"] + m["rejected"]
    return None if reviewed == 0 else round(m["accepted"] * 100 / reviewed, 1)


@contextmanager
def _described(conn: Conn, reason: str, actor: str = "system", *, task_id: Any = None,
               dispute_id: Any = None, details: dict[str, Any] | None = None) -> Iterator[None]:
    """Describe the tier change the trigger is about to log, then clear the description so a
    later change in the same transaction cannot inherit it."""
    settings = {
        "hustlexp.trust_reason": reason,
        "hustlexp.trust_actor": actor,
        "hustlexp.trust_task_id": str(task_id) if task_id is not None else None,
        "hustlexp.trust_dispute_id": str(dispute_id) if dispute_id is not None else None,
        "hustlexp.trust_details": json.dumps(details) if details is not None else None,
    }
    for name, value in settings.items():
        set_local(conn, name, value)
    yield
    for name in settings:
        set_local(conn, name, None)


class TrustService(Service):
    @returns_result
    def calculate_tier(self, user_id: Any) -> int:
        """The tier the user's record earns (1..3; never 4)."""
        with self.db.transaction() as conn:
            return tier_from_metrics(self._metrics(conn, user_id))

    @returns_result
    def update_user_trust(self, user_id: Any, *, task_id: Any = None, dispute_id: Any = None
                          ) -> dict[str, Any]:
        """Promote the user when the calculated tier is above the stored one; never demotes and
        never touches tier 4. Returns {old_tier, new_tier, changed, new_badges}."""
        with self.db.transaction() as conn:
            self._lock_user(conn, user_id)
            metrics = self._metrics(conn, user_id)
            old = metrics["trust_tier"]
            target = tier_from_metrics(metrics)
            if target <= old:
                return {"old_tier": old, "new_tier": old, "changed": False, "new_badges": []}
            details = {"completed": metrics["completed"], "approval_percent": approval_percent(metrics),
                       "is_verified": metrics["is_verified"]}
            with _described(conn, "PROMOTION", task_id=task_id, dispute_id=dispute_id, details=details):
                conn.execute("UPDATE users SET trust_tier = %s WHERE id = %s", (target, user_id))
            badges = self.s.badges.check_and_award(user_id, task_id=task_id).unwrap()
            self._notify_change(user_id, old, target, task_id=task_id)
            return {"old_tier": old, "new_tier": target, "changed": True,
                    "new_badges": [b["badge_type"] for b in badges]}

    @returns_result
    def penalize(self, user_id: Any, *, dispute_id: Any) -> dict[str, Any]:
        """One tier down (not below 1) for the loser of a dispute. Returns {old_tier, new_tier,
        changed}."""
        with self.db.transaction() as conn:
            old = self._lock_user(conn, user_id)["trust_tier"]
            if old <= 1:
                return {"old_tier": old, "new_tier": old, "changed": False}
            new = old - 1
            with _described(conn, "PENALTY", dispute_id=dispute_id, details={"cause": "dispute_lost"}):
                conn.execute("UPDATE users SET trust_tier = %s WHERE id = %s", (new, user_id))
            self._notify_change(user_id, old, new)
            return {"old_tier": old, "new_tier": new, "changed": True}

    @returns_result
    def demote_after_pause(self, user_id: Any, paused_days: int) -> dict[str, Any]:
        """One tier down (not below 1) for a pause of more than 90 days (PRODUCT_SPEC §20.3)."""
        with self.db.transaction() as conn:
            old = self._lock_user(conn, user_id)["trust_tier"]
            if old <= 1:
                return {"old_tier": old, "new_tier": old, "changed": False}
            with _described(conn, "PAUSE_OVER_90_DAYS", details={"paused_days": paused_days}):
                conn.execute("UPDATE users SET trust_tier = %s WHERE id = %s", (old - 1, user_id))
            return {"old_tier": old, "new_tier": old - 1, "changed": True}

    @returns_result
    def set_tier(self, admin_user_id: Any, user_id: Any, tier: int, reason: str) -> dict[str, Any]:
        """Admin override (the only way to ELITE). The admin needs `can_modify_trust` and may
        not change their own tier; every call writes an admin_actions row. Returns {old_tier,
        new_tier, changed, admin_action_id}."""
        if not isinstance(tier, int) or isinstance(tier, bool) or not 1 <= tier <= 4:
            raise ValidationError("tier must be 1..4", details={"tier": ["1..4"]})
        note = (reason or "").strip()
        if not 1 <= len(note) <= 500:
            raise ValidationError("a reason (1-500 characters) is required", details={"reason": ["1..500"]})
        with self.db.transaction() as conn:
            admin = audit.require_admin(conn, admin_user_id, "can_modify_trust")
            if str(admin_user_id) == str(user_id):
                raise Forbidden("Admins cannot change their own trust tier.")
            old = self._lock_user(conn, user_id)["trust_tier"]
            if tier != old:
                with _described(conn, "ADMIN_OVERRIDE", f"admin:{admin_user_id}", details={"note": note}):
                    conn.execute("UPDATE users SET trust_tier = %s WHERE id = %s", (tier, user_id))
            action_id = audit.record(conn, admin, "TRUST_TIER_OVERRIDE",
                                     {"old_tier": old, "new_tier": tier, "reason": note},
                                     result="SUCCESS" if tier != old else "NO_CHANGE",
                                     result_details={"old_tier": old, "new_tier": tier}, user_id=user_id)
            if tier > old:
                self.s.badges.check_and_award(user_id).unwrap()
            if tier != old:
                self._notify_change(user_id, old, tier)
            return {"old_tier": old, "new_tier": tier, "changed": tier != old,
                    "admin_action_id": action_id}

    @returns_result
    def check_eligibility(self, user_id: Any, task_id: Any) -> dict[str, Any]:
        """May this user accept this task now? Fails NOT_FOUND (task; HX504 for the user),
        CONFLICT (task not OPEN, escrow not FUNDED) or FORBIDDEN (own task, account not ACTIVE
        — HX602 when paused —, tier below the task's requirement, risk beyond clearance).
        Takes no locks: the caller holds the task row."""
        with self.db.transaction() as conn:
            task = one(conn, "SELECT t.id, t.poster_id, t.state, t.required_trust_tier, t.risk_level, "
                             "e.state AS escrow_state FROM tasks t LEFT JOIN escrows e ON e.task_id = t.id "
                             "WHERE t.id = %s", (task_id,))
            user = one(conn, "SELECT id, trust_tier, account_status FROM users WHERE id = %s", (user_id,))
        return judge_eligibility(task, user)

    @returns_result
    def get_trust_history(self, user_id: Any, limit: int | None = 20, offset: int | None = 0
                          ) -> dict[str, Any]:
        """The user's tier changes, newest first: {entries, total, has_more}; an entry is a
        trust_ledger row (id, old_tier, new_tier, reason, reason_details, task_id, dispute_id,
        changed_by, changed_at)."""
        limit, offset = page_params(limit, offset)
        with self.db.transaction() as conn:
            if one(conn, "SELECT 1 FROM users WHERE id = %s", (user_id,)) is None:
                raise NotFound("No such user.", code="HX504")
            counted = one(conn, "SELECT count(*) AS n FROM trust_ledger WHERE user_id = %s", (user_id,))
            total = counted["n"] if counted else 0
            rows = conn.execute(
                "SELECT id, old_tier, new_tier, reason, reason_details, task_id, dispute_id, changed_by, "
                "changed_at FROM trust_ledger WHERE user_id = %s "
                "ORDER BY changed_at DESC, id DESC LIMIT %s OFFSET %s", (user_id, limit, offset)).fetchall()
        return {"entries": rows, "total": total, "has_more": offset + len(rows) < total}

    @returns_result
    def get_trust_tier_info(self, user_id: Any) -> dict[str, Any]:
        """{current_tier, tier_name, next_tier, next_tier_admin_only, requirements_for_next
        {tasks_completed, approval_rate (percent), id_verified, avg_rating: {required, current}}
        (None at tier 4), tier_benefits[]}. avg_rating.current is None: there is no rating
        system yet."""
        with self.db.transaction() as conn:
            m = self._metrics(conn, user_id)
        tier = m["trust_tier"]
        nxt = tier + 1 if tier < 4 else None
        requirements = None
        if nxt is not None:
            requirements = {
                "tasks_completed": {"required": {2: TIER2_TASKS, 3: TIER3_TASKS, 4: ELITE_TASKS}[nxt],
                                    "current": m["completed"]},
                "approval_rate": {"required": TIER3_APPROVAL_PERCENT if nxt >= 3 else None,
                                  "current": approval_percent(m)},
                "id_verified": {"required": True, "current": m["is_verified"]},
                "avg_rating": {"required": ELITE_RATING if nxt == 4 else None, "current": None},
            }
        return {
            "current_tier": tier,
            "tier_name": TIER_NAMES[tier],
            "next_tier": nxt,
            "next_tier_name": TIER_NAMES[nxt] if nxt else None,
            "next_tier_admin_only": nxt == 4,
            "requirements_for_next": requirements,
            "tier_benefits": TIER_BENEFITS[tier],
        }

    def _metrics(self, conn: Conn, user_id: Any) -> dict[str, Any]:
        m = one(conn, _METRICS, (user_id,))
        if m is None:
            raise NotFound("No such user.", code="HX504")
        return m

    def _lock_user(self, conn: Conn, user_id: Any) -> dict[str, Any]:
        user = one(conn, "SELECT id, trust_tier FROM users WHERE id = %s FOR UPDATE", (user_id,))
        if user is None:
            raise NotFound("No such user.", code="HX504")
        return user

    def _notify_change(self, user_id: Any, old: int, new: int, *, task_id: Any = None) -> None:
        self._notify(user_id, "TRUST_TIER_UP" if new > old else "TRUST_TIER_DOWN", task_id=task_id,
                     metadata={"old_tier": old, "new_tier": new})


def judge_eligibility(task: dict[str, Any] | None, user: dict[str, Any] | None) -> dict[str, Any]:
    """The eligibility rules on rows already read: `task` with its `escrow_state`, `user` with
    id, trust_tier and account_status (accept reads both with its lock; check_eligibility reads
    them itself). Raises what check_eligibility documents."""
    if task is None:
        raise NotFound("No such task.")
    if task["state"] != TaskState.OPEN:
        raise Conflict("The task is no longer open.", details={"state": task["state"]})
    if task["escrow_state"] != EscrowState.FUNDED:
        raise Conflict("The task's escrow is not funded yet.",
                       details={"escrow_state": task["escrow_state"]})
    if user is None:
        raise NotFound("No such user.", code="HX504")
    if str(task["poster_id"]) == str(user["id"]):
        raise Forbidden("You cannot accept your own task.", details={"reason": "OWN_TASK"})
    if user["account_status"] == AccountStatus.PAUSED:
        raise Forbidden("Your account is paused.", code="HX602")
    if user["account_status"] != AccountStatus.ACTIVE:
        raise Forbidden("Your account is not active.", details={"reason": "ACCOUNT_SUSPENDED"})
    required = task["required_trust_tier"] or 0
    if user["trust_tier"] < required:
        raise Forbidden("Your trust tier is too low for this task.",
                        details={"reason": "TRUST_TIER", "required_trust_tier": required,
                                 "trust_tier": user["trust_tier"]})
    if task["risk_level"] not in RISK_CLEARANCE[user["trust_tier"]]:
        raise Forbidden("Your trust tier does not clear this task's risk level.",
                        details={"reason": "RISK_LEVEL", "risk_level": task["risk_level"],
                                 "trust_tier": user["trust_tier"]})
    return {"eligible": True, "user_id": user["id"], "task_id": task["id"],
            "trust_tier": user["trust_tier"], "required_trust_tier": required,
            "risk_level": task["risk_level"]}
