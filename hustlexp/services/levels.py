"""The level table (domain §4): level n starts at LEVEL_THRESHOLDS[n - 1] XP."""

from __future__ import annotations

from typing import Any

LEVEL_THRESHOLDS: tuple[int, ...] = (0, 100, 300, 700, 1500, 2700, 4500, 7000, 10500, 18500)
LEVEL_NAMES: tuple[str, ...] = ("Rookie", "Apprentice", "Hustler", "Pro", "Expert", "Veteran", "Master",
                                "Elite", "Legend", "Mythic")
MAX_LEVEL = len(LEVEL_THRESHOLDS)


def level_for(xp: int) -> int:
    """The highest level whose threshold is <= xp."""
    level = 1
    for n, threshold in enumerate(LEVEL_THRESHOLDS, start=1):
        if xp >= threshold:
            level = n
    return level


def level_progress(xp: int) -> dict[str, Any]:
    """{current_threshold, next_threshold, progress_percent} for an XP total; the last level
    has no next threshold and counts as 100 % done."""
    level = level_for(xp)
    current = LEVEL_THRESHOLDS[level - 1]
    if level == MAX_LEVEL:
        return {"current_threshold": current, "next_threshold": None, "progress_percent": 100}
    nxt = LEVEL_THRESHOLDS[level]
    return {"current_threshold": current, "next_threshold": nxt,
            "progress_percent": (xp - current) * 100 // (nxt - current)}
