"""Task messaging (api §3, domain §10): one thread per task between its poster and worker,
open while the task is ACCEPTED, PROOF_SUBMITTED or DISPUTED and read-only afterwards.
The triggers message_requires_active_task (HX801) and message_sender_is_participant (HX802)
guard the same rules below us."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hustlexp.domain import MessageType, ModerationStatus, TaskState
from hustlexp.errors import Conflict, Forbidden, NotFound, RateLimited, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, one, page_params, returns_result, trim_page
from hustlexp.services.notification import load_preferences
from hustlexp.services.user import parse_uuid, require_active

OPEN_FOR_MESSAGES = (TaskState.ACCEPTED, TaskState.PROOF_SUBMITTED, TaskState.DISPUTED)

MAX_TEXT = 500
MAX_PHOTOS = 3
PREVIEW_CHARS = 100
PER_TASK_PER_HOUR = 10
PER_DAY = 100
PHOTOS_PER_DAY = 50
LOCATION_EVERY = timedelta(minutes=15)
LOCATION_TTL = timedelta(minutes=15)

# AUTO messages: the template key and the text sent when the sender adds none of their own.
TEMPLATES = {
    "on_my_way": "On my way!",
    "running_late": "Running a little late. I'll be there soon.",
    "completed": "All done! Submitting my proof now.",
    "need_clarification": "Quick question about the task. Could you clarify a detail?",
    "photo_request": "Could you send a photo to help me get this right?",
}

# Moderation v1 (api §3 rec): regular expressions, then approve. Links block a message;
# phone numbers and e-mail addresses pass with a flag. E-mail addresses are taken out
# before looking for links, so "sam@mail.com" is not read as the link "mail.com".
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_LINK = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|co|app|me|ly|gg|xyz|info|biz|us|dev|link|site|shop"
    r"|tv|to)\b", re.IGNORECASE)
_PHONE = re.compile(r"(?:\+?\d[\s().-]{0,3}){10,}")


def moderate(text: str | None) -> tuple[ModerationStatus, list[str]]:
    """(status, flags) for a message's text."""
    if not text:
        return ModerationStatus.APPROVED, []
    flags = []
    without_emails = _EMAIL.sub(" ", text)
    if _LINK.search(without_emails):
        return ModerationStatus.QUARANTINED, ["link"]
    if _PHONE.search(text):
        flags.append("phone")
    if without_emails != text:
        flags.append("email")
    return ModerationStatus.APPROVED, flags


def delivery_status(moderation_status: str) -> str:
    """What the sender is told: sent, pending_moderation or blocked."""
    if moderation_status == ModerationStatus.APPROVED:
        return "sent"
    if moderation_status == ModerationStatus.QUARANTINED:
        return "blocked"
    return "pending_moderation"


def message_item(row: dict[str, Any], now: datetime, *, hide_read: bool = False) -> dict[str, Any]:
    """A message as the API shows it. Photo keys are storage keys; the API signs them.
    A shared location disappears once it expires."""
    location = None
    if row["location_latitude"] is not None and (row["location_expires_at"] is None
                                                 or row["location_expires_at"] > now):
        location = {"lat": float(row["location_latitude"]), "lng": float(row["location_longitude"]),
                    "expires_at": row["location_expires_at"]}
    return {
        "id": row["id"], "task_id": row["task_id"], "sender_id": row["sender_id"],
        "receiver_id": row["receiver_id"], "message_type": row["message_type"], "content": row["content"],
        "auto_message_template": row["auto_message_template"],
        "photo_keys": list(row["photo_urls"] or []), "photo_count": row["photo_count"],
        "location": location, "read_at": None if hide_read else row["read_at"],
        "created_at": row["created_at"], "status": delivery_status(row["moderation_status"]),
    }


# Seconds a message photo's signed URL stays valid (STORAGE_SPEC §5.2).
PHOTO_URL_TTL = 3600


def _retry_after(free_at: datetime, now: datetime) -> int:
    return max(1, math.ceil((free_at - now).total_seconds()))


class MessagingService(Service):
    @returns_result
    def get_thread(self, task_id: Any, user_id: Any, *, limit: int | None = 50,
                   before: Any = None) -> dict[str, Any]:
        """A page of the task's thread, newest first: {messages, has_more, task_state, can_send}.
        `before` is the id of the oldest message already shown. Participants see what they
        sent and the approved messages they received; an admin sees everything."""
        limit, _ = page_params(limit, 0, default=50, maximum=100)
        viewer = parse_uuid(user_id)
        now = self.s.clock()
        with self.db.transaction() as conn:
            task = self._task(conn, task_id)
            participant = viewer is not None and viewer in (task["poster_id"], task["worker_id"])
            if not participant and (viewer is None or audit.admin_role(conn, viewer) is None):
                raise Forbidden("Only the task's poster and worker can read this thread.", code="HX802")
            cursor = self._cursor(conn, task["id"], before)
            rows = conn.execute("""
                SELECT * FROM task_messages
                 WHERE task_id = %(task)s AND deleted_at IS NULL
                   AND (%(admin)s OR sender_id = %(viewer)s
                        OR (receiver_id = %(viewer)s AND moderation_status = 'approved'))
                   AND (%(c_at)s::timestamptz IS NULL OR (created_at, id) < (%(c_at)s, %(c_id)s::uuid))
                 ORDER BY created_at DESC, id DESC
                 LIMIT %(limit)s""", {
                "task": task["id"], "admin": not participant, "viewer": viewer,
                "c_at": cursor["created_at"] if cursor else None, "c_id": cursor["id"] if cursor else None,
                "limit": limit + 1}).fetchall()
            hide_receipts = False
            if participant:
                other = task["worker_id"] if viewer == task["poster_id"] else task["poster_id"]
                # The receiver may switch read receipts off: their readers then see "delivered".
                hide_receipts = other is not None and not load_preferences(conn, other)["read_receipts"]
        page, has_more = trim_page(rows, limit)
        return {
            "messages": [self._with_photo_urls(message_item(r, now, hide_read=hide_receipts
                                                            and r["sender_id"] == viewer))
                         for r in page],
            "has_more": has_more,
            "task_state": task["state"],
            "can_send": participant and task["state"] in OPEN_FOR_MESSAGES,
        }

    @returns_result
    def send(self, task_id: Any, sender_id: Any, *, message_type: str, content: str | None = None,
             auto_message_template: str | None = None, photo_keys: Any = None,
             location: Any = None) -> dict[str, Any]:
        """Send a message to the task's other participant. Returns it with `status`: sent,
        pending_moderation or blocked (stored but never delivered). A delivered message
        notifies the receiver (NEW_MESSAGE)."""
        payload = self._payload(message_type, content, auto_message_template, photo_keys, location)
        status, flags = moderate(payload["content"])
        now = self.s.clock()
        with self.db.transaction() as conn:
            # FOR SHARE: the task cannot leave its state (or change hands) until we commit.
            task = self._task(conn, task_id, lock=True)
            sid = parse_uuid(sender_id)
            if sid is None or sid not in (task["poster_id"], task["worker_id"]):
                raise Forbidden("Only the task's poster and worker can message each other.", code="HX802")
            sender = require_active(conn, sid)
            if task["state"] not in OPEN_FOR_MESSAGES:
                raise Conflict("Messages can be sent only while the task is in progress.", code="HX801")
            if payload["message_type"] == MessageType.LOCATION and task["state"] != TaskState.ACCEPTED:
                raise Conflict("A location can be shared only while the task is accepted.", code="HX801")
            receiver = task["worker_id"] if sid == task["poster_id"] else task["poster_id"]
            # One sender's sends run one at a time, so two at once can't both slip under a limit.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"messages:{sid}",))
            self._check_limits(conn, sid, task["id"], payload, now)

            if payload["photos"]:
                # Only the sender's own confirmed uploads for this task; each becomes evidence.
                self.s.uploads.attach(conn, sid, task["id"], payload["photos"], bucket="messages",
                                      field="photo_keys")
            lat, lng = payload["location"] or (None, None)
            row = one(conn, """
                INSERT INTO task_messages (task_id, sender_id, receiver_id, message_type, content,
                                           auto_message_template, photo_urls, photo_count,
                                           location_latitude, location_longitude, location_expires_at,
                                           moderation_status, moderation_flags, created_at)
                VALUES (%(task)s, %(sender)s, %(receiver)s, %(type)s, %(content)s, %(template)s,
                        %(photos)s, %(photo_count)s, %(lat)s, %(lng)s, %(loc_expires)s, %(status)s,
                        %(flags)s, %(now)s)
                RETURNING *""", {
                "task": task["id"], "sender": sid, "receiver": receiver, "type": payload["message_type"],
                "content": payload["content"], "template": payload["template"],
                "photos": payload["photos"], "photo_count": len(payload["photos"] or []),
                "lat": lat, "lng": lng, "loc_expires": now + LOCATION_TTL if lat is not None else None,
                "status": status.value, "flags": flags or None, "now": now})
            assert row is not None
            if status == ModerationStatus.APPROVED:
                self.s.notifications.notify(receiver, "NEW_MESSAGE", task_id=task["id"], metadata={
                    "message_id": str(row["id"]), "sender_id": str(sid), "sender_name": sender["full_name"],
                    "message_type": row["message_type"], "preview": self._preview(row)}).unwrap()
            return self._with_photo_urls(message_item(row, now))

    def _with_photo_urls(self, item: dict[str, Any]) -> dict[str, Any]:
        """Message photos are private: the thread hands its readers URLs signed for an hour
        (MESSAGING_SPEC photo_urls), never the bucket's address."""
        storage = self.s.storage
        return item | {"photo_urls": [storage.presign_get(k, PHOTO_URL_TTL) for k in item["photo_keys"]]}

    @returns_result
    def mark_read(self, task_id: Any, user_id: Any, message_ids: Any) -> dict[str, int]:
        """Mark messages the caller received (and could see) as read: {marked_count}."""
        if isinstance(message_ids, str | bytes) or not isinstance(message_ids, list | tuple):
            raise ValidationError("message_ids must be a list", details={"message_ids": ["list"]})
        if not 1 <= len(message_ids) <= 500:
            raise ValidationError("send 1 to 500 message ids", details={"message_ids": ["1..500"]})
        ids = [parse_uuid(m) for m in message_ids]
        if any(i is None for i in ids):
            raise ValidationError("message ids must be UUIDs", details={"message_ids": ["UUIDs"]})
        reader = parse_uuid(user_id)
        with self.db.transaction() as conn:
            task = self._task(conn, task_id)
            if reader is None or reader not in (task["poster_id"], task["worker_id"]):
                raise Forbidden("Only the task's poster and worker can read this thread.", code="HX802")
            cur = conn.execute("""
                UPDATE task_messages SET read_at = greatest(%s, created_at)
                 WHERE task_id = %s AND receiver_id = %s AND id = ANY(%s::uuid[])
                   AND read_at IS NULL AND deleted_at IS NULL AND moderation_status = 'approved'""",
                (self.s.clock(), task["id"], reader, ids))
            return {"marked_count": int(cur.rowcount)}

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _task(conn: Any, task_id: Any, *, lock: bool = False) -> dict[str, Any]:
        tid = parse_uuid(task_id)
        query = ("SELECT id, state, poster_id, worker_id FROM tasks WHERE id = %s FOR SHARE" if lock
                 else "SELECT id, state, poster_id, worker_id FROM tasks WHERE id = %s")
        task = one(conn, query, (tid,)) if tid is not None else None
        if task is None:
            raise NotFound("No such task.")
        return task

    @staticmethod
    def _cursor(conn: Any, task_id: UUID, before: Any) -> dict[str, Any] | None:
        if before is None:
            return None
        mid = parse_uuid(before)
        row = one(conn, "SELECT id, created_at FROM task_messages WHERE id = %s AND task_id = %s",
                  (mid, task_id)) if mid is not None else None
        if row is None:
            raise ValidationError("unknown message cursor", details={"before": ["a message id of this thread"]})
        return row

    @staticmethod
    def _payload(message_type: Any, content: Any, template: Any, photo_keys: Any,
                 location: Any) -> dict[str, Any]:
        """The checked message: type, content, template, photos, (lat, lng)."""
        if not isinstance(message_type, str) or message_type not in MessageType.__members__:
            raise ValidationError("unknown message type",
                                  details={"message_type": [", ".join(MessageType.__members__)]})
        kind = MessageType(message_type)
        extras = {"auto_message_template": (template, kind == MessageType.AUTO),
                  "photo_keys": (photo_keys, kind == MessageType.PHOTO),
                  "location": (location, kind == MessageType.LOCATION)}
        stray = {name: ["not allowed for this message type"] for name, (value, allowed) in extras.items()
                 if value is not None and not allowed}
        if content is not None and kind in (MessageType.PHOTO, MessageType.LOCATION):
            stray["content"] = ["not allowed for this message type"]
        if stray:
            raise ValidationError("fields that do not fit the message type", details=stray)
        if content is not None and not isinstance(content, str):
            raise ValidationError("content must be text", details={"content": ["text"]})

        payload: dict[str, Any] = {"message_type": kind.value, "content": None, "template": None,
                                   "photos": None, "location": None}
        if kind == MessageType.AUTO:
            if template not in TEMPLATES:
                raise ValidationError("unknown message template",
                                      details={"auto_message_template": [", ".join(TEMPLATES)]})
            payload["template"] = template
            content = content if content is not None and content.strip() else TEMPLATES[template]
        if kind in (MessageType.TEXT, MessageType.AUTO):
            if content is None or not content.strip():
                raise ValidationError("a message needs text", details={"content": ["required"]})
            if len(content) > MAX_TEXT:
                raise ValidationError(f"a message holds at most {MAX_TEXT} characters", code="HX804",
                                      details={"content": [f"at most {MAX_TEXT} characters"]})
            payload["content"] = content
        elif kind == MessageType.PHOTO:
            if not isinstance(photo_keys, list | tuple) or not 1 <= len(photo_keys) <= MAX_PHOTOS:
                raise ValidationError(f"a photo message holds 1 to {MAX_PHOTOS} photos", code="HX803",
                                      details={"photo_keys": [f"1 to {MAX_PHOTOS} keys"]})
            if not all(isinstance(k, str) and 1 <= len(k) <= 500 and k.strip() == k for k in photo_keys):
                raise ValidationError("invalid photo key", details={"photo_keys": ["storage keys"]})
            payload["photos"] = list(photo_keys)
        else:
            payload["location"] = MessagingService._location(location)
        return payload

    @staticmethod
    def _location(location: Any) -> tuple[Decimal, Decimal]:
        def coordinate(value: Any, bound: int) -> Decimal | None:
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                return None
            number = Decimal(str(value))
            if not number.is_finite() or abs(number) > bound:
                return None
            return number.quantize(Decimal("0.00000001"))

        lat = coordinate(location.get("lat"), 90) if isinstance(location, dict) else None
        lng = coordinate(location.get("lng"), 180) if isinstance(location, dict) else None
        if lat is None or lng is None:
            raise ValidationError("a location is {lat, lng} in degrees",
                                  details={"location": ["lat -90..90 and lng -180..180"]})
        return lat, lng

    @staticmethod
    def _check_limits(conn: Any, sender: UUID, task_id: UUID, payload: dict[str, Any], now: datetime) -> None:
        """10 per hour per task, 100 messages and 50 photos per day, one location per 15
        minutes per task; all rolling windows, blocked messages included."""
        day = conn.execute("""
            SELECT task_id, message_type, photo_count, created_at FROM task_messages
             WHERE sender_id = %s AND created_at > %s AND created_at <= %s
             ORDER BY created_at""", (sender, now - timedelta(days=1), now)).fetchall()
        in_task = [r for r in day if r["task_id"] == task_id]
        hour = [r for r in in_task if r["created_at"] > now - timedelta(hours=1)]
        if len(hour) >= PER_TASK_PER_HOUR:
            free = hour[-PER_TASK_PER_HOUR]["created_at"] + timedelta(hours=1)
            raise RateLimited("Too many messages on this task; wait a little.",
                              retry_after=_retry_after(free, now), limit=PER_TASK_PER_HOUR, window=3600,
                              details={"limit": "10 per hour per task"})
        if len(day) >= PER_DAY:
            free = day[-PER_DAY]["created_at"] + timedelta(days=1)
            raise RateLimited("Daily message limit reached.", retry_after=_retry_after(free, now),
                              limit=PER_DAY, window=86400,
                              details={"limit": "100 messages per day"})
        wanted = len(payload["photos"] or [])
        if wanted:
            used = sum(r["photo_count"] for r in day)
            if used + wanted > PHOTOS_PER_DAY:
                free = now + timedelta(days=1)
                for r in day:
                    used -= r["photo_count"]
                    if used + wanted <= PHOTOS_PER_DAY:
                        free = r["created_at"] + timedelta(days=1)
                        break
                raise RateLimited("Daily photo limit reached.", retry_after=_retry_after(free, now),
                                  limit=PHOTOS_PER_DAY, window=86400,
                                  details={"limit": "50 photos per day"})
        if payload["message_type"] == MessageType.LOCATION:
            shared = [r for r in in_task if r["message_type"] == MessageType.LOCATION
                      and r["created_at"] > now - LOCATION_EVERY]
            if shared:
                free = shared[-1]["created_at"] + LOCATION_EVERY
                raise RateLimited("A location can be shared once every 15 minutes.",
                                  retry_after=_retry_after(free, now), limit=1,
                                  window=int(LOCATION_EVERY.total_seconds()),
                                  details={"limit": "1 location per 15 minutes"})

    @staticmethod
    def _preview(row: dict[str, Any]) -> str:
        if row["message_type"] == MessageType.PHOTO:
            return "Sent a photo" if row["photo_count"] == 1 else f"Sent {row['photo_count']} photos"
        if row["message_type"] == MessageType.LOCATION:
            return "Shared their location"
        text: str = row["content"] or ""
        return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"

