"""Retention: what we stop keeping, and when. Each rule is one pass the job queue runs on a
schedule (hustlexp.jobs). A pass removes at most `max_rows` rows, in batches that each
commit on their own (short locks; SKIP LOCKED lets two workers share a backlog), so it is
bounded, idempotent and safe to run twice at once. It logs what it removed and returns the
counts. Ledgers (xp_ledger, trust_ledger, badges, admin_actions, money_outbox) are never
touched: nothing here reads them.

Rules (facts: NOTIFICATION_SPEC NOTIF-5, MESSAGING_SPEC §7, STORAGE_SPEC §7, Stripe's webhook
retry window):
- notifications        30 days after creation, deleted;
- message locations    coordinates cleared once their share has expired (15 min TTL);
- messages             deleted with their photos 90 days after the task ended;
- proof photos         soft-deleted (deleted_at stamped, object removed) 90 days after the
                       task ended;
- Stripe events        processed-event ids dropped after Stripe's 3-day retry window;
- stale uploads        upload rows (and their objects) never confirmed within the upload's
                       window, or confirmed and never used by a message or dispute within 24 h.
A task with a dispute that is not resolved keeps its messages and proof photos: they are its
evidence."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from psycopg import sql

from hustlexp.services.base import Service, returns_result

log = logging.getLogger("hustlexp.retention")

NOTIFICATION_TTL = timedelta(days=30)
TASK_ARCHIVE_TTL = timedelta(days=90)
STRIPE_RETRY_WINDOW = timedelta(days=3)
BATCH = 500
MAX_ROWS_PER_RUN = 5000

# A task whose evidence may go: ended (terminal) before %(cutoff)s, and no dispute still open.
_ENDED_BEFORE = sql.SQL("""t.state IN ('COMPLETED', 'CANCELLED', 'EXPIRED')
   AND coalesce(t.completed_at, t.cancelled_at, t.expired_at, t.updated_at) < %(cutoff)s
   AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.task_id = t.id AND d.state <> 'RESOLVED')""")


class RetentionService(Service):
    @returns_result
    def purge_notifications(self, max_rows: int = MAX_ROWS_PER_RUN) -> dict[str, Any]:
        cutoff = self.s.clock() - NOTIFICATION_TTL
        return self._batched("notifications", max_rows, lambda conn, n: conn.execute("""
            DELETE FROM notifications WHERE id IN (
                SELECT id FROM notifications WHERE created_at < %(cutoff)s
                 ORDER BY created_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)
            RETURNING id""", {"cutoff": cutoff, "n": n}).fetchall())

    @returns_result
    def purge_message_locations(self, max_rows: int = MAX_ROWS_PER_RUN) -> dict[str, Any]:
        now = self.s.clock()
        return self._batched("message locations", max_rows, lambda conn, n: conn.execute("""
            UPDATE task_messages SET location_latitude = NULL, location_longitude = NULL
             WHERE id IN (SELECT id FROM task_messages
                           WHERE location_latitude IS NOT NULL AND location_expires_at < %(now)s
                           ORDER BY location_expires_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)
            RETURNING id""", {"now": now, "n": n}).fetchall())

    @returns_result
    def purge_messages(self, max_rows: int = MAX_ROWS_PER_RUN) -> dict[str, Any]:
        cutoff = self.s.clock() - TASK_ARCHIVE_TTL
        photos: list[str] = []

        def batch(conn: Any, n: int) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = conn.execute(sql.SQL("""
                DELETE FROM task_messages WHERE id IN (
                    SELECT m.id FROM task_messages m JOIN tasks t ON t.id = m.task_id
                     WHERE {ended}
                     LIMIT %(n)s FOR UPDATE OF m SKIP LOCKED)
                RETURNING id, photo_urls""").format(ended=_ENDED_BEFORE), {"cutoff": cutoff, "n": n}).fetchall()
            keys = [k for r in rows for k in (r["photo_urls"] or [])]
            if keys:  # the photos' evidence rows and upload records go with them
                conn.execute("DELETE FROM evidence WHERE storage_key = ANY(%s) AND dispute_id IS NULL", (keys,))
                conn.execute("DELETE FROM uploads WHERE storage_key = ANY(%s)", (keys,))
            photos.extend(keys)
            self._delete_files_after_commit(keys)
            return rows

        counts = self._batched("messages", max_rows, batch)
        return counts | {"photos": len(photos)}

    @returns_result
    def purge_proof_photos(self, max_rows: int = MAX_ROWS_PER_RUN) -> dict[str, Any]:
        cutoff, now = self.s.clock() - TASK_ARCHIVE_TTL, self.s.clock()

        def batch(conn: Any, n: int) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = conn.execute(sql.SQL("""
                UPDATE proof_photos SET deleted_at = %(now)s, location_lat = NULL, location_lng = NULL,
                       camera_make = NULL, camera_model = NULL WHERE id IN (
                    SELECT ph.id FROM proof_photos ph JOIN proofs p ON p.id = ph.proof_id
                      JOIN tasks t ON t.id = p.task_id
                     WHERE ph.deleted_at IS NULL AND {ended}
                     LIMIT %(n)s FOR UPDATE OF ph SKIP LOCKED)
                RETURNING id, storage_key""").format(ended=_ENDED_BEFORE),
                {"cutoff": cutoff, "now": now, "n": n}).fetchall()
            self._delete_files_after_commit([r["storage_key"] for r in rows])
            return rows

        return self._batched("proof photos", max_rows, batch)

    @returns_result
    def purge_stripe_events(self, max_rows: int = MAX_ROWS_PER_RUN) -> dict[str, Any]:
        cutoff = self.s.clock() - STRIPE_RETRY_WINDOW
        return self._batched("processed Stripe events", max_rows, lambda conn, n: conn.execute("""
            DELETE FROM processed_stripe_events WHERE event_id IN (
                SELECT event_id FROM processed_stripe_events WHERE processed_at < %(cutoff)s
                 ORDER BY processed_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)
            RETURNING event_id AS id""", {"cutoff": cutoff, "n": n}).fetchall())

    @returns_result
    def purge_upload_intents(self, max_rows: int = MAX_ROWS_PER_RUN) -> dict[str, Any]:
        """Uploads that stopped waiting (expires_at passed) before they were attached: intents
        never confirmed, and confirmed photos no message or dispute used. Their objects go too
        (an intent's PUT may have landed without a confirm)."""
        now = self.s.clock()

        def batch(conn: Any, n: int) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = conn.execute("""
                DELETE FROM uploads WHERE id IN (
                    SELECT id FROM uploads WHERE state <> 'ATTACHED' AND expires_at < %(now)s
                     ORDER BY expires_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)
                RETURNING id, storage_key""", {"now": now, "n": n}).fetchall()
            self._delete_files_after_commit([r["storage_key"] for r in rows])
            return rows

        return self._batched("stale uploads", max_rows, batch)

    # -- helpers ---------------------------------------------------------------

    def _batched(self, what: str, max_rows: int, step: Callable[[Any, int], list[dict[str, Any]]]
                 ) -> dict[str, Any]:
        """Run `step(conn, n)` in its own transaction until it removes fewer than it may, or
        max_rows are done. Returns {removed, batches}."""
        removed = batches = 0
        while removed < max_rows:
            n = min(BATCH, max_rows - removed)
            with self.db.transaction() as conn:
                rows = step(conn, n)
            batches += 1
            removed += len(rows)
            if rows:
                log.info("retention: removed %d %s (first %s)", len(rows), what, rows[0]["id"])
            if len(rows) < n:
                break
        log.info("retention: %s pass done, %d removed in %d batches", what, removed, batches)
        return {"removed": removed, "batches": batches}
