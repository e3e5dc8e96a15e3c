"""Badges (domain §6): awarded after XP awards and tier changes, never removed.

An earned badge reads as {id (row id), badge_type (= catalog id), slug, name, description,
condition, tier, category, rarity, icon_url, awarded_at, awarded_for, task_id,
animation_shown_at}."""

from __future__ import annotations

from typing import Any

from hustlexp.errors import NotFound
from hustlexp.services.badge_catalog import (
    BY_ID,
    CATALOG,
    EARLY_BIRD_COUNT,
    LEVEL_BADGES,
    PERFECT_WEEK_COUNT,
    SPECIALIST_BADGES,
    SPECIALIST_COUNT,
    STREAK_BADGES,
    TASK_COUNT_BADGES,
    TRUST_BADGES,
)
from hustlexp.services.base import Service, one, returns_result
from hustlexp.services.counters import COUNTS, read_user
from hustlexp.services.user import require_user

# What the badge check reads of a user `u` (LEFT JOIN user_counters c): the row's trust tier and
# the counters, which trust reads too, and its own: level, streak and the badges already held.
OWN_COLUMNS = """u.current_level, u.current_streak,
       ARRAY(SELECT b.badge_type FROM badges b WHERE b.user_id = u.id) AS badges"""
USER_COLUMNS = f"u.trust_tier, {COUNTS}, {OWN_COLUMNS}"

# No proof of this user rejected in the week `{week}` (ISO, Monday-based, UTC).
_NO_REJECTION_IN = """NOT EXISTS (
        SELECT 1 FROM proofs p
         WHERE p.submitter_id = %(user_id)s AND p.state = 'REJECTED'
           AND date_trunc('week', coalesce(p.reviewed_at, p.submitted_at, p.created_at)
                                  AT TIME ZONE 'UTC') = {week})"""

# A week with enough completions and no proof of this user rejected in it.
_PERFECT_WEEK = f"""
WITH weeks AS (
    SELECT date_trunc('week', completed_at AT TIME ZONE 'UTC') AS week
      FROM tasks
     WHERE worker_id = %(user_id)s AND state = 'COMPLETED' AND completed_at IS NOT NULL
     GROUP BY 1
    HAVING count(*) >= %(count)s)
SELECT EXISTS (SELECT 1 FROM weeks w WHERE {_NO_REJECTION_IN.format(week="w.week")}) AS ok
"""

# The same test for one week only: the week of a completion, the only week that completion can
# have made perfect (every earlier week was tested at its own completions). It reads that week's
# completions and the user's rejected proofs, whatever else the history holds.
_PERFECT_WEEK_OF_TASK = f"""
WITH w AS (SELECT date_trunc('week', completed_at AT TIME ZONE 'UTC') AS week FROM tasks WHERE id = %(task_id)s)
SELECT (SELECT count(*) FROM tasks t, w
         WHERE t.worker_id = %(user_id)s AND t.state = 'COMPLETED'
           AND t.completed_at >= w.week AT TIME ZONE 'UTC'
           AND t.completed_at < (w.week + interval '7 days') AT TIME ZONE 'UTC') >= %(count)s
   AND {_NO_REJECTION_IN.format(week="(SELECT week FROM w)")} AS ok
"""


def earned_view(row: dict[str, Any]) -> dict[str, Any]:
    definition = BY_ID.get(row["badge_type"])
    described = definition.to_dict() if definition else {"slug": row["badge_type"], "tier": row["badge_tier"]}
    return described | {
        "id": row["id"],
        "badge_type": row["badge_type"],
        "tier": row["badge_tier"],
        "awarded_at": row["awarded_at"],
        "awarded_for": row["awarded_for"],
        "task_id": row["task_id"],
        "animation_shown_at": row["animation_shown_at"],
    }


class BadgeService(Service):
    @returns_result
    def get_badge_definitions(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in CATALOG]

    @returns_result
    def check_and_award(self, user_id: Any, task_id: Any = None) -> list[dict[str, Any]]:
        """Award every catalog badge the user now qualifies for and lacks; returns the newly
        awarded badges (earned view), each announced with a BADGE_EARNED notification."""
        with self.db.transaction() as conn:
            return self.award_due(conn, user_id, task_id=task_id)

    def award_due(self, conn: Any, user_id: Any, *, task_id: Any = None,
                  user: dict[str, Any] | None = None, completion: bool = False) -> list[dict[str, Any]]:
        """check_and_award() inside the caller's transaction (no savepoint: an error rolls the
        caller back). `user` (USER_COLUMNS) spares the read when the caller holds the row with
        its values of this moment. `completion`: the check follows the completion of `task_id`,
        so only that task's week is tested for perfect-week."""
        if user is None:
            user = read_user(conn, user_id, USER_COLUMNS)
        held = set(user["badges"])

        qualifies: set[str] = set()
        qualifies |= {b for b, n in TASK_COUNT_BADGES.items() if user["completed"] >= n}
        qualifies |= {b for b, n in STREAK_BADGES.items() if user["current_streak"] >= n}
        qualifies |= {b for b, n in TRUST_BADGES.items() if user["trust_tier"] >= n}
        qualifies |= {b for b, n in LEVEL_BADGES.items() if user["current_level"] >= n}
        qualifies |= {b for b, cat in SPECIALIST_BADGES.items() if user[cat] >= SPECIALIST_COUNT}
        if user["early"] >= EARLY_BIRD_COUNT:
            qualifies.add("early-bird")
        if "perfect-week" not in held and user["completed"] >= PERFECT_WEEK_COUNT:
            week = one(conn, _PERFECT_WEEK_OF_TASK if completion and task_id is not None else _PERFECT_WEEK,
                       {"user_id": user_id, "task_id": task_id, "count": PERFECT_WEEK_COUNT})
            if week and week["ok"]:
                qualifies.add("perfect-week")

        awarded: list[dict[str, Any]] = []
        for definition in CATALOG:
            if definition.id not in qualifies or definition.id in held:
                continue
            row = one(conn, "INSERT INTO badges (user_id, badge_type, badge_tier, awarded_for, task_id) "
                            "VALUES (%s, %s, %s, %s, %s) "
                            "ON CONFLICT (user_id, badge_type) DO NOTHING RETURNING *",
                      (user_id, definition.id, definition.tier, definition.condition, task_id))
            if row is None:  # a concurrent check got there first
                continue
            awarded.append(earned_view(row))
            self._notify(user_id, "BADGE_EARNED", task_id=task_id, metadata={
                "badge_id": str(row["id"]), "badge_type": definition.id, "badge_name": definition.name,
                "badge_tier": definition.tier})
        return awarded

    @returns_result
    def get_user_badges(self, user_id: Any) -> dict[str, Any]:
        """{earned_badges [earned view, oldest first], available_badges [definitions not yet
        earned], total_earned, total_available (the size of the catalog)}."""
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            rows = conn.execute("SELECT * FROM badges WHERE user_id = %s ORDER BY awarded_at, badge_type",
                                (user_id,)).fetchall()
        earned = [earned_view(r) for r in rows]
        held = {r["badge_type"] for r in rows}
        return {
            "earned_badges": earned,
            "available_badges": [b.to_dict() for b in CATALOG if b.id not in held],
            "total_earned": len(earned),
            "total_available": len(CATALOG),
        }

    @returns_result
    def mark_animation_shown(self, user_id: Any, badge_id: Any) -> dict[str, Any]:
        """Record that the client played the badge's animation. `badge_id` is the badge row id
        or its type (slug). The first confirmation wins; later ones return the row as is."""
        with self.db.transaction() as conn:
            row = one(conn, "SELECT * FROM badges WHERE user_id = %s AND (id::text = %s OR badge_type = %s) "
                            "FOR UPDATE", (user_id, str(badge_id), str(badge_id)))
            if row is None:
                raise NotFound("No such badge.")
            if row["animation_shown_at"] is None:
                row = one(conn, "UPDATE badges SET animation_shown_at = now() WHERE id = %s RETURNING *",
                          (row["id"],))
                assert row is not None
            return earned_view(row)

