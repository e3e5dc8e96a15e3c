"""Push delivery: every notification whose push is due goes to its recipient's devices through
Firebase Cloud Messaging (HTTP v1, which reaches iOS through APNs), and never inside a request.

The notification row is its own queue entry. NotificationService writes `push_due_at` (now, or
when a quiet-hours or frequency-cap hold ends) in the transaction that records the
notification, and a due push NOTIFYs CHANNEL at commit. The dispatcher (hustlexp.jobs.dispatcher)
LISTENs and sends at once; the periodic `push` job sends whatever else is due: held pushes
whose hold ended, retries, and rows written while nobody listened.

Sending claims rows in a short transaction (SKIP LOCKED, and a lease: `push_due_at` moves
LEASE ahead, so a sender that dies mid-call leaves the row to be retried), calls FCM with no
lock held (`send_each`, up to 500 messages a call), then records each outcome:
- delivered to at least one device: `sent_at` stamped, `push_error` cleared;
- a token FCM says is UNREGISTERED, invalid, or of another sender: the device row is pruned;
- transient failures (unavailable, internal, quota, network) back off (BACKOFF) and retry,
  MAX_ATTEMPTS in all; anything else fails at once. `push_error` says why.
Held pushes of one category that fall due together go out as ONE push ("+N more"), as the
spec batches capped notifications. A notification read in the app meanwhile, or older than
MAX_AGE, is not pushed."""

from __future__ import annotations

import logging
import uuid
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from hustlexp.errors import ValidationError
from hustlexp.services.base import Service, returning, returns_result
from hustlexp.services.user import parse_uuid

log = logging.getLogger(__name__)

# NOTIFY channel whose payload is a comma-separated list of notification ids whose push is due.
CHANNEL = "hustlexp_push"
LEASE = timedelta(minutes=5)
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30))
MAX_ATTEMPTS = len(BACKOFF) + 1
MAX_AGE = timedelta(hours=24)
FCM_BATCH = 500
PLATFORMS = ("ios", "android", "web")
TOKEN_MAX = 4096

# FCM error codes (firebase_admin exception `code`s) by what we do about them.
PRUNE = frozenset({"NOT_FOUND", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH", "UNREGISTERED"})
TRANSIENT = frozenset({"UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "UNKNOWN",
                       "DEADLINE_EXCEEDED", "ABORTED"})

PAYMENT_CATEGORIES = frozenset({"ESCROW_FUNDED", "ESCROW_RELEASED", "ESCROW_REFUNDED", "PAYMENT_FAILED",
                                "PAYOUT_FAILED_PERMANENT"})


@dataclass(frozen=True)
class Outcome:
    """One message's fate: ok, or the FCM error code (and whether the token must go)."""

    ok: bool
    code: str | None = None

    @property
    def prune(self) -> bool:
        return not self.ok and self.code in PRUNE

    @property
    def transient(self) -> bool:
        return not self.ok and self.code in TRANSIENT


class PushGateway:
    """firebase_admin.messaging for one service account, in a firebase App of its own.
    `api_base` points the client at another FCM-compatible server (tests)."""

    def __init__(self, service_account: Any, *, project_id: str | None = None, api_base: str | None = None,
                 timeout: float = 10.0) -> None:
        import firebase_admin
        from firebase_admin import credentials, messaging

        credential = credentials.Certificate(service_account)
        options = {"projectId": project_id or credential.project_id, "httpTimeout": timeout}
        self.app = firebase_admin.initialize_app(credential, options, name=f"hustlexp-push-{uuid.uuid4().hex}")
        if api_base:
            # firebase-admin has no endpoint option for messaging: its service keeps the URL it
            # was built with, so the override is set on that one instance.
            service = messaging._get_messaging_service(self.app)
            service._fcm_url = f"{api_base.rstrip('/')}/v1/projects/{self.app.project_id}/messages:send"
        self._messaging = messaging

    def send(self, messages: list[Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(messages), FCM_BATCH):
            chunk = messages[start:start + FCM_BATCH]
            try:
                batch = self._messaging.send_each(chunk, app=self.app)
            except Exception as exc:  # the whole call failed (credentials, network): retry them all
                log.warning("FCM call failed: %s", exc)
                outcomes.extend(Outcome(False, _code(exc)) for _ in chunk)
                continue
            for response in batch.responses:
                outcomes.append(Outcome(True) if response.success else Outcome(False, _code(response.exception)))
        return outcomes

    def close(self) -> None:
        import firebase_admin

        firebase_admin.delete_app(self.app)


def _code(exc: Any) -> str:
    from firebase_admin import messaging

    if isinstance(exc, messaging.UnregisteredError):
        return "UNREGISTERED"
    if isinstance(exc, messaging.SenderIdMismatchError):
        return "SENDER_ID_MISMATCH"
    if isinstance(exc, messaging.QuotaExceededError):
        return "QUOTA_EXCEEDED"
    code = getattr(exc, "code", None)
    return str(code) if isinstance(code, str) and code else "UNKNOWN"


def _channel_id(category: str, bucket: str | None) -> str:
    """The Android notification channel (NOTIFICATION_UX §6)."""
    if category in PAYMENT_CATEGORIES:
        return "payments"
    return {"messages": "messages", "xp_badges": "achievements"}.get(bucket or "", "tasks")


def build_message(row: dict[str, Any], token: str, *, title: str, body: str, badge: int) -> Any:
    """The FCM message of one notification for one device: the deep link and category in the
    data payload, HIGH/CRITICAL as high priority on every platform, the notification's group
    as collapse key (a newer push of the group replaces an undelivered older one)."""
    from firebase_admin import messaging

    from hustlexp.services.notification import CATALOG

    kind = CATALOG.get(row["category"])
    urgent = row["priority"] in ("HIGH", "CRITICAL")
    quiet = row["priority"] == "LOW"
    group = row["group_id"] or row["id"]
    collapse = f"hx-{group}"
    thread = "payments" if row["category"] in PAYMENT_CATEGORIES else (
        f"task-{row['task_id']}" if row["task_id"] else row["category"].lower())
    data = {"notification_id": str(row["id"]), "category": row["category"], "deep_link": row["deep_link"],
            "priority": row["priority"]}
    if row["task_id"] is not None:
        data["task_id"] = str(row["task_id"])
    channel = _channel_id(row["category"], kind.bucket if kind else None)
    with warnings.catch_warnings():
        # firebase-admin 7.7 deprecates `token` for Firebase installation ids (`fid`); the apps
        # register FCM registration tokens, which FCM HTTP v1 still addresses as `token`.
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=token,
            notification=messaging.Notification(title=title, body=body),
            data=data,
            android=messaging.AndroidConfig(
                priority="high" if urgent else "normal", collapse_key=collapse,
                notification=messaging.AndroidNotification(channel_id=channel, tag=collapse,
                                                           default_sound=not quiet)),
            apns=messaging.APNSConfig(
                headers={"apns-priority": "10" if urgent else "5", "apns-collapse-id": collapse},
                payload=messaging.APNSPayload(aps=messaging.Aps(
                    thread_id=thread, category=row["category"], badge=badge, sound=None if quiet else "default"))),
            webpush=messaging.WebpushConfig(headers={"Urgency": "high" if urgent else "normal",
                                                      "Topic": UUID(str(group)).hex}),
        )


class PushService(Service):
    # -- devices ---------------------------------------------------------------

    @returns_result
    def register_device(self, user_id: Any, token: Any, platform: Any) -> dict[str, Any]:
        """Upsert a device: the token now belongs to this user (whoever had it before)."""
        errors: dict[str, list[str]] = {}
        if not isinstance(token, str) or not token.strip() or len(token) > TOKEN_MAX:
            errors["token"] = [f"a registration token of 1 to {TOKEN_MAX} characters"]
        if platform not in PLATFORMS:
            errors["platform"] = [f"one of {', '.join(PLATFORMS)}"]
        if errors:
            raise ValidationError("invalid device", details=errors)
        uid = parse_uuid(user_id)
        with self.db.transaction() as conn:
            return returning(conn, """
                INSERT INTO push_devices (token, user_id, platform) VALUES (%s, %s, %s)
                ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
                                                  updated_at = now()
                RETURNING token, platform, created_at, updated_at""", (token, uid, platform))

    @returns_result
    def remove_device(self, user_id: Any, token: str) -> dict[str, bool]:
        """Forget the caller's device (a token of someone else is left alone: 404)."""
        from hustlexp.errors import NotFound

        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM push_devices WHERE token = %s AND user_id = %s",
                               (token, parse_uuid(user_id)))
            if cur.rowcount == 0:
                raise NotFound("No such device.")
        return {"removed": True}

    # -- delivery ----------------------------------------------------------------

    @returns_result
    def send_due(self, ids: list[Any] | None = None, limit: int = 200) -> dict[str, int]:
        """Send the pushes due now (only those among `ids` when given). Returns counts."""
        counts = {"claimed": 0, "sent": 0, "retrying": 0, "failed": 0, "no_devices": 0, "pruned": 0,
                  "skipped": 0}
        gateway = self.s.push
        if gateway is None:
            return counts  # no FCM credentials here: the rows wait for a host that has them
        wanted = [u for u in (parse_uuid(i) for i in ids or []) if u is not None] if ids is not None else None
        if wanted == []:
            return counts
        now = self.s.clock()
        with self.db.transaction() as conn:
            skipped = conn.execute("""
                UPDATE notifications SET push_due_at = NULL,
                       push_error = CASE WHEN read_at IS NOT NULL THEN 'read_in_app' ELSE 'expired' END
                 WHERE push_due_at <= %(now)s AND (read_at IS NOT NULL OR created_at < %(oldest)s)
                   AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))""",
                {"now": now, "oldest": now - MAX_AGE, "ids": wanted}).rowcount
            rows = conn.execute("""
                WITH due AS (
                    SELECT id FROM notifications
                     WHERE push_due_at <= %(now)s AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
                     ORDER BY push_due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
                UPDATE notifications n SET push_due_at = %(lease)s, push_attempts = n.push_attempts + 1
                  FROM due WHERE n.id = due.id
                RETURNING n.*""", {"now": now, "ids": wanted, "limit": limit, "lease": now + LEASE}).fetchall()
            users = list({r["user_id"] for r in rows})
            devices: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
            badges: dict[UUID, int] = {}
            if users:
                for d in conn.execute("SELECT token, user_id, platform FROM push_devices WHERE user_id = ANY(%s)",
                                      (users,)).fetchall():
                    devices[d["user_id"]].append(d)
                # The app icon's badge: unread notifications that matter (NOTIFICATION_UX §5).
                for b in conn.execute("""
                        SELECT user_id, count(*) AS unread FROM notifications
                         WHERE user_id = ANY(%s) AND read_at IS NULL AND priority <> 'LOW' AND expires_at > %s
                         GROUP BY user_id""", (users, now)).fetchall():
                    badges[b["user_id"]] = int(b["unread"])
        counts["claimed"], counts["skipped"] = len(rows), int(skipped)
        if not rows:
            return counts

        # One push per notification, except held pushes of one user and category falling due
        # together: those go as one, stamped on all of them.
        pushes: list[list[dict[str, Any]]] = []
        held: dict[tuple[UUID, str], list[dict[str, Any]]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: r["created_at"]):
            if (r["metadata"] or {}).get("push_held") in ("quiet_hours", "frequency_cap"):
                held[(r["user_id"], r["category"])].append(r)
            else:
                pushes.append([r])
        pushes.extend(held.values())

        messages: list[Any] = []
        addressed: list[tuple[int, str]] = []  # (push index, token) per message
        for index, group in enumerate(pushes):
            newest = group[-1]
            body = newest["body"] if len(group) == 1 else f"{newest['body']} (+{len(group) - 1} more)"
            for device in devices.get(newest["user_id"], []):
                messages.append(build_message(newest, device["token"], title=newest["title"], body=body,
                                              badge=badges.get(newest["user_id"], 0)))
                addressed.append((index, device["token"]))
        outcomes = gateway.send(messages) if messages else []

        by_push: dict[int, list[Outcome]] = defaultdict(list)
        pruned: set[str] = set()
        for (index, token), outcome in zip(addressed, outcomes, strict=True):
            by_push[index].append(outcome)
            if outcome.prune:
                pruned.add(token)
        results: list[tuple[UUID, str, str | None, Any]] = []  # (id, what, error, next due)
        for index, group in enumerate(pushes):
            got = by_push.get(index, [])
            for r in group:
                if any(o.ok for o in got):
                    results.append((r["id"], "sent", None, None))
                elif not got:
                    results.append((r["id"], "no_devices", "no_devices", None))
                elif any(o.transient for o in got) and r["push_attempts"] < MAX_ATTEMPTS:
                    code = next(o.code for o in got if o.transient)
                    results.append((r["id"], "retrying", code, now + BACKOFF[r["push_attempts"] - 1]))
                else:
                    codes = sorted({o.code or "UNKNOWN" for o in got})
                    tries = r["push_attempts"]
                    reason = ",".join(codes) + (f" after {tries} attempts" if tries > 1 else "")
                    results.append((r["id"], "failed", reason[:200], None))
        sent_at = self.s.clock()
        with self.db.transaction() as conn:
            if pruned:
                counts["pruned"] = conn.execute("DELETE FROM push_devices WHERE token = ANY(%s)",
                                                (list(pruned),)).rowcount
            for _, what, _, _ in results:
                counts[what] += 1
            # One statement for the whole batch (up to FCM's 500 per call), not one per row.
            conn.execute("""
                UPDATE notifications n
                   SET sent_at = CASE WHEN r.sent THEN coalesce(n.sent_at, greatest(%(at)s, n.created_at))
                                      ELSE n.sent_at END,
                       push_error = r.error, push_due_at = r.due
                  FROM unnest(%(ids)s::uuid[], %(sent)s::boolean[], %(errors)s::text[], %(dues)s::timestamptz[])
                       AS r(id, sent, error, due)
                 WHERE n.id = r.id""",
                {"at": sent_at, "ids": [r[0] for r in results], "sent": [r[1] == "sent" for r in results],
                 "errors": [r[2] for r in results], "dues": [r[3] for r in results]})
        log.info("push: %s", counts)
        return counts
