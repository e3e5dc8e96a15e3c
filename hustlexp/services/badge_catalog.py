"""The badge catalog (domain §6). `badges.badge_type` holds a definition's id."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

RARITY = {1: "common", 2: "uncommon", 3: "rare", 4: "legendary"}


@dataclass(frozen=True)
class BadgeDefinition:
    id: str
    name: str
    description: str
    condition: str
    tier: int
    category: str

    @property
    def rarity(self) -> str:
        return RARITY[self.tier]

    @property
    def icon_url(self) -> str:
        return f"badges/{self.id}.png"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"slug": self.id, "rarity": self.rarity, "icon_url": self.icon_url}


def _defs() -> tuple[BadgeDefinition, ...]:
    d = BadgeDefinition
    return (
        d("first-task", "First Steps", "Completed your first task.", "1 completed task", 1, "milestone"),
        d("tasks-10", "Dedicated", "Completed 10 tasks.", "10 completed tasks", 1, "milestone"),
        d("tasks-25", "Committed", "Completed 25 tasks.", "25 completed tasks", 2, "milestone"),
        d("tasks-50", "Veteran", "Completed 50 tasks.", "50 completed tasks", 2, "milestone"),
        d("tasks-100", "Centurion", "Completed 100 tasks.", "100 completed tasks", 3, "milestone"),
        d("streak-3", "Getting Started", "Completed tasks 3 days in a row.", "streak of 3 days", 1, "streak"),
        d("streak-7", "Week Warrior", "Completed tasks 7 days in a row.", "streak of 7 days", 2, "streak"),
        d("streak-30", "Monthly Master", "Completed tasks 30 days in a row.", "streak of 30 days", 3,
          "streak"),
        d("trust-tier-2", "Trusted Hustler", "Reached trust tier 2 (Verified).", "trust tier 2", 1, "trust"),
        d("trust-tier-3", "Reliable Pro", "Reached trust tier 3 (Trusted).", "trust tier 3", 2, "trust"),
        d("trust-tier-4", "Elite Status", "Reached trust tier 4 (Elite).", "trust tier 4", 3, "trust"),
        d("level-3", "Apprentice", "Reached level 3.", "level 3", 1, "level"),
        d("level-5", "Rising Star", "Reached level 5.", "level 5", 2, "level"),
        d("level-8", "Expert", "Reached level 8.", "level 8", 3, "level"),
        d("level-10", "Legend", "Reached level 10.", "level 10", 4, "level"),
        d("specialist-cleaning", "Clean Machine", "Completed 10 cleaning tasks.",
          "10 completed cleaning tasks", 1, "specialist"),
        d("specialist-delivery", "Speed Demon", "Completed 10 delivery tasks.",
          "10 completed delivery tasks", 1, "specialist"),
        d("specialist-moving", "Heavy Lifter", "Completed 10 moving tasks.",
          "10 completed moving tasks", 1, "specialist"),
        d("perfect-week", "Perfect Week", "Completed 7 tasks in one week without a rejected proof.",
          "7 completed tasks in one ISO week (UTC), none rejected", 3, "special"),
        d("early-bird", "Early Bird", "Completed 5 tasks before 9 in the morning.",
          "5 tasks completed before 09:00 UTC", 2, "special"),
    )


CATALOG: tuple[BadgeDefinition, ...] = _defs()
BY_ID: dict[str, BadgeDefinition] = {b.id: b for b in CATALOG}

# Thresholds the award check reads; keyed by badge id.
TASK_COUNT_BADGES = {"first-task": 1, "tasks-10": 10, "tasks-25": 25, "tasks-50": 50, "tasks-100": 100}
STREAK_BADGES = {"streak-3": 3, "streak-7": 7, "streak-30": 30}
TRUST_BADGES = {"trust-tier-2": 2, "trust-tier-3": 3, "trust-tier-4": 4}
LEVEL_BADGES = {"level-3": 3, "level-5": 5, "level-8": 8, "level-10": 10}
SPECIALIST_BADGES = {"specialist-cleaning": "cleaning", "specialist-delivery": "delivery",
                     "specialist-moving": "moving"}
SPECIALIST_COUNT = 10
PERFECT_WEEK_COUNT = 7
EARLY_BIRD_COUNT = 5
