"""XP: the award for a released escrow (INV-1, INV-5), streaks, levels and the ledger reads.

Formula (DESIGN §7.4): effective = floor(base × streak × trust × decay), Decimal maths, where
base = amount // 100, streak = min(1.00 + 0.05 × streak_at_award, 2.00), trust = 1.0/1.5/2.0/2.0
for tiers 1–4 and decay = 1.0000 in v1. Streak days are UTC calendar days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from hustlexp.domain import EscrowState
from hustlexp.errors import Conflict, NotFound
from hustlexp.services.badge import OWN_COLUMNS as BADGE_COLUMNS
from hustlexp.services.base import Service, one, page_params, returns_result, trim_page
from hustlexp.services.counters import read_user
from hustlexp.services.levels import level_for, level_progress
from hustlexp.services.notification import Notice
from hustlexp.services.trust import COLUMNS as TRUST_COLUMNS
from hustlexp.services.user import missing_user, require_user

STREAK_STEP = Decimal("0.05")
STREAK_CAP = Decimal("2.00")
TRUST_MULTIPLIERS: dict[int, Decimal] = {1: Decimal("1.0"), 2: Decimal("1.5"), 3: Decimal("2.0"),
                                         4: Decimal("2.0")}
NO_DECAY = Decimal("1.0000")


def base_xp(price_cents: int) -> int:
    return price_cents // 100


def streak_multiplier(streak: int) -> Decimal:
    return min(Decimal("1.00") + STREAK_STEP * max(streak, 0), STREAK_CAP)


def trust_multiplier(tier: int) -> Decimal:
    return TRUST_MULTIPLIERS[tier]


def _dec(value: Decimal | float | int) -> Decimal:
    # via str so a float such as 1.15 means 1.15, not its binary neighbour 1.149999...
    return value if isinstance(value, Decimal) else Decimal(str(value))


def effective_xp(base: int, streak_mult: Decimal | float, trust_mult: Decimal | float,
                 decay: Decimal | float = NO_DECAY) -> int:
    product = Decimal(base) * _dec(streak_mult) * _dec(trust_mult) * _dec(decay)
    return int(product.to_integral_value(rounding=ROUND_FLOOR))


def next_streak(current: int, last_completed: datetime | None, grace_expires: datetime | None,
                now: datetime) -> tuple[int, int]:
    """(streak_at_award, new_streak) for a completion at `now`.

    streak_at_award is the streak still alive before this completion counts (0 when it has
    lapsed); it is what the multiplier uses."""
    if last_completed is None:
        return 0, 1
    gap = (now.astimezone(UTC).date() - last_completed.astimezone(UTC).date()).days
    if gap <= 0:
        return current, max(current, 1)
    if gap == 1 or (grace_expires is not None and now <= grace_expires):
        return current, current + 1
    return 0, 1


def grace_expiry(today: date) -> datetime:
    """A streak normally survives until the end of the next UTC day; the grace window adds
    24 h beyond that."""
    end_of_next_day = datetime.combine(today + timedelta(days=2), time.min, tzinfo=UTC)
    return end_of_next_day + timedelta(hours=24)


def ledger_entry(row: dict[str, Any]) -> dict[str, Any]:
    """An xp_ledger row in the API's vocabulary (api.md user.getXP)."""
    return {
        "id": row["id"],
        "task_id": row["task_id"],
        "escrow_id": row["escrow_id"],
        "amount": row["base_xp"],
        "effective_amount": row["effective_xp"],
        "balance_after": row["user_xp_after"],
        "streak_multiplier": row["streak_multiplier"],
        "trust_multiplier": row["trust_multiplier"],
        "decay_factor": row["decay_factor"],
        "reason": row["reason"],
        "level_after": row["user_level_after"],
        "created_at": row["awarded_at"],
    }


class XPService(Service):
    @returns_result
    def calculate_base(self, price_cents: int) -> int:
        return base_xp(price_cents)

    @returns_result
    def calculate_streak(self, streak: int) -> Decimal:
        return streak_multiplier(streak)

    @returns_result
    def calculate_trust(self, tier: int) -> Decimal:
        return trust_multiplier(tier)

    @returns_result
    def calculate_effective(self, base: int, streak_mult: Decimal | float, trust_mult: Decimal | float,
                            decay: Decimal | float = NO_DECAY) -> int:
        return effective_xp(base, streak_mult, trust_mult, decay)

    @returns_result
    def level_for(self, xp: int) -> int:
        return level_for(xp)

    @returns_result
    def award(self, escrow_id: Any) -> dict[str, Any]:
        """Award the worker's XP for a RELEASED escrow, once (INV-5).

        Returns the xp_ledger row (id, user_id, task_id, escrow_id, base_xp, streak_multiplier,
        trust_multiplier, decay_factor, effective_xp, reason, user_xp_before/after,
        user_level_before/after, user_streak_at_award, awarded_at) plus:
        - "created": False when the escrow had already been awarded (the stored row comes
          back and nothing else changes);
        - "level_up": True when this award raised the level;
        - "new_badges": the badge ids this award earned.
        Errors: NOT_FOUND (no such escrow), HX101 (escrow not RELEASED)."""
        with self.db.transaction() as conn:
            escrow = one(conn, "SELECT e.id, e.task_id, e.amount, e.state, t.worker_id "
                               "FROM escrows e JOIN tasks t ON t.id = e.task_id WHERE e.id = %s",
                         (escrow_id,))
            if escrow is None:
                raise NotFound("No such escrow.")
            return self.award_released(conn, escrow)

    def award_released(self, conn: Any, escrow: dict[str, Any]) -> dict[str, Any]:
        """award() inside the caller's transaction, with no savepoint of its own (the completion
        chain: any error rolls the whole completion back), for an escrow the caller read:
        id, task_id, amount, state and its task's worker_id."""
        if escrow["state"] != EscrowState.RELEASED:
            raise Conflict("XP is awarded only for a released escrow.", code="HX101")
        user_id = escrow["worker_id"]
        # The lock serialises awards for this worker: a concurrent repeat waits here, then
        # meets the committed row in ON CONFLICT below. The same read holds what the badge check
        # and the promotion need (the counters already count this completion).
        user = read_user(conn, user_id, f"""u.id, u.xp_total, u.last_task_completed_at, u.streak_grace_expires_at,
                                            {TRUST_COLUMNS}, {BADGE_COLUMNS}""", lock=True)

        now = self.s.clock()
        streak_at_award, new_streak = next_streak(
            user["current_streak"], user["last_task_completed_at"], user["streak_grace_expires_at"], now)
        base = base_xp(escrow["amount"])
        s_mult = streak_multiplier(streak_at_award)
        t_mult = trust_multiplier(user["trust_tier"])
        gained = effective_xp(base, s_mult, t_mult, NO_DECAY)
        xp_before = user["xp_total"]
        xp_after = xp_before + gained
        level_before = user["current_level"]
        level_after = max(level_before, level_for(xp_after))

        # The award and the user's new totals in one statement: the UPDATE runs only when the
        # ledger row was written (a repeat meets ON CONFLICT and changes nothing).
        row = one(conn, """
            WITH award AS (
                INSERT INTO xp_ledger (user_id, task_id, escrow_id, base_xp, streak_multiplier,
                                       trust_multiplier, decay_factor, effective_xp, user_xp_before,
                                       user_xp_after, user_level_before, user_level_after,
                                       user_streak_at_award, awarded_at)
                VALUES (%(user_id)s, %(task_id)s, %(escrow_id)s, %(base)s, %(s_mult)s, %(t_mult)s,
                        %(decay)s, %(gained)s, %(xp_before)s, %(xp_after)s, %(level_before)s,
                        %(level_after)s, %(streak)s, %(now)s)
                ON CONFLICT (escrow_id) DO NOTHING
                RETURNING *),
            totals AS (
                UPDATE users SET xp_total = %(xp_after)s, current_level = %(level_after)s,
                                 current_streak = %(new_streak)s, last_task_completed_at = %(now)s,
                                 streak_grace_expires_at = %(grace)s
                 WHERE id = %(user_id)s AND EXISTS (SELECT FROM award))
            SELECT * FROM award""", {
            "user_id": user_id, "task_id": escrow["task_id"], "escrow_id": escrow["id"],
            "base": base, "s_mult": s_mult, "t_mult": t_mult, "decay": NO_DECAY, "gained": gained,
            "xp_before": xp_before, "xp_after": xp_after, "level_before": level_before,
            "level_after": level_after, "streak": streak_at_award, "now": now, "new_streak": new_streak,
            "grace": grace_expiry(now.astimezone(UTC).date())})
        if row is None:
            existing = one(conn, "SELECT * FROM xp_ledger WHERE escrow_id = %s", (escrow["id"],))
            assert existing is not None
            return existing | {"created": False, "level_up": False, "new_badges": []}

        # The worker's row is locked above and its new level and streak are known: the badge
        # check and the promotion neither lock nor read it again.
        badges = self.s.badges.award_due(conn, user_id, task_id=escrow["task_id"], completion=True, user=user | {
            "current_level": level_after, "current_streak": new_streak})
        trust = self.s.trust.promote(conn, user_id, task_id=escrow["task_id"], user=user)
        level_up = level_after > level_before
        # Both through record_all: inside the completion's event they join its other notices.
        notices = [Notice(user_id, "XP_EARNED", task_id=escrow["task_id"], metadata={
            "xp_ledger_id": str(row["id"]), "effective_xp": gained, "base_xp": base,
            "total_xp": xp_after, "streak": new_streak})]
        if level_up:
            notices.append(Notice(user_id, "LEVEL_UP", task_id=escrow["task_id"], metadata={
                "level_before": level_before, "level_after": level_after, "total_xp": xp_after}))
        self.s.notifications.record_all(conn, notices)
        new_badges = [b["badge_type"] for b in badges]
        for b in trust.get("new_badges", []):
            if b not in new_badges:
                new_badges.append(b)
        return row | {"created": True, "level_up": level_up, "new_badges": new_badges}

    @returns_result
    def get_user_xp(self, user_id: Any, limit: int | None = 10) -> dict[str, Any]:
        """{total_xp, current_level, current_streak, level_progress {current_threshold,
        next_threshold (None at level 10), progress_percent}, recent_entries [ledger_entry]}."""
        limit, _ = page_params(limit, 0, default=10, maximum=100)
        with self.db.transaction() as conn:
            user = one(conn, "SELECT xp_total, current_level, current_streak FROM users WHERE id = %s",
                       (user_id,))
            if user is None:
                raise missing_user()
            rows = conn.execute("SELECT * FROM xp_ledger WHERE user_id = %s "
                                "ORDER BY awarded_at DESC, id DESC LIMIT %s", (user_id, limit)).fetchall()
        return {
            "total_xp": user["xp_total"],
            "current_level": user["current_level"],
            "current_streak": user["current_streak"],
            "level_progress": level_progress(user["xp_total"]),
            "recent_entries": [ledger_entry(r) for r in rows],
        }

    @returns_result
    def get_xp_ledger(self, user_id: Any, limit: int | None = 20, before: Any = None) -> dict[str, Any]:
        """A page of the user's ledger, newest first, keyset-paged: {entries [ledger_entry], total,
        has_more, next_before}. `before` is the id of the last entry already shown (next_before of
        the previous page), so awards arriving meanwhile never shift a page."""
        limit, _ = page_params(limit, 0)
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            after = None
            if before is not None:
                after = one(conn, "SELECT awarded_at, id FROM xp_ledger WHERE id::text = %s AND user_id = %s",
                            (str(before), user_id))
                if after is None:
                    # A well-formed id that names no entry of this user: the page it points at does not exist.
                    raise NotFound("unknown ledger entry", details={"before": ["an entry id of this user"]})
            counted = one(conn, "SELECT count(*) AS n FROM xp_ledger WHERE user_id = %s", (user_id,))
            total = counted["n"] if counted else 0
            rows = conn.execute(
                "SELECT * FROM xp_ledger WHERE user_id = %(user)s AND (%(at)s::timestamptz IS NULL "
                "OR (awarded_at, id) < (%(at)s, %(id)s::uuid)) ORDER BY awarded_at DESC, id DESC LIMIT %(limit)s",
                {"user": user_id, "at": after["awarded_at"] if after else None, "id": after["id"] if after else None,
                 "limit": limit + 1}).fetchall()
        rows, has_more = trim_page(rows, limit)
        return {"entries": [ledger_entry(r) for r in rows], "total": total, "has_more": has_more,
                "next_before": rows[-1]["id"] if has_more else None}

