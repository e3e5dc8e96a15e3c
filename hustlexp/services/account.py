"""The account's standing and the owner's data rights.

- Suspension (admins): a suspended user's token is refused (403 ACCOUNT_SUSPENDED); their OPEN
  tasks are cancelled and refunded at once, their ACCEPTED tasks flagged for an admin's review
  (the other party is told).
- Deletion (the owner, PRODUCT_SPEC §16.4): refused while a task, escrow or payout of theirs is
  live; otherwise the account is CLOSED at once and anonymised by a job after a 7-day grace
  (`resume` inside it restores the account). Identity lives in `users` alone: the ledgers
  (xp_ledger, trust_ledger, badges, admin_actions, money_outbox) name people by id only, so
  scrubbing the users row, plus deleting what the person wrote or uploaded, anonymises them
  without touching one ledger row. Money and XP totals stay exactly as they were.
- Export (the owner, §16.3): everything we hold about them as one JSON document, streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hustlexp.domain import LIVE_TASK_STATES, AccountStatus
from hustlexp.errors import AccountSuspended, Conflict, Forbidden, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, about, one, returns_result
from hustlexp.services.user import DELETION_GRACE, missing_user, parse_uuid

LIVE_ESCROW_STATES = ("PENDING", "FUNDED", "LOCKED_DISPUTE")
LIVE_MONEY_STATUSES = ("PENDING", "PROCESSING")
ANONYMIZE_BATCH = 100

# What the export holds beyond the profile: (section, query over %(id)s). Each streams in order.
EXPORT_SECTIONS: tuple[tuple[str, str], ...] = (
    ("tasks", "SELECT * FROM tasks WHERE poster_id = %(id)s OR worker_id = %(id)s ORDER BY created_at"),
    ("escrows", "SELECT e.* FROM escrows e JOIN tasks t ON t.id = e.task_id "
                "WHERE t.poster_id = %(id)s OR t.worker_id = %(id)s ORDER BY e.created_at"),
    ("proofs", "SELECT * FROM proofs WHERE submitter_id = %(id)s ORDER BY created_at"),
    ("messages", "SELECT * FROM task_messages WHERE sender_id = %(id)s OR receiver_id = %(id)s "
                 "ORDER BY created_at"),
    ("disputes", "SELECT * FROM disputes WHERE poster_id = %(id)s OR worker_id = %(id)s ORDER BY created_at"),
    ("xp_ledger", "SELECT * FROM xp_ledger WHERE user_id = %(id)s ORDER BY awarded_at"),
    ("badges", "SELECT * FROM badges WHERE user_id = %(id)s ORDER BY awarded_at"),
    ("trust_history", "SELECT * FROM trust_ledger WHERE user_id = %(id)s ORDER BY changed_at"),
    ("notifications", "SELECT * FROM notifications WHERE user_id = %(id)s ORDER BY created_at"),
    ("notification_preferences", "SELECT * FROM notification_preferences WHERE user_id = %(id)s"),
    ("push_devices", "SELECT platform, created_at, updated_at FROM push_devices WHERE user_id = %(id)s "
                     "ORDER BY created_at"),
    ("payouts", "SELECT * FROM money_outbox WHERE recipient_id = %(id)s ORDER BY created_at"),
    ("payout_accounts", "SELECT * FROM payout_accounts WHERE user_id = %(id)s ORDER BY created_at"),
    ("ratings", "SELECT NULL LIMIT 0"),  # no ratings are stored yet; the section says so
)
# The users columns that identify a person, scrubbed at anonymisation (the rest are counters
# and settings that identify nobody once these are gone).
_SCRUB_USER = """
    UPDATE users SET email = 'deleted+' || id || '@deleted.invalid', full_name = 'Deleted user',
           firebase_uid = NULL, phone = NULL, avatar_url = NULL, stripe_customer_id = NULL,
           stripe_connect_id = NULL, role_confidence_worker = NULL, role_confidence_poster = NULL,
           inconsistency_flags = NULL, risk_tolerance = NULL, urgency_bias = NULL,
           authority_expectation = NULL, price_sensitivity = NULL, pause_reason = NULL,
           anonymized_at = %(now)s
     WHERE id = %(id)s RETURNING *"""

SUSPENSION_REVIEW = "party_suspended"


def _reason(reason: Any) -> str:
    note = reason.strip() if isinstance(reason, str) else ""
    if not 1 <= len(note) <= 500:
        raise ValidationError("a reason (1-500 characters) is required", details={"reason": ["1..500"]})
    return note


def _locked_user(conn: Any, user_id: Any) -> dict[str, Any]:
    uid = parse_uuid(user_id)
    user = one(conn, "SELECT * FROM users WHERE id = %s FOR UPDATE", (uid,)) if uid else None
    if user is None:
        raise missing_user()
    return user


class AccountService(Service):
    @returns_result
    def suspend(self, admin_id: Any, user_id: Any, *, reason: str) -> dict[str, Any]:
        """Suspend the user (admin with can_ban_users, not themselves). Returns {user_id,
        previous_status, new_status, cancelled_task_ids, review_task_ids, action_id, updated_at}.
        Suspending a suspended user changes nothing but is still recorded."""
        note = _reason(reason)
        with self.db.transaction() as conn:
            admin = audit.require_admin(conn, admin_id, "can_ban_users")
            user = _locked_user(conn, user_id)
            if user["id"] == admin["user_id"]:
                raise Forbidden("Admins cannot suspend themselves.")
            if user["account_status"] == AccountStatus.CLOSED:
                raise Conflict("The account is closed.")
            previous = user["account_status"]
            cancelled: list[Any] = []
            review: list[Any] = []
            if previous != AccountStatus.SUSPENDED:
                user = one(conn, "UPDATE users SET account_status = 'SUSPENDED', suspended_at = %s "
                                 "WHERE id = %s RETURNING *", (self.s.clock(), user["id"])) or user
                open_ids = [r["id"] for r in conn.execute(
                    "SELECT id FROM tasks WHERE poster_id = %s AND state = 'OPEN' ORDER BY created_at",
                    (user["id"],)).fetchall()]
                for task_id in open_ids:
                    self.s.tasks.cancel(task_id, admin_id, reason="poster_suspended").unwrap()
                    cancelled.append(task_id)
                review = self._flag_for_review(conn, user["id"])
            action_id = audit.record(
                conn, admin, "USER_SUSPEND", {"reason": note, "previous_status": previous},
                result="SUCCESS" if previous != AccountStatus.SUSPENDED else "NO_CHANGE",
                result_details={"cancelled_task_ids": [str(t) for t in cancelled],
                                "review_task_ids": [str(t) for t in review]},
                user_id=user["id"])
            return {"user_id": user["id"], "previous_status": previous, "new_status": AccountStatus.SUSPENDED,
                    "cancelled_task_ids": cancelled, "review_task_ids": review, "action_id": action_id,
                    "updated_at": user["updated_at"]}

    @returns_result
    def unsuspend(self, admin_id: Any, user_id: Any, *, reason: str) -> dict[str, Any]:
        """Lift a suspension (admin with can_ban_users): the account is ACTIVE again. Tasks
        flagged for review stay flagged until an admin deals with them."""
        note = _reason(reason)
        with self.db.transaction() as conn:
            admin = audit.require_admin(conn, admin_id, "can_ban_users")
            user = _locked_user(conn, user_id)
            if user["account_status"] != AccountStatus.SUSPENDED:
                raise Conflict(f"The account is {user['account_status']}, not SUSPENDED.")
            user = one(conn, "UPDATE users SET account_status = 'ACTIVE', suspended_at = NULL "
                             "WHERE id = %s RETURNING *", (user["id"],)) or user
            action_id = audit.record(conn, admin, "USER_UNSUSPEND", {"reason": note}, user_id=user["id"])
            return {"user_id": user["id"], "previous_status": AccountStatus.SUSPENDED,
                    "new_status": AccountStatus.ACTIVE, "cancelled_task_ids": [], "review_task_ids": [],
                    "action_id": action_id, "updated_at": user["updated_at"]}

    def _flag_for_review(self, conn: Any, user_id: Any) -> list[Any]:
        """ACCEPTED tasks the user is a party to wait for an admin; the other party is told."""
        tasks = conn.execute(
            """UPDATE tasks SET review_requested_at = %s, review_reason = %s
                WHERE state = 'ACCEPTED' AND (poster_id = %s OR worker_id = %s) AND review_requested_at IS NULL
                RETURNING *""", (self.s.clock(), SUSPENSION_REVIEW, user_id, user_id)).fetchall()
        for task in tasks:
            other = task["worker_id"] if task["poster_id"] == user_id else task["poster_id"]
            self._notify(other, "TASK_UNDER_REVIEW", **about(task))
        return [t["id"] for t in tasks]

    # -- the owner's rights ----------------------------------------------------------

    @returns_result
    def close(self, user_id: Any) -> dict[str, Any]:
        """DELETE /api/users/me. Conflict (with the live items in details) while any task of
        theirs is live, an escrow is held, or money to them is still on its way. Returns
        {id, account_status, closed_at, anonymize_after}."""
        with self.db.transaction() as conn:
            user = _locked_user(conn, user_id)
            if user["account_status"] == AccountStatus.SUSPENDED:
                raise AccountSuspended("Your account is suspended.")
            if user["account_status"] == AccountStatus.CLOSED:
                return self._closed(user)
            live = self._live_items(conn, user["id"])
            if any(live.values()):
                raise Conflict("Finish or cancel your live tasks and payments before deleting the account.",
                               details={k: [str(i) for i in v] for k, v in live.items() if v})
            closed = one(conn, "UPDATE users SET account_status = 'CLOSED', closed_at = %s, paused_at = NULL "
                               "WHERE id = %s RETURNING *", (self.s.clock(), user["id"]))
            assert closed is not None
            # Nothing is pushed to a closed account (its devices are forgotten; the app registers
            # again after a resume); its inbox goes at anonymisation.
            conn.execute("DELETE FROM push_devices WHERE user_id = %s", (user["id"],))
            return self._closed(closed)

    @returns_result
    def anonymize_due(self, limit: int = ANONYMIZE_BATCH) -> dict[str, Any]:
        """The anonymisation job: CLOSED accounts whose grace period is over. {anonymized}."""
        cutoff = self.s.clock() - DELETION_GRACE
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(
                "SELECT id FROM users WHERE account_status = 'CLOSED' AND anonymized_at IS NULL "
                "AND closed_at < %s ORDER BY closed_at LIMIT %s", (cutoff, limit)).fetchall()]
        done = sum(1 for uid in ids if self.anonymize(uid).ok)
        return {"anonymized": done}

    @returns_result
    def anonymize(self, user_id: Any) -> dict[str, Any]:
        """Scrub one closed account whose grace is over (re-checked under the row lock, so two
        jobs and a late `resume` cannot interleave). Idempotent."""
        now = self.s.clock()
        with self.db.transaction() as conn:
            user = _locked_user(conn, user_id)
            if user["anonymized_at"] is not None:
                return {"id": user["id"], "anonymized_at": user["anonymized_at"]}
            if user["account_status"] != AccountStatus.CLOSED or now - user["closed_at"] < DELETION_GRACE:
                raise Conflict("Only a closed account past its grace period is anonymised.")
            uid = user["id"]
            keys: list[str] = []
            for row in conn.execute("DELETE FROM task_messages WHERE sender_id = %s RETURNING photo_urls",
                                    (uid,)).fetchall():
                keys.extend(row["photo_urls"] or [])
            conn.execute("DELETE FROM notifications WHERE user_id = %s", (uid,))
            # The other party's notifications about shared tasks quote their name and words.
            conn.execute("DELETE FROM notifications WHERE task_id IN "
                         "(SELECT id FROM tasks WHERE poster_id = %s OR worker_id = %s)", (uid, uid))
            conn.execute("DELETE FROM notification_preferences WHERE user_id = %s", (uid,))
            conn.execute("DELETE FROM push_devices WHERE user_id = %s", (uid,))
            conn.execute("DELETE FROM admin_roles WHERE user_id = %s", (uid,))
            # Addresses of their tasks; the tasks themselves stay (money and XP point at them).
            conn.execute("UPDATE tasks SET location = NULL, location_lat = NULL, location_lng = NULL, "
                         "idempotency_key = NULL WHERE poster_id = %s", (uid,))
            conn.execute("UPDATE proofs SET description = NULL WHERE submitter_id = %s", (uid,))
            keys.extend(r["storage_key"] for r in conn.execute(
                """UPDATE proof_photos SET deleted_at = %s, location_lat = NULL, location_lng = NULL,
                          camera_make = NULL, camera_model = NULL WHERE deleted_at IS NULL AND proof_id IN
                       (SELECT id FROM proofs WHERE submitter_id = %s) RETURNING storage_key""",
                (now, uid)).fetchall())
            conn.execute("UPDATE disputes SET description = '[removed]' WHERE initiated_by = %s", (uid,))
            keys.extend(r["storage_key"] for r in conn.execute(
                "DELETE FROM evidence WHERE submitted_by = %s RETURNING storage_key", (uid,)).fetchall())
            # Everything they uploaded straight to storage (the avatar among it) goes too.
            keys.extend(r["storage_key"] for r in conn.execute(
                "DELETE FROM uploads WHERE user_id = %s RETURNING storage_key", (uid,)).fetchall())
            scrubbed = one(conn, _SCRUB_USER, {"now": now, "id": uid})
            assert scrubbed is not None
            self._delete_files_after_commit(keys)
            return {"id": uid, "anonymized_at": scrubbed["anonymized_at"]}

    def export(self, user_id: Any) -> Iterator[str]:
        """GET /api/users/me/export: the whole document as JSON text chunks, read in one
        snapshot (REPEATABLE READ) and streamed row by row through a server-side cursor, so a
        large account never sits in memory. The first chunk is produced (and the account
        checked) before the caller starts streaming: raises DomainError like any service."""
        uid = parse_uuid(user_id)
        if uid is None:
            raise missing_user()
        with self.db.pool.connection() as conn:
            profile = one(conn, "SELECT * FROM users WHERE id = %s", (uid,))
        if profile is None:
            raise missing_user()

        def chunks() -> Iterator[str]:
            # Its own connection and transaction (not the request's scope): a stream outlives
            # the view function that returned it.
            with self.db.pool.connection() as conn:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    user = one(conn, "SELECT * FROM users WHERE id = %s", (uid,))
                    yield '{"exported_at": ' + _json(self.s.clock()) + ', "profile": ' + _json(user)
                    for section, query in EXPORT_SECTIONS:
                        yield f', "{section}": ['
                        with conn.cursor(name=f"export_{section}") as cursor:
                            cursor.itersize = 500
                            cursor.execute(query, {"id": uid})
                            for n, row in enumerate(cursor):
                                yield ("," if n else "") + _json(row)
                        yield "]"
                    yield "}"
                finally:
                    conn.execute("ROLLBACK")

        return chunks()

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def _live_items(conn: Any, user_id: Any) -> dict[str, list[Any]]:
        tasks = [r["id"] for r in conn.execute(
            "SELECT id FROM tasks WHERE (poster_id = %s OR worker_id = %s) AND state = ANY(%s) ORDER BY created_at",
            (user_id, user_id, list(LIVE_TASK_STATES))).fetchall()]
        escrows = [r["id"] for r in conn.execute(
            """SELECT e.id FROM escrows e JOIN tasks t ON t.id = e.task_id
                WHERE (t.poster_id = %s OR t.worker_id = %s) AND e.state = ANY(%s)""",
            (user_id, user_id, list(LIVE_ESCROW_STATES))).fetchall()]
        payouts = [r["id"] for r in conn.execute(
            """SELECT m.id FROM money_outbox m JOIN escrows e ON e.id = m.escrow_id JOIN tasks t ON t.id = e.task_id
                WHERE (m.recipient_id = %s OR t.poster_id = %s) AND m.status = ANY(%s)""",
            (user_id, user_id, list(LIVE_MONEY_STATUSES))).fetchall()]
        return {"tasks": tasks, "escrows": escrows, "payouts": payouts}

    @staticmethod
    def _closed(user: dict[str, Any]) -> dict[str, Any]:
        return {"id": user["id"], "account_status": user["account_status"], "closed_at": user["closed_at"],
                "anonymize_after": user["closed_at"] + DELETION_GRACE}


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
