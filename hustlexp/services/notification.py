"""Notifications (domain §10, api §4): every event becomes a row in the recipient's in-app
inbox; whether it is also pushed now, later or never (preferences, quiet hours, frequency
caps) is decided here and recorded on the row, for the delivery worker to act on.

Preferences live in `notification_preferences`; the four API buckets, the read-receipt
switch and the recipient's time zone live in its `category_preferences` JSONB (spec §12.23)."""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg.types.json import Jsonb

from hustlexp.domain import AccountStatus, NotificationChannel, NotificationPriority
from hustlexp.errors import Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, one, page_params, returns_result
from hustlexp.services.push import CHANNEL as PUSH_CHANNEL
from hustlexp.services.user import missing_user, parse_uuid

P = NotificationPriority

DEDUPE_WINDOW = timedelta(minutes=5)
GROUP_WINDOW = timedelta(minutes=5)
GROUP_MAX = 5
RETENTION = timedelta(days=30)
TITLE_MAX = 200

BUCKETS = ("task_updates", "messages", "xp_badges", "marketing")
DEFAULT_BUCKETS = {"task_updates": True, "messages": True, "xp_badges": True, "marketing": False}
DEFAULT_QUIET_START = time(22, 0)
DEFAULT_QUIET_END = time(7, 0)

# Frequency caps per hour / per day, shared by the categories of a group (domain §10).
CAPS: dict[str, tuple[int, int]] = {"live": (10, 50), "trust": (3, 10), "system": (5, 20)}

# Inside NotificationService `list` names a method, so annotations there use this alias.
Channels = list[str]

TIER_NAMES = {1: "Rookie", 2: "Verified", 3: "Trusted", 4: "Elite"}
# Why a trust tier went down, as the user reads it (trust penalties and decay).
TRUST_REASONS = {"dispute_lost": "a dispute ruled against you", "repeated_rejections": "repeated proof rejections",
                 "inactivity": "90 days without a completed task"}


@dataclass(frozen=True)
class Kind:
    """How one category is sent. `titles`/`bodies` are tried in order with str.format over
    the event's context; the first whose keys are all known wins, so the last never needs one
    that may be missing."""

    priority: NotificationPriority
    bucket: str | None  # the preference switch that silences it; None: cannot be switched off
    link: str  # task | message | profile | trust | settings | task_or_profile
    titles: tuple[str, ...]
    bodies: tuple[str, ...]
    audience: str = "participants"  # participants | candidates | admins
    always_push: bool = False  # pushed even in quiet hours, whatever its priority
    cap: str | None = None
    email: bool = False  # also e-mailed to those who opted in (payments and alerts)
    distinct_by: tuple[str, ...] = ()  # metadata keys telling apart events of one task


def _k(priority: P, bucket: str | None, link: str, title: str | tuple[str, ...],
       *bodies: str, **kw: Any) -> Kind:
    titles = (title,) if isinstance(title, str) else title
    return Kind(priority, bucket, link, titles, bodies, **kw)


CATALOG: dict[str, Kind] = {
    "TASK_CREATED": _k(P.LOW, "task_updates", "task", "Task posted",
                       "“{task_title}” is live. We'll tell you when someone accepts it."),
    "TASK_ACCEPTED": _k(P.HIGH, "task_updates", "task", "Your task was accepted",
                        "{worker_name} accepted “{task_title}”.", "Someone accepted “{task_title}”.",
                        always_push=True),
    "TASK_WORKER_ASSIGNED": _k(P.MEDIUM, "task_updates", "task", "You're on it",
                               "You accepted “{task_title}”. Time to get going."),
    "TASK_CANCELLED": _k(P.MEDIUM, "task_updates", "task", "Task cancelled", "“{task_title}” was cancelled."),
    "TASK_EXPIRED": _k(P.LOW, "task_updates", "task", "Task expired",
                       "“{task_title}” passed its deadline without a worker. Your payment is refunded."),
    "TASK_OVERDUE": _k(P.MEDIUM, "task_updates", "task", "Task overdue",
                       "“{task_title}” is past its deadline. Submit proof or message the poster."),
    "PROOF_SUBMITTED": _k(P.HIGH, "task_updates", "task", "Proof submitted",
                          "{worker_name} submitted proof for “{task_title}”. Review it within 48 hours.",
                          "Proof was submitted for “{task_title}”. Review it within 48 hours."),
    "PROOF_ACCEPTED": _k(P.MEDIUM, "task_updates", "task", "Proof approved",
                         "Your proof for “{task_title}” was approved."),
    "PROOF_REJECTED": _k(P.HIGH, "task_updates", "task", "Proof rejected",
                         "Your proof for “{task_title}” was rejected: {reason}",
                         "Your proof for “{task_title}” was rejected. See why and resubmit."),
    "DISPUTE_OPENED": _k(P.HIGH, "task_updates", "task", "Dispute opened",
                         "A dispute was opened on “{task_title}”. Our team will review it."),
    "DISPUTE_RESOLVED": _k(P.MEDIUM, "task_updates", "task", "Dispute resolved",
                           "The dispute on “{task_title}” was resolved: {resolution_text}.",
                           "The dispute on “{task_title}” was resolved."),
    "DISPUTE_EVIDENCE_REQUESTED": _k(P.HIGH, "task_updates", "task", "More evidence needed",
                                     "Our team needs more evidence for the dispute on “{task_title}”: {note}",
                                     "Our team needs more evidence for the dispute on “{task_title}”."),
    "TASK_UNDER_REVIEW": _k(P.MEDIUM, "task_updates", "task", "Task on hold",
                            "“{task_title}” is on hold while our team reviews it."),
    "XP_EARNED": _k(P.LOW, "xp_badges", "profile", ("+{effective_xp} XP", "XP earned"),
                    "You earned {effective_xp} XP for “{task_title}”.", "You earned XP for “{task_title}”.",
                    "You earned XP."),
    "LEVEL_UP": _k(P.LOW, "xp_badges", "profile", ("Level {level_after}!", "Level up!"),
                   "You reached level {level_after}. Keep hustling.", "You reached a new level."),
    "BADGE_EARNED": _k(P.MEDIUM, "xp_badges", "profile", "Badge earned",
                       "You earned the {badge_name} badge.", "You earned a new badge.",
                       distinct_by=("badge_type", "badge_id")),
    "ESCROW_FUNDED": _k(P.HIGH, "task_updates", "task", "Payment secured",
                        "{amount} is held in escrow for “{task_title}”.",
                        "Payment for “{task_title}” is held in escrow.", email=True),
    "ESCROW_RELEASED": _k(P.HIGH, "task_updates", "task", "Payment released",
                          "{amount} is on its way to you for “{task_title}”.",
                          "Your payment for “{task_title}” was released.", always_push=True, email=True),
    "ESCROW_REFUNDED": _k(P.MEDIUM, "task_updates", "task", "Refund issued",
                          "{amount} was refunded for “{task_title}”.",
                          "Your payment for “{task_title}” was refunded.", email=True),
    "RATING_REQUESTED": _k(P.MEDIUM, "task_updates", "task", "Rate your experience",
                           "How did “{task_title}” go? Rate it within 7 days."),
    "RATING_RECEIVED": _k(P.LOW, "xp_badges", "task", "You were rated",
                          "You received {stars} stars for “{task_title}”.",
                          "You received a rating for “{task_title}”."),
    "TRUST_TIER_UP": _k(P.HIGH, "xp_badges", "trust", "Trust tier up",
                        "You reached trust tier {new_tier}: {tier_name}.", "Your trust tier went up.",
                        cap="trust"),
    "TRUST_TIER_DOWN": _k(P.MEDIUM, "xp_badges", "trust", "Trust tier changed",
                          "Your trust tier is now {new_tier}: {tier_name}, because of {reason_text}.",
                          "Your trust tier is now {new_tier}: {tier_name}.", "Your trust tier went down.",
                          cap="trust"),
    "LIVE_TASK_MATCH": _k(P.HIGH, "task_updates", "task", "Live task nearby",
                          "“{task_title}” pays {price}. Accept it before someone else does.",
                          audience="candidates", cap="live"),
    "NEW_MESSAGE": _k(P.HIGH, "messages", "message", ("New message from {sender_name}", "New message"),
                      "{preview}", "You have a new message about “{task_title}”.",
                      distinct_by=("message_id",)),
    "SYSTEM_ANNOUNCEMENT": _k(P.LOW, "marketing", "settings", "News from HustleXP",
                              "{message}", "There's news from HustleXP.", cap="system"),
    "PAYMENT_FAILED": _k(P.HIGH, None, "task", "Payment failed",
                         "We couldn't charge your card for “{task_title}”. Update your payment method.",
                         email=True),
    "PAYOUT_FAILED_PERMANENT": _k(P.CRITICAL, None, "task_or_profile", "Payout failed permanently",
                                  "The {kind} of {amount} for “{task_title}” failed after every retry.",
                                  "The {kind} of {amount} for escrow {escrow_id} failed after every retry.",
                                  "A money movement failed after every retry and needs an admin.",
                                  audience="admins", email=True),
    # -- money events (issue 12): chargebacks, Radar, reversed transfers, failed payouts --
    "CHARGEBACK_OPENED": _k(P.CRITICAL, None, "task_or_profile", "Chargeback opened",
                            "A chargeback of {amount} was opened on “{task_title}”.",
                            "A chargeback of {amount} was opened.", "A chargeback was opened.",
                            audience="admins", email=True, distinct_by=("chargeback_id",)),
    "CHARGEBACK_CLOSED": _k(P.HIGH, None, "task_or_profile", "Chargeback closed",
                            "The chargeback of {amount} on “{task_title}” closed: {status}.",
                            "The chargeback of {amount} closed: {status}.", "A chargeback closed.",
                            audience="admins", email=True, distinct_by=("chargeback_id",)),
    "PAYMENT_RISK_REVIEW": _k(P.HIGH, None, "task_or_profile", "Payment flagged for review",
                              "Radar scored the payment for “{task_title}” {risk_level}: review it.",
                              "A payment was flagged for review.", audience="admins", email=True),
    "PAYOUT_REVERSED": _k(P.HIGH, None, "task_or_profile", "Payout reversed",
                          "{amount} of your payout for “{task_title}” was reversed.",
                          "{amount} of a payout was reversed.", "A payout was reversed.",
                          email=True, distinct_by=("notice_key",)),
    "PAYOUT_INCIDENT": _k(P.HIGH, None, "task_or_profile", "Payout incident",
                          "{incident} of {amount} ({stripe_object_id}).", "A payout incident needs a look.",
                          audience="admins", email=True, distinct_by=("notice_key",)),
    "PAYOUT_FAILED": _k(P.HIGH, None, "task_or_profile", "Bank payout failed",
                        "A payout of {amount} to your bank failed. Check your payout details.",
                        "A payout to the bank failed. Check your payout details.",
                        email=True, distinct_by=("notice_key",)),
    # Connect onboarding (issue 12a): the worker's payout account can, or can no longer, be paid.
    "PAYOUT_ACCOUNT_READY": _k(P.MEDIUM, None, "profile", "Payouts are on",
                               "Your payout account is ready: your earnings are on their way."),
    "PAYOUT_ACCOUNT_RESTRICTED": _k(P.HIGH, None, "profile", "Payouts paused",
                                    "Stripe needs more information before it can pay you. Your earnings are "
                                    "safe and wait until you update your payout account.", email=True),
}

CATEGORIES = frozenset(CATALOG)

# The NotificationService.event() open in this context, if any (_Event).
_open_event: ContextVar[_Event | None] = ContextVar("hustlexp_notification_event", default=None)

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_DEEP_LINK = re.compile(rf"hustlexp://(?:task/{_UUID}|message/{_UUID}|profile/{_UUID}|trust"
                        r"|settings/notifications)")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def dollars(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def _json(value: Any) -> Jsonb:
    # Callers hand us UUIDs, Decimals and datetimes in metadata; store them as text.
    return Jsonb(value, dumps=lambda obj: json.dumps(obj, default=str))


# ---------------------------------------------------------------------------
# Preferences
# ---------------------------------------------------------------------------

def _preferences_from(row: dict[str, Any] | None) -> dict[str, Any]:
    extra: dict[str, Any] = (row or {}).get("category_preferences") or {}
    stored = extra.get("categories") or {}
    categories = {b: bool(stored[b]) if b in stored else DEFAULT_BUCKETS[b] for b in BUCKETS}
    start = row["quiet_hours_start"] if row else DEFAULT_QUIET_START
    end = row["quiet_hours_end"] if row else DEFAULT_QUIET_END
    return {
        "push_enabled": row["push_enabled"] if row else True,
        "email_enabled": row["email_enabled"] if row else False,
        "sms_enabled": row["sms_enabled"] if row else False,
        "quiet_hours": {"enabled": row["quiet_hours_enabled"] if row else True,
                        "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"),
                        "timezone": extra.get("timezone") or "UTC"},
        "categories": categories,
        "read_receipts": bool(extra.get("read_receipts", True)),
    }


_PREFERENCE_COLUMNS = ", ".join(f"p.{c}" for c in (
    "push_enabled", "email_enabled", "sms_enabled", "quiet_hours_enabled", "quiet_hours_start",
    "quiet_hours_end", "category_preferences"))


def load_preferences(conn: Any, user_id: Any) -> dict[str, Any]:
    """A user's preferences in the API's shape, the defaults when they never set any.
    Other services read it (messaging honours `read_receipts`)."""
    row = one(conn, "SELECT * FROM notification_preferences WHERE user_id = %s", (user_id,))
    return _preferences_from(row)


def _bool(patch: dict[str, Any], key: str, errors: dict[str, list[str]], prefix: str = "") -> bool | None:
    if key not in patch:
        return None
    value = patch[key]
    if not isinstance(value, bool):
        errors[prefix + key] = ["must be true or false"]
        return None
    return value


def _validated_patch(patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict) or not patch:
        raise ValidationError("nothing to update", details={"_schema": ["send at least one preference"]})
    errors: dict[str, list[str]] = {}
    known = {"push_enabled", "email_enabled", "sms_enabled", "quiet_hours", "categories", "read_receipts"}
    for key in patch:
        if key not in known:
            errors[str(key)] = ["unknown preference"]
    clean: dict[str, Any] = {}
    for key in ("push_enabled", "email_enabled", "sms_enabled", "read_receipts"):
        value = _bool(patch, key, errors)
        if value is not None:
            clean[key] = value
    quiet = patch.get("quiet_hours")
    if quiet is not None:
        if not isinstance(quiet, dict):
            errors["quiet_hours"] = ["must be an object"]
        else:
            q: dict[str, Any] = {}
            for key in quiet:
                if key not in ("enabled", "start", "end", "timezone"):
                    errors[f"quiet_hours.{key}"] = ["unknown field"]
            enabled = _bool(quiet, "enabled", errors, "quiet_hours.")
            if enabled is not None:
                q["enabled"] = enabled
            for key in ("start", "end"):
                if key in quiet:
                    match = _HHMM.fullmatch(quiet[key]) if isinstance(quiet[key], str) else None
                    if match is None:
                        errors[f"quiet_hours.{key}"] = ["must be HH:MM, 00:00 to 23:59"]
                    else:
                        q[key] = time(int(match[1]), int(match[2]))
            if "timezone" in quiet:
                tz = quiet["timezone"]
                try:
                    if not isinstance(tz, str) or not tz:
                        raise ZoneInfoNotFoundError(tz)
                    ZoneInfo(tz)
                    q["timezone"] = tz
                except (ZoneInfoNotFoundError, ValueError):
                    errors["quiet_hours.timezone"] = ["must be an IANA time zone such as America/New_York"]
            clean["quiet_hours"] = q
    cats = patch.get("categories")
    if cats is not None:
        if not isinstance(cats, dict):
            errors["categories"] = ["must be an object"]
        else:
            c: dict[str, bool] = {}
            for key in cats:
                if key not in BUCKETS:
                    errors[f"categories.{key}"] = ["unknown category"]
                    continue
                value = _bool(cats, key, errors, "categories.")
                if value is not None:
                    c[key] = value
            clean["categories"] = c
    if errors:
        raise ValidationError("invalid preferences", details=errors)
    return clean


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

def _render(templates: tuple[str, ...], context: dict[str, Any]) -> str:
    for template in templates:
        try:
            return template.format_map(context)
        except (KeyError, IndexError, ValueError):
            continue
    return templates[-1]


def _context(metadata: dict[str, Any], task: dict[str, Any] | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {k: v for k, v in metadata.items() if v is not None and v != ""}
    for key in ("amount", "amount_cents", "payout", "payout_cents", "refund_amount"):
        value = metadata.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            ctx["amount"] = dollars(value)
            break
    else:
        ctx.pop("amount", None)
    if task is not None:
        title = task["title"]
        ctx["task_title"] = title if len(title) <= 80 else title[:79] + "…"
        ctx["price"] = dollars(task["price"])
        for role in ("worker_name", "poster_name"):
            if task.get(role):
                ctx.setdefault(role, task[role])
    tier = metadata.get("new_tier")
    if isinstance(tier, int) and tier in TIER_NAMES:
        ctx["tier_name"] = TIER_NAMES[tier]
    if "level" in metadata and "level_after" not in ctx:
        ctx["level_after"] = metadata["level"]
    if "xp" in metadata and "effective_xp" not in ctx:
        ctx["effective_xp"] = metadata["xp"]
    if "badge_name" not in ctx and isinstance(metadata.get("badge_type"), str):
        ctx["badge_name"] = metadata["badge_type"].replace("-", " ").title()
    if isinstance(metadata.get("kind"), str):
        ctx["kind"] = metadata["kind"].lower()
    if isinstance(metadata.get("resolution"), str):
        ctx["resolution_text"] = metadata["resolution"].replace("_", " ").lower()
    if isinstance(metadata.get("reason"), str) and metadata["reason"] in TRUST_REASONS:
        ctx["reason_text"] = TRUST_REASONS[metadata["reason"]]
    if isinstance(metadata.get("preview"), str):
        ctx["preview"] = metadata["preview"][:100]
    return ctx


def _deep_link(kind: Kind, user_id: UUID, task_id: UUID | None) -> str:
    if kind.link in ("task", "message") and task_id is None:
        raise ValidationError("this notification needs a task", details={"task_id": ["required"]})
    if kind.link == "task" or (kind.link == "task_or_profile" and task_id is not None):
        return f"hustlexp://task/{task_id}"
    if kind.link == "message":
        return f"hustlexp://message/{task_id}"
    if kind.link == "trust":
        return "hustlexp://trust"
    if kind.link == "settings":
        return "hustlexp://settings/notifications"
    return f"hustlexp://profile/{user_id}"


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    """Whether a local wall-clock time falls in [start, end); the window may cross midnight.
    start == end is an empty window."""
    if start < end:
        return start <= local < end
    if start > end:
        return local >= start or local < end
    return False


def _quiet_hours_end(now: datetime, tz: ZoneInfo, end: time) -> datetime:
    local = now.astimezone(tz)
    candidate = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (candidate + timedelta(days=1)).replace(hour=end.hour, minute=end.minute)
    return candidate.astimezone(UTC)


def notification_item(row: dict[str, Any]) -> dict[str, Any]:
    """The API's notification object (api §4), plus channels and grouping."""
    return {
        "id": row["id"], "user_id": row["user_id"], "type": row["category"], "title": row["title"],
        "body": row["body"], "priority": row["priority"], "task_id": row["task_id"],
        "deep_link": row["deep_link"], "read": row["read_at"] is not None, "read_at": row["read_at"],
        "created_at": row["created_at"], "metadata": row["metadata"], "channels": list(row["channels"]),
        "group_id": row["group_id"], "group_position": row["group_position"],
    }


# ---------------------------------------------------------------------------
# Recording: what record_all() reads and writes
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Notice:
    """One notification to record (NotificationService.record_all)."""

    user_id: Any
    category: str
    task_id: Any = None
    title: str | None = None
    body: str | None = None
    metadata: dict[str, Any] | None = None
    priority: str | None = None
    deep_link: str | None = None


@dataclass(frozen=True)
class _Wanted:
    """A notice past the checks that need no database."""

    notice: Notice
    kind: Kind
    recipient_id: UUID
    task_id: UUID | None
    level: str
    meta: dict[str, Any]


@dataclass
class _Event:
    """An open NotificationService.event(): the recipient rows already read (their event lock
    taken) by (recipient, task), and the notices record_all was given, checked and waiting to be
    inserted together when the event ends (on the transaction's connection)."""

    read: dict[tuple[UUID, UUID | None], dict[str, Any]] = field(default_factory=dict)
    pending: list[_Wanted] = field(default_factory=list)


def _runs(wanted: list[_Wanted]) -> list[list[int]]:
    """The notices split, in order, into runs that one statement may insert together. A
    notice's duplicate, grouping and cap checks read only its recipient's notifications of
    its own category, or of its cap group: one that shares either with an earlier notice of
    the run must see that one inserted first, so it starts the next run."""
    runs: list[list[int]] = []
    seen: set[tuple[UUID, str]] = set()
    for i, w in enumerate(wanted):
        keys = {(w.recipient_id, w.notice.category)}
        if w.kind.cap is not None:
            keys.add((w.recipient_id, "cap:" + w.kind.cap))
        if not runs or keys & seen:
            runs.append([])
            seen = set()
        runs[-1].append(i)
        seen |= keys
    return runs


def _recipient_sql(i: int) -> str:
    return f"""
            SELECT {i} AS ord,
                   (%(lock_{i})s::text IS NULL OR pg_advisory_xact_lock(hashtextextended(%(lock_{i})s, 0)) IS NULL)
                       AS locked,
                   u.id, u.account_status, p.user_id IS NOT NULL AS has_preferences, {_PREFERENCE_COLUMNS},
                   t.id AS task_id, t.title AS task_title, t.price AS task_price, t.poster_id AS task_poster_id,
                   t.worker_id AS task_worker_id, tp.full_name AS task_poster_name,
                   tw.full_name AS task_worker_name
              FROM users u LEFT JOIN notification_preferences p ON p.user_id = u.id
              LEFT JOIN tasks t ON t.id = %(task_{i})s LEFT JOIN users tp ON tp.id = t.poster_id
              LEFT JOIN users tw ON tw.id = t.worker_id
             WHERE u.id = %(user_{i})s"""


@functools.lru_cache(maxsize=16)
def _recipients_statement(n: int) -> str:
    return " UNION ALL ".join(f"({_recipient_sql(i)})" for i in range(n))


def _recipient_params(i: int, recipient_id: UUID, task_id: UUID | None) -> dict[str, Any]:
    lock = f"notify:{recipient_id}:{task_id}" if task_id is not None else None
    return {f"lock_{i}": lock, f"task_{i}": task_id, f"user_{i}": recipient_id}


_DEDUPE_SINCE = f"interval '{int(DEDUPE_WINDOW.total_seconds())} seconds'"
_GROUP_SINCE = f"interval '{int(GROUP_WINDOW.total_seconds())} seconds'"
_RETAINED = f"interval '{int(RETENTION.total_seconds())} seconds'"


@functools.lru_cache(maxsize=64)
def _insert_statement(shape: tuple[tuple[bool, bool], ...], full: bool) -> str:
    """The insert for rows of this shape: (has a task, has a discriminator) for each; with
    `full`, each answers its stored row."""
    parts = [_insert_part(j, has_task, has_key, full) for j, (has_task, has_key) in enumerate(shape)]
    return "WITH " + ",\n".join(cte for cte, _ in parts) + "\n" + "\nUNION ALL\n".join(sel for _, sel in parts)


def _insert_part(i: int, has_task: bool, has_key: bool, full: bool) -> tuple[str, str]:
    """One notification's part of the insert (its CTEs, and its SELECT of the result): insert
    it, or return the one it repeats.

    A repeat is a notification of the same recipient, category and task (and discriminator)
    from the last five minutes: it comes back and nothing is inserted. Otherwise the new row
    joins the open group of its category and task (the latest from the last five minutes,
    while the group has fewer than GROUP_MAX) or starts one. Both reads use
    notifications_recent_idx, so the cost stays flat however many notifications the
    recipient has had; the caller holds the event's advisory lock, taken in an earlier
    statement so this one's snapshot sees what a concurrent copy of the event committed.
    Only notifications about a task are deduplicated; `task_id IS NULL` rather than IS NOT
    DISTINCT FROM keeps the grouping read on the index. Parameters are suffixed _i; the
    windows and the group size are this module's constants."""
    same_task = f"task_id = %(task_id_{i})s" if has_task else "task_id IS NULL"
    if not has_task:
        earlier = "SELECT n.* FROM notifications n WHERE false"
    else:
        distinct = "" if not has_key else \
            f"AND metadata ->> %(key_{i})s::text = %(value_{i})s::text"
        earlier = f"""SELECT n.* FROM notifications n
                 WHERE user_id = %(user_id_{i})s AND category = %(category_{i})s AND task_id = %(task_id_{i})s
                   AND created_at > %(now_{i})s - {_DEDUPE_SINCE} AND created_at <= %(now_{i})s {distinct}
                 ORDER BY created_at DESC LIMIT 1"""
    cte = f"""earlier_{i} AS ({earlier}),
            last_{i} AS (
                SELECT n.id, n.group_id, coalesce(n.group_position, 1) AS position FROM notifications n
                 WHERE user_id = %(user_id_{i})s AND category = %(category_{i})s AND {same_task}
                   AND created_at > %(now_{i})s - {_GROUP_SINCE} AND created_at <= %(now_{i})s
                 ORDER BY created_at DESC, group_position DESC NULLS LAST LIMIT 1),
            open_group_{i} AS (SELECT coalesce(group_id, id) AS group_id, position + 1 AS position
                                 FROM last_{i} WHERE position < {GROUP_MAX}),
            row_{i} AS (
                INSERT INTO notifications (id, user_id, category, title, body, deep_link, task_id, metadata,
                                           channels, priority, group_id, group_position, expires_at,
                                           created_at, push_due_at)
                SELECT %(id_{i})s, %(user_id_{i})s, %(category_{i})s, %(title_{i})s, %(body_{i})s, %(link_{i})s,
                       %(task_id_{i})s, %(metadata_{i})s, %(channels_{i})s, %(priority_{i})s,
                       coalesce(g.group_id, %(id_{i})s), coalesce(g.position, 1), %(now_{i})s + {_RETAINED},
                       %(now_{i})s, %(push_due_{i})s
                  FROM (SELECT) AS new LEFT JOIN open_group_{i} g ON true
                 WHERE NOT EXISTS (SELECT FROM earlier_{i})
                RETURNING {"*" if full else "id"})"""
    inserted, repeated = (f"row_{i}.*, ", f"earlier_{i}.*, ") if full else ("", "")
    select = f"""SELECT {i} AS ord, {inserted}
                   CASE WHEN %(wake_{i})s THEN pg_notify('{PUSH_CHANNEL}', row_{i}.id::text) IS NULL END AS woke
              FROM row_{i}
            UNION ALL
            SELECT {i}, {repeated}NULL FROM earlier_{i}"""
    return cte, select


# ---------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------

class NotificationService(Service):
    @returns_result
    def notify(self, user_id: Any, category: str, *, task_id: Any = None, title: str | None = None,
               body: str | None = None, metadata: dict[str, Any] | None = None,
               priority: str | None = None, deep_link: str | None = None) -> dict[str, Any] | None:
        """Record one notification for `user_id`. Returns the row (API shape), the earlier row
        when this repeats one from the last 5 minutes, or None when the recipient switched the
        category's bucket off. `channels` says whether it is pushed now; a push held back by
        quiet hours or a frequency cap is flagged in metadata `push_held` (+ `push_after`)."""
        with self.db.transaction() as conn:
            return self.record(conn, user_id, category, task_id=task_id, title=title, body=body,
                               metadata=metadata, priority=priority, deep_link=deep_link)

    def record(self, conn: Any, user_id: Any, category: str, *, task_id: Any = None, title: str | None = None,
               body: str | None = None, metadata: dict[str, Any] | None = None,
               priority: str | None = None, deep_link: str | None = None) -> dict[str, Any] | None:
        """notify() inside the caller's transaction with no savepoint of its own: any error
        propagates and rolls back the change the notification announces (Service._notify)."""
        wanted = [self._checked_notice(Notice(user_id, category, task_id=task_id, title=title, body=body,
                                               metadata=metadata, priority=priority, deep_link=deep_link))]
        event = _open_event.get()
        if event is not None:
            self._flush(event)  # the event's earlier notices first, as if each had been recorded
        return self._record(conn, wanted, full=True)[0]

    def record_all(self, conn: Any, notices: Sequence[Notice]) -> None:
        """record() for several notifications, in as few statements as the rules allow: one read
        for the recipients not yet read, one insert for each run of notices that cannot see each
        other (`_runs`). The rows end as recording each in order would leave them; none is sent
        back (their callers never read them). Inside an event() they wait for its end, to be
        recorded with the event's other notices (the checks that need no database are made
        now, so a bad notice still fails where it is given)."""
        wanted = [self._checked_notice(n) for n in notices]
        event = _open_event.get()
        if event is None:
            self._record(conn, wanted, full=False)
            return
        event.pending.extend(wanted)

    def _flush(self, event: _Event) -> None:
        pending, event.pending = event.pending, []
        if pending:
            self._record(self.db.current(), pending, full=False)

    def _record(self, conn: Any, wanted: list[_Wanted], *, full: bool) -> list[dict[str, Any] | None]:
        """With `full`, what record() answers for each notice; else nothing worth reading."""
        found = self._read_recipients(conn, [(w.recipient_id, w.task_id) for w in wanted])
        results: list[dict[str, Any] | None] = [None] * len(wanted)
        for run in _runs(wanted):
            ready = [(i, self._prepared(conn, wanted[i], found[i])) for i in run]
            rows = self._insert_unless_repeat_all(conn, [(i, p) for i, p in ready if p is not None], full)
            if full:
                for i, row in rows.items():
                    results[i] = notification_item(row)
        return results

    def _checked_notice(self, notice: Notice) -> _Wanted:
        """The checks that need no database, in the order record() made them."""
        kind = CATALOG.get(notice.category)
        if kind is None:
            raise ValidationError(f"unknown notification category {notice.category!r}",
                                  details={"category": [f"one of {', '.join(sorted(CATALOG))}"]})
        recipient_id = parse_uuid(notice.user_id)
        if recipient_id is None:
            raise missing_user()
        task_uuid = None
        if notice.task_id is not None:
            task_uuid = parse_uuid(notice.task_id)
            if task_uuid is None:
                raise NotFound("No such task.")
        level = self._priority(kind, notice.priority)
        meta = dict(notice.metadata or {})
        if not all(isinstance(k, str) for k in meta):
            raise ValidationError("metadata keys must be strings", details={"metadata": ["string keys"]})
        return _Wanted(notice, kind, recipient_id, task_uuid, level, meta)

    def _read_recipients(self, conn: Any, pairs: list[tuple[UUID, UUID | None]]) -> list[dict[str, Any]]:
        """For each (recipient, task): the event's lock (serialising notifications of one recipient
        about one task, so a replayed event can't slip past the duplicate check that follows in a
        later statement's snapshot), the recipient, their preferences and the task, all pairs in
        one statement. Within event() a pair is read once: its lock is held to the end of the
        transaction anyway."""
        event = _open_event.get()
        read = event.read if event is not None else None
        cached: dict[tuple[UUID, UUID | None], dict[str, Any]] = {}
        if read is not None:
            cached.update((pair, read[pair]) for pair in pairs if pair in read)
        # Sorted: every event takes its recipients' locks in one global order (no deadlock
        # between two events naming the same pairs in different orders).
        missing = sorted(dict.fromkeys(pair for pair in pairs if pair not in cached), key=str)
        got = self._recipients(conn, missing) if missing else ()
        for pair, row in zip(missing, got, strict=True):
            if row is None:
                raise missing_user()
            cached[pair] = row
            if read is not None and pair[1] is not None:
                read[pair] = row
        return [cached[pair] for pair in pairs]

    def _prepared(self, conn: Any, wanted: _Wanted, recipient: dict[str, Any]) -> dict[str, Any] | None:
        """The row to insert for one notice (None when its bucket is switched off): audience,
        preferences, channels and holds, text and link."""
        kind, recipient_id, task_uuid, meta = wanted.kind, wanted.recipient_id, wanted.task_id, wanted.meta
        notice = wanted.notice
        now = self.s.clock()
        task = None
        if task_uuid is not None:
            if recipient["task_id"] is None:
                raise NotFound("No such task.")
            task = {k.removeprefix("task_"): recipient[k] for k in (
                "task_id", "task_title", "task_price", "task_poster_id", "task_worker_id", "task_poster_name",
                "task_worker_name")}
        self._check_audience(conn, kind, recipient_id, task)

        prefs = _preferences_from(recipient if recipient["has_preferences"] else None)
        if kind.bucket is not None and not prefs["categories"][kind.bucket]:
            return None

        discriminator = self._discriminator(kind, meta)
        channels, held, push_after = self._channels(conn, kind, notice.category, wanted.level, prefs, recipient, now)
        if held is not None:
            meta["push_held"] = held
            if push_after is not None:
                meta["push_after"] = push_after.isoformat()

        context = _context(meta, task)
        final_title = notice.title if notice.title is not None else _render(kind.titles, context)
        final_body = notice.body if notice.body is not None else _render(kind.bodies, context)
        final_title, final_body = self._checked_text(final_title, final_body, notice.title is not None)
        link = self._checked_link(notice.deep_link) if notice.deep_link is not None else \
            _deep_link(kind, recipient_id, task_uuid)

        # The push goes now, when the hold ends, or never (hustlexp.services.push sends it);
        # one due now wakes the push dispatcher at commit.
        push_due = now if NotificationChannel.PUSH.value in channels else push_after
        key, value = discriminator if discriminator is not None else (None, None)
        return {"id": uuid.uuid4(), "user_id": recipient_id, "category": notice.category, "title": final_title,
                "body": final_body, "link": link, "task_id": task_uuid, "metadata": _json(meta),
                "channels": channels, "priority": wanted.level, "now": now, "push_due": push_due,
                "wake": push_due == now, "key": key, "value": value}

    @contextmanager
    def event(self) -> Iterator[None]:
        """One event's notifications, inside one transaction (a completion notifies its worker
        four to six times): those given to record_all are recorded together as the block ends
        (one read of their recipients, whose locks it takes, and as few inserts as `_runs`
        allows), and dropped if it raises. Nothing in the block may roll back to a savepoint
        and carry on (a notice given inside it would still be recorded); an event already open
        is joined."""
        if _open_event.get() is not None:
            yield
            return
        event = _Event()
        token = _open_event.set(event)
        try:
            yield
            self._flush(event)
        finally:
            _open_event.reset(token)

    @returns_result
    def list(self, user_id: Any, *, unread_only: bool = False, limit: int | None = 20,
             offset: int | None = 0) -> dict[str, Any]:
        """The user's live (unexpired) notifications, newest first:
        {notifications, unread_count, total, has_more}."""
        limit, offset = page_params(limit, offset, default=20, maximum=100)
        uid = parse_uuid(user_id)
        if uid is None:
            raise missing_user()
        now = self.s.clock()
        with self.db.transaction() as conn:
            counts = one(conn, """
                SELECT count(*) AS total, count(*) FILTER (WHERE read_at IS NULL) AS unread
                  FROM notifications WHERE user_id = %s AND expires_at > %s""", (uid, now))
            assert counts is not None
            rows = conn.execute("""
                SELECT * FROM notifications
                 WHERE user_id = %(uid)s AND expires_at > %(now)s
                   AND (NOT %(unread_only)s OR read_at IS NULL)
                 ORDER BY created_at DESC, id DESC
                 LIMIT %(limit)s OFFSET %(offset)s""",
                {"uid": uid, "now": now, "unread_only": bool(unread_only), "limit": limit,
                 "offset": offset}).fetchall()
        total = counts["unread"] if unread_only else counts["total"]
        return {"notifications": [notification_item(r) for r in rows], "unread_count": counts["unread"],
                "total": total, "has_more": offset + len(rows) < total}

    @returns_result
    def mark_read(self, user_id: Any, notification_ids: Any) -> dict[str, int]:
        """Mark the caller's own unread notifications among `notification_ids` read."""
        if isinstance(notification_ids, str | bytes) or not isinstance(notification_ids, list | tuple):
            raise ValidationError("notification_ids must be a list", details={"notification_ids": ["list"]})
        if not 1 <= len(notification_ids) <= 500:
            raise ValidationError("send 1 to 500 notification ids", details={"notification_ids": ["1..500"]})
        ids = [parse_uuid(n) for n in notification_ids]
        if any(i is None for i in ids):
            raise ValidationError("notification ids must be UUIDs", details={"notification_ids": ["UUIDs"]})
        uid = parse_uuid(user_id)
        if uid is None:
            return {"marked_count": 0}
        with self.db.transaction() as conn:
            return {"marked_count": self._mark(conn, uid, ids)}

    @returns_result
    def mark_all_read(self, user_id: Any) -> dict[str, int]:
        uid = parse_uuid(user_id)
        if uid is None:
            return {"marked_count": 0}
        with self.db.transaction() as conn:
            return {"marked_count": self._mark(conn, uid, None)}

    @returns_result
    def get_preferences(self, user_id: Any) -> dict[str, Any]:
        with self.db.transaction() as conn:
            uid = self._existing_user(conn, user_id)
            return load_preferences(conn, uid)

    @returns_result
    def update_preferences(self, user_id: Any, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial update and return the whole preference object."""
        clean = _validated_patch(patch)
        with self.db.transaction() as conn:
            uid = self._existing_user(conn, user_id)
            # Create the row first, then lock it: two first-time updates must merge, not overwrite.
            conn.execute("INSERT INTO notification_preferences (user_id) VALUES (%s) "
                         "ON CONFLICT (user_id) DO NOTHING", (uid,))
            row = one(conn, "SELECT * FROM notification_preferences WHERE user_id = %s FOR UPDATE", (uid,))
            assert row is not None
            extra = dict(row["category_preferences"] or {})
            quiet = clean.get("quiet_hours", {})
            if "categories" in clean:
                extra["categories"] = {**(extra.get("categories") or {}), **clean["categories"]}
            if "read_receipts" in clean:
                extra["read_receipts"] = clean["read_receipts"]
            if "timezone" in quiet:
                extra["timezone"] = quiet["timezone"]
            updated = one(conn, """
                UPDATE notification_preferences
                   SET push_enabled = %(push)s, email_enabled = %(email)s, sms_enabled = %(sms)s,
                       quiet_hours_enabled = %(q_enabled)s, quiet_hours_start = %(q_start)s,
                       quiet_hours_end = %(q_end)s, category_preferences = %(extra)s
                 WHERE user_id = %(uid)s
                 RETURNING *""", {
                "push": clean.get("push_enabled", row["push_enabled"]),
                "email": clean.get("email_enabled", row["email_enabled"]),
                "sms": clean.get("sms_enabled", row["sms_enabled"]),
                "q_enabled": quiet.get("enabled", row["quiet_hours_enabled"]),
                "q_start": quiet.get("start", row["quiet_hours_start"]),
                "q_end": quiet.get("end", row["quiet_hours_end"]),
                "extra": _json(extra), "uid": uid})
            return _preferences_from(updated)

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _priority(kind: Kind, priority: str | None) -> str:
        if priority is None:
            return kind.priority.value
        if priority not in P.__members__:
            raise ValidationError("unknown priority", details={"priority": [", ".join(P.__members__)]})
        return priority

    @staticmethod
    def _recipients(conn: Any, pairs: Sequence[tuple[UUID, UUID | None]]) -> Sequence[dict[str, Any] | None]:
        """Each pair's row (`_recipient_sql`; None: no such user), all in one statement; UNION ALL
        runs its branches in order, so the locks are taken in the order of `pairs`."""
        params: dict[str, Any] = {}
        for i, (recipient_id, task_id) in enumerate(pairs):
            params |= _recipient_params(i, recipient_id, task_id)
        rows = conn.execute(_recipients_statement(len(pairs)), params).fetchall()
        by_ord = {row.pop("ord"): row for row in rows}
        return [by_ord.get(i) for i in range(len(pairs))]

    @staticmethod
    def _check_audience(conn: Any, kind: Kind, recipient: UUID, task: dict[str, Any] | None) -> None:
        if kind.audience == "admins":
            if audit.admin_role(conn, recipient) is None:
                raise Forbidden("This alert goes to admins only.", code="HX805")
            return
        if task is None:
            return
        if kind.audience == "candidates":
            # A match goes to would-be workers, never to the task's own poster.
            if task["poster_id"] == recipient:
                raise Forbidden("The poster is not a candidate for their own task.", code="HX805")
            return
        if recipient not in (task["poster_id"], task["worker_id"]):
            raise Forbidden("Task notifications go to the task's poster and worker only.", code="HX805")

    @staticmethod
    def _discriminator(kind: Kind, meta: dict[str, Any]) -> tuple[str, str] | None:
        for key in kind.distinct_by:
            if meta.get(key) is not None:
                return key, str(meta[key])
        return None

    @staticmethod
    def _insert_unless_repeat_all(conn: Any, rows: Sequence[tuple[int, dict[str, Any]]], full: bool
                                  ) -> dict[int, dict[str, Any]]:
        """Insert each notification, or return the one it repeats, all in one statement (each row
        its own `_insert_part`); the caller makes sure no row's checks depend on another's. By
        the index each row was given: the stored row, or with `full` False only its `ord`."""
        if not rows:
            return {}
        statement = _insert_statement(tuple((v["task_id"] is not None, v["key"] is not None) for _, v in rows), full)
        params = {f"{k}_{j}": v for j, (_, values) in enumerate(rows) for k, v in values.items()}
        found = conn.execute(statement, params).fetchall()
        assert len(found) == len(rows)
        return {rows[row.pop("ord")][0]: row for row in found}

    def _channels(self, conn: Any, kind: Kind, category: str, priority: str, prefs: dict[str, Any],
                  recipient: dict[str, Any], now: datetime) -> tuple[Channels, str | None, datetime | None]:
        """(channels, why the push is held or None, when it may go out or None)."""
        channels = [NotificationChannel.IN_APP.value]
        if kind.email and prefs["email_enabled"]:
            channels.append(NotificationChannel.EMAIL.value)
        if priority == P.CRITICAL and prefs["sms_enabled"]:
            channels.append(NotificationChannel.SMS.value)
        if not prefs["push_enabled"]:
            return channels, None, None
        if recipient["account_status"] != AccountStatus.ACTIVE:
            # A paused account is silent: the inbox still fills, nothing buzzes.
            return channels, "account_paused", None
        quiet = prefs["quiet_hours"]
        if quiet["enabled"] and not kind.always_push and priority not in (P.HIGH, P.CRITICAL):
            tz = ZoneInfo(quiet["timezone"])
            start, end = time.fromisoformat(quiet["start"]), time.fromisoformat(quiet["end"])
            if in_quiet_hours(now.astimezone(tz).time(), start, end):
                return channels, "quiet_hours", _quiet_hours_end(now, tz, end)
        if kind.cap is not None:
            held = self._over_cap(conn, kind.cap, recipient["id"], now)
            if held is not None:
                return channels, "frequency_cap", held
        return [NotificationChannel.PUSH.value, *channels], None, None

    @staticmethod
    def _over_cap(conn: Any, cap: str, user_id: UUID, now: datetime) -> datetime | None:
        """When the user already had their pushes of this cap group, the time the window frees
        up; None while under the cap."""
        per_hour, per_day = CAPS[cap]
        members = [c for c, k in CATALOG.items() if k.cap == cap]
        rows = conn.execute("""
            SELECT created_at FROM notifications
             WHERE user_id = %s AND category = ANY(%s) AND 'push' = ANY(channels)
               AND created_at > %s AND created_at <= %s
             ORDER BY created_at DESC""", (user_id, members, now - timedelta(days=1), now)).fetchall()
        stamps = [r["created_at"] for r in rows]
        last_hour = [s for s in stamps if s > now - timedelta(hours=1)]
        if len(stamps) >= per_day:
            return stamps[per_day - 1] + timedelta(days=1)
        if len(last_hour) >= per_hour:
            return last_hour[per_hour - 1] + timedelta(hours=1)
        return None

    @staticmethod
    def _checked_text(title: str, body: str, title_given: bool) -> tuple[str, str]:
        errors: dict[str, list[str]] = {}
        if not isinstance(title, str) or not title.strip():
            errors["title"] = ["required"]
        elif len(title) > TITLE_MAX:
            if title_given:
                errors["title"] = [f"at most {TITLE_MAX} characters"]
            else:
                title = title[:TITLE_MAX - 1] + "…"
        if not isinstance(body, str) or not body.strip():
            errors["body"] = ["required"]
        if errors:
            raise ValidationError("invalid notification text", details=errors)
        return title, body

    @staticmethod
    def _checked_link(link: str) -> str:
        if not isinstance(link, str) or _DEEP_LINK.fullmatch(link) is None:
            raise ValidationError("invalid deep link", details={"deep_link": ["a hustlexp:// link"]})
        return link

    def _mark(self, conn: Any, user_id: UUID, ids: Sequence[UUID | None] | None) -> int:
        # Reading implies it was sent and delivered; stamp those too so the CHECK chain
        # created <= sent <= delivered <= read holds whatever the delivery worker did.
        cur = conn.execute("""
            WITH t AS (SELECT greatest(%(now)s::timestamptz, n.created_at) AS at, n.id
                         FROM notifications n
                        WHERE n.user_id = %(uid)s AND n.read_at IS NULL
                          AND (%(all)s OR n.id = ANY(%(ids)s::uuid[])))
            UPDATE notifications n
               SET sent_at = coalesce(n.sent_at, n.delivered_at, t.at),
                   delivered_at = coalesce(n.delivered_at, greatest(coalesce(n.sent_at, t.at), t.at)),
                   read_at = greatest(t.at, coalesce(n.delivered_at, t.at), coalesce(n.sent_at, t.at))
              FROM t WHERE n.id = t.id""",
            {"now": self.s.clock(), "uid": user_id, "all": ids is None, "ids": list(ids or [])})
        return int(cur.rowcount)

    @staticmethod
    def _existing_user(conn: Any, user_id: Any) -> UUID:
        uid = parse_uuid(user_id)
        if uid is None or one(conn, "SELECT 1 FROM users WHERE id = %s", (uid,)) is None:
            raise missing_user()
        return uid
