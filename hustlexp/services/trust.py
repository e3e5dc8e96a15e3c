"""Trust tiers (domain §5, DESIGN §7.12, ARCHITECTURE §4): promotion from metrics (ELITE
uses ratings), identity verification, penalties (a lost dispute, repeated proof rejections),
inactivity decay, admin overrides, and the eligibility check a worker passes before accepting
a task.

Tier changes are logged by the `trust_tier_audit` trigger alone; this module only describes
each change through transaction-local settings before the UPDATE."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg

from hustlexp.db import set_local
from hustlexp.errors import Conflict, DomainError, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, one, page_params, returns_result
from hustlexp.services.counters import COUNTS, read_user
from hustlexp.services.eligibility import refusal
from hustlexp.services.rating import PUBLIC_SQL
from hustlexp.services.user import missing_user, require_user

TIER_NAMES = {1: "ROOKIE", 2: "VERIFIED", 3: "TRUSTED", 4: "ELITE"}
TIER_BENEFITS = {
    1: ["Base XP rate", "Low-risk tasks"],
    2: ["1.5× XP", "Low- and medium-risk tasks"],
    3: ["2× XP", "Priority matching", "Low- and medium-risk tasks"],
    4: ["2× XP", "Priority matching", "VIP support", "Low-, medium- and high-risk tasks"],
}
TIER2_TASKS = 5
TIER3_TASKS = 20
TIER3_APPROVAL_PERCENT = 95
ELITE_TASKS = 100
ELITE_RATING = 4.8
ELITE_MAX_DISPUTE_PERCENT = 1  # strictly below
# After a penalty the user is not promoted again for this long (else the next completion
# would undo it at once: the metrics that earned the tier have not changed).
PENALTY_HOLD = timedelta(days=30)
# ARCHITECTURE §4.3: no completed task in 90 days costs one tier, at most once per 90 days.
INACTIVITY = timedelta(days=90)
# Repeated proof rejections: this many in REJECTION_WINDOW cost one tier, once per window.
REJECTIONS_FOR_PENALTY = 3
REJECTION_WINDOW = timedelta(days=30)

# What promotion reads of a user `u` (LEFT JOIN user_counters c): tier, verification, the
# counters and the last penalty. Public ratings are read apart (_RATINGS), only when they can
# decide the tier: their publication depends on the time, so no trigger can keep them counted.
LAST_PENALTY = """(SELECT max(l.changed_at) FROM trust_ledger l WHERE l.user_id = u.id AND l.reason = 'PENALTY')
           AS last_penalty_at"""
COLUMNS = f"u.trust_tier, u.is_verified, {COUNTS}, {LAST_PENALTY}"

_RATINGS = f"""
SELECT count(*) AS ratings, coalesce(sum(r.stars), 0) AS stars
  FROM task_ratings r JOIN tasks t ON t.id = r.task_id
 WHERE r.ratee_id = %(user)s AND {PUBLIC_SQL}
"""

# Ratings that cannot hold a user back: with them, tier_from_metrics is the highest the
# user's other metrics allow.
_BEST_RATINGS = {"ratings": 1, "stars": 5}

Conn = psycopg.Connection[dict[str, Any]]

# What accept answers for each eligibility rule that fails (eligibility.RULES names them).
_ELIGIBILITY_ERRORS: dict[str, Callable[[dict[str, Any]], DomainError]] = {
    "TASK_NOT_OPEN": lambda r: Conflict("The task is no longer open.", details={"state": r["state"]}),
    "ESCROW_NOT_FUNDED": lambda r: Conflict("The task's escrow is not funded yet.",
                                            details={"escrow_state": r["escrow_state"]}),
    "PAYMENT_UNDER_REVIEW": lambda r: Conflict("The task's payment is under review.",
                                               details={"reason": "PAYMENT_UNDER_REVIEW"}),
    "OWN_TASK": lambda r: Forbidden("You cannot accept your own task.", details={"reason": "OWN_TASK"}),
    "ACCOUNT_PAUSED": lambda r: Forbidden("Your account is paused.", code="HX602"),
    "ACCOUNT_SUSPENDED": lambda r: Forbidden("Your account is not active.", details={"reason": "ACCOUNT_SUSPENDED"}),
    "TRUST_TIER": lambda r: Forbidden("Your trust tier is too low for this task.", details={
        "reason": "TRUST_TIER", "required_trust_tier": r["required_trust_tier"] or 0,
        "trust_tier": r["trust_tier"]}),
    "RISK_LEVEL": lambda r: Forbidden("Your trust tier does not clear this task's risk level.", details={
        "reason": "RISK_LEVEL", "risk_level": r["risk_level"], "trust_tier": r["trust_tier"]}),
}


def tier_from_metrics(m: dict[str, Any]) -> int:
    """The highest tier whose (cumulative) requirements all hold (PRODUCT_SPEC §8.2). A user
    with no reviewed proof has no approval rate and so does not reach tier 3; one with no public
    rating has no average and so does not reach ELITE."""
    tier = 1
    if m["completed"] >= TIER2_TASKS and m["is_verified"]:
        tier = 2
        reviewed = m["accepted"] + m["rejected"]
        if (m["completed"] >= TIER3_TASKS and reviewed > 0
                and m["accepted"] * 100 >= TIER3_APPROVAL_PERCENT * reviewed):
            tier = 3
            # Integer comparisons: average >= 4.8 <=> 10 * stars >= 48 * ratings; disputes < 1 %.
            if (m["completed"] >= ELITE_TASKS and m["disputes"] * 100 < ELITE_MAX_DISPUTE_PERCENT * m["taken"]
                    and m["ratings"] > 0 and m["stars"] * 10 >= int(ELITE_RATING * 10) * m["ratings"]):
                tier = 4
    return tier


def dispute_percent(m: dict[str, Any]) -> float | None:
    return None if m["taken"] == 0 else round(m["disputes"] * 100 / m["taken"], 2)


def average_rating(m: dict[str, Any]) -> float | None:
    return None if m["ratings"] == 0 else round(m["stars"] / m["ratings"], 2)


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
        """The tier the user's record earns (1..4)."""
        with self.db.transaction() as conn:
            return tier_from_metrics(self._metrics(conn, user_id))

    @returns_result
    def update_user_trust(self, user_id: Any, *, task_id: Any = None, dispute_id: Any = None
                          ) -> dict[str, Any]:
        """Promote the user when the calculated tier is above the stored one; never demotes, and
        holds promotion for PENALTY_HOLD after a penalty. Runs after every completion, rating
        publication and verification. Returns {old_tier, new_tier, changed, new_badges}."""
        with self.db.transaction() as conn:
            return self.promote(conn, user_id, task_id=task_id, dispute_id=dispute_id)

    def promote(self, conn: Conn, user_id: Any, *, task_id: Any = None, dispute_id: Any = None,
                user: dict[str, Any] | None = None) -> dict[str, Any]:
        """update_user_trust() inside the caller's transaction (no savepoint: an error rolls the
        caller back). `user` (COLUMNS) when the caller already holds the user's row FOR UPDATE
        and read it after the change that may promote."""
        if user is None:
            user = self._lock_user(conn, user_id, COLUMNS)
        old = user["trust_tier"]
        held = user["last_penalty_at"] is not None and user["last_penalty_at"] + PENALTY_HOLD > self.s.clock()
        # Ratings are counted only when they could matter: when the rest already promotes (the
        # ledger records the average) or would with ratings good enough.
        if held or tier_from_metrics(user | _BEST_RATINGS) <= old:
            return {"old_tier": old, "new_tier": old, "changed": False, "new_badges": []}
        metrics = user | self._ratings(conn, user_id)
        target = tier_from_metrics(metrics)
        if target <= old:
            return {"old_tier": old, "new_tier": old, "changed": False, "new_badges": []}
        details = {"completed": metrics["completed"], "approval_percent": approval_percent(metrics),
                   "is_verified": metrics["is_verified"], "average_rating": average_rating(metrics),
                   "dispute_percent": dispute_percent(metrics)}
        with _described(conn, "PROMOTION", task_id=task_id, dispute_id=dispute_id, details=details):
            conn.execute("UPDATE users SET trust_tier = %s WHERE id = %s", (target, user_id))
        badges = self.s.badges.award_due(conn, user_id, task_id=task_id)
        self._notify_change(user_id, old, target, task_id=task_id)
        return {"old_tier": old, "new_tier": target, "changed": True,
                "new_badges": [b["badge_type"] for b in badges]}

    @returns_result
    def penalize(self, user_id: Any, *, dispute_id: Any = None, task_id: Any = None,
                 cause: str = "dispute_lost") -> dict[str, Any]:
        """One tier down (not below 1), reason PENALTY with its cause (dispute_lost,
        repeated_rejections); the user is told why. Returns {old_tier, new_tier, changed}."""
        return self._demote(user_id, "PENALTY", cause, dispute_id=dispute_id, task_id=task_id).unwrap()

    @returns_result
    def check_rejections(self, user_id: Any, *, task_id: Any = None) -> dict[str, Any]:
        """After a proof rejection: REJECTIONS_FOR_PENALTY rejections within REJECTION_WINDOW
        cost one tier, once per window. Returns {rejections, penalized}."""
        now = self.s.clock()
        with self.db.transaction() as conn:
            self._lock_user(conn, user_id)
            counted = one(conn, "SELECT count(*) AS n FROM proofs WHERE submitter_id = %s AND state = 'REJECTED' "
                                "AND reviewed_at > %s", (user_id, now - REJECTION_WINDOW))
            rejections = counted["n"] if counted else 0
            earlier = one(conn, "SELECT 1 FROM trust_ledger WHERE user_id = %s AND reason = 'PENALTY' "
                                "AND reason_details ->> 'cause' = 'repeated_rejections' AND changed_at > %s",
                          (user_id, now - REJECTION_WINDOW))
            penalized = False
            if rejections >= REJECTIONS_FOR_PENALTY and earlier is None:
                penalized = self._demote(user_id, "PENALTY", "repeated_rejections", task_id=task_id,
                                         extra={"rejections": rejections}).unwrap()["changed"]
            return {"rejections": rejections, "penalized": penalized}

    @returns_result
    def decay_inactive(self, limit: int = 500) -> dict[str, int]:
        """One pass of the daily decay job (ARCHITECTURE §4.3): an ACTIVE user above tier 1 with no
        completed task and no tier change in INACTIVITY loses one tier, reason DECAY."""
        cutoff = self.s.clock() - INACTIVITY
        with self.db.transaction() as conn:
            due = [r["id"] for r in conn.execute(
                """SELECT u.id FROM users u
                    WHERE u.trust_tier > 1 AND u.account_status = 'ACTIVE'
                      AND coalesce(u.last_task_completed_at, u.created_at) < %(cutoff)s
                      AND NOT EXISTS (SELECT 1 FROM trust_ledger l WHERE l.user_id = u.id
                                         AND l.changed_at >= %(cutoff)s)
                    ORDER BY u.id LIMIT %(limit)s""", {"cutoff": cutoff, "limit": limit}).fetchall()]
        decayed = sum(1 for user_id in due if self._demote(user_id, "DECAY", "inactivity", extra={
            "inactive_days": INACTIVITY.days}).unwrap()["changed"])
        return {"checked": len(due), "decayed": decayed}

    @returns_result
    def verify_identity(self, admin_user_id: Any, user_id: Any, *, note: str | None = None) -> dict[str, Any]:
        """Mark the user's identity verified (tier 2 needs it) and re-run promotion. Today an admin
        does it after checking documents, audited as USER_VERIFY; an ID-verification provider is
        the future caller of this same seam. Returns {user_id, is_verified, verified_at,
        trust: {old_tier, new_tier, changed}, admin_action_id}."""
        text = (note or "").strip() or None
        if text is not None and len(text) > 500:
            raise ValidationError("the note holds at most 500 characters", details={"note": ["<= 500 characters"]})
        with self.db.transaction() as conn:
            admin = audit.require_admin(conn, admin_user_id, "can_modify_trust")
            user = one(conn, "SELECT id, is_verified, verified_at FROM users WHERE id = %s FOR UPDATE", (user_id,))
            if user is None:
                raise missing_user()
            if not user["is_verified"]:
                user = one(conn, "UPDATE users SET is_verified = true, verified_at = %s WHERE id = %s "
                                 "RETURNING id, is_verified, verified_at", (self.s.clock(), user_id))
                assert user is not None
                changed = True
            else:
                changed = False
            action_id = audit.record(conn, admin, "USER_VERIFY", {"note": text},
                                     result="SUCCESS" if changed else "NO_CHANGE", user_id=user_id)
            trust = self.update_user_trust(user_id).unwrap()
            return {"user_id": user["id"], "is_verified": user["is_verified"], "verified_at": user["verified_at"],
                    "trust": {k: trust[k] for k in ("old_tier", "new_tier", "changed")},
                    "admin_action_id": action_id}

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
            task = one(conn, "SELECT id, required_trust_tier, risk_level FROM tasks WHERE id = %s", (task_id,))
            if task is None:
                raise NotFound("No such task.")
            user = one(conn, "SELECT id, trust_tier FROM users WHERE id = %s", (user_id,))
            if user is None:
                raise missing_user()
            require_eligible(conn, task_id, user["id"], user["trust_tier"])
            return {"eligible": True, "user_id": user["id"], "task_id": task["id"],
                    "trust_tier": user["trust_tier"], "required_trust_tier": task["required_trust_tier"] or 0,
                    "risk_level": task["risk_level"]}

    @returns_result
    def get_trust_history(self, user_id: Any, limit: int | None = 20, offset: int | None = 0
                          ) -> dict[str, Any]:
        """The user's tier changes, newest first: {entries, total, has_more}; an entry is a
        trust_ledger row (id, old_tier, new_tier, reason, reason_details, task_id, dispute_id,
        changed_by, changed_at)."""
        limit, offset = page_params(limit, offset)
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            counted = one(conn, "SELECT count(*) AS n FROM trust_ledger WHERE user_id = %s", (user_id,))
            total = counted["n"] if counted else 0
            rows = conn.execute(
                "SELECT id, old_tier, new_tier, reason, reason_details, task_id, dispute_id, changed_by, "
                "changed_at FROM trust_ledger WHERE user_id = %s "
                "ORDER BY changed_at DESC, id DESC LIMIT %s OFFSET %s", (user_id, limit, offset)).fetchall()
        return {"entries": rows, "total": total, "has_more": offset + len(rows) < total}

    @returns_result
    def get_trust_tier_info(self, user_id: Any) -> dict[str, Any]:
        """{current_tier, tier_name, next_tier, next_tier_name, next_tier_admin_only (always
        False now that ELITE is earned), requirements_for_next {criterion: {required, current}}
        (None at tier 4), tier_benefits[], promotion_held_until}. Criteria: tasks_completed,
        approval_rate (percent), id_verified, avg_rating, dispute_rate (percent, must stay below)."""
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
                "avg_rating": {"required": ELITE_RATING if nxt == 4 else None, "current": average_rating(m)},
                "dispute_rate": {"required": ELITE_MAX_DISPUTE_PERCENT if nxt == 4 else None,
                                 "current": dispute_percent(m)},
            }
        held = m["last_penalty_at"] + PENALTY_HOLD if m["last_penalty_at"] is not None else None
        return {
            "current_tier": tier,
            "tier_name": TIER_NAMES[tier],
            "next_tier": nxt,
            "next_tier_name": TIER_NAMES[nxt] if nxt else None,
            "next_tier_admin_only": False,
            "requirements_for_next": requirements,
            "tier_benefits": TIER_BENEFITS[tier],
            "promotion_held_until": held if held is not None and held > self.s.clock() else None,
        }

    @returns_result
    def _demote(self, user_id: Any, reason: str, cause: str, *, dispute_id: Any = None, task_id: Any = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.db.transaction() as conn:
            old = self._lock_user(conn, user_id)["trust_tier"]
            if old <= 1:
                return {"old_tier": old, "new_tier": old, "changed": False}
            new = old - 1
            with _described(conn, reason, dispute_id=dispute_id, task_id=task_id,
                            details={"cause": cause, **(extra or {})}):
                conn.execute("UPDATE users SET trust_tier = %s WHERE id = %s", (new, user_id))
            self._notify_change(user_id, old, new, reason=cause)
            return {"old_tier": old, "new_tier": new, "changed": True}

    def _metrics(self, conn: Conn, user_id: Any) -> dict[str, Any]:
        return read_user(conn, user_id, COLUMNS) | self._ratings(conn, user_id)

    def _ratings(self, conn: Conn, user_id: Any) -> dict[str, Any]:
        counted = one(conn, _RATINGS, {"user": user_id, "now": self.s.clock()})
        assert counted is not None
        return counted

    def _lock_user(self, conn: Conn, user_id: Any, columns: str = "u.id, u.trust_tier") -> dict[str, Any]:
        return read_user(conn, user_id, columns, lock=True)

    def _notify_change(self, user_id: Any, old: int, new: int, *, task_id: Any = None,
                       reason: str | None = None) -> None:
        self._notify(user_id, "TRUST_TIER_UP" if new > old else "TRUST_TIER_DOWN", task_id=task_id,
                     metadata={"old_tier": old, "new_tier": new, "reason": reason})


def require_eligible(conn: Any, task_id: Any, user_id: Any, tier: int) -> None:
    """Raise the error of the first eligibility rule (services/eligibility.py) the user fails for
    the task, if any. accept calls it under its task lock; check_eligibility to answer ahead."""
    refused = refusal(conn, task_id, user_id, tier)
    if refused is not None:
        raise _ELIGIBILITY_ERRORS[refused["reason"]](refused)
