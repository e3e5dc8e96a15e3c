"""ProofService: the worker's evidence and the poster's review (domain §2.3, DESIGN §7.7, §7.13).

A proof is born PENDING, collects 1-5 photos, and is SUBMITTED (review deadline 48 h). The
poster accepts it — which runs the whole completion chain in the same transaction — or
rejects it with a reason, sending the task back to ACCEPTED for a new proof."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hustlexp.domain import ProofState, TaskState
from hustlexp.errors import Conflict, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, about, one, returning, returns_result
from hustlexp.services.images import CheckedImage, check_image

REVIEW_WINDOW = timedelta(hours=48)
MAX_PHOTOS = 5


class ProofService(Service):
    @returns_result
    def create(self, task_id: UUID, worker_id: UUID, *, description: str | None = None) -> dict[str, Any]:
        """The task's PENDING proof, created if there is none (one proof in flight per task)."""
        _check_description(description, required=False)
        with self.db.transaction() as conn:
            task = self._worker_task(conn, task_id, worker_id)
            if task["state"] != TaskState.ACCEPTED:
                raise Conflict(f"proof is added while the task is ACCEPTED; it is {task['state']}")
            existing = one(conn, "SELECT * FROM proofs WHERE task_id = %s AND state = 'PENDING'", (task_id,))
            if existing is not None:
                if description is not None:
                    existing = one(conn, "UPDATE proofs SET description = %s WHERE id = %s RETURNING *",
                                   (description, existing["id"]))
                return self._with_photos(conn, existing)
            proof = one(conn, "INSERT INTO proofs (task_id, submitter_id, description) VALUES (%s, %s, %s) "
                        "RETURNING *", (task_id, worker_id, description))
            return self._with_photos(conn, proof)

    @returns_result
    def upload_photo(self, task_id: UUID, worker_id: UUID, data: bytes, *,
                     capture_time: datetime | None = None) -> dict[str, Any]:
        """The multipart route: decode the image and attach it (attach_photo), which names and
        stores it under proofs/{task}/{proof}/{n}-{random}.{ext}. The random part keeps a
        deleted photo's key from ever naming a later upload."""
        image = check_image(data)
        return self.attach_photo(task_id, worker_id, image, capture_time=capture_time, data=data).unwrap()

    @returns_result
    def attach_photo(self, task_id: UUID, worker_id: UUID, image: CheckedImage, *, key: str | None = None,
                     capture_time: datetime | None = None, data: bytes | None = None) -> dict[str, Any]:
        """Attach a checked image to the task's PENDING proof (created on first photo). Capture
        time, location and camera come from the image's EXIF; `capture_time` from the client
        fills in for a photo without one. `key` names an object already stored (a confirmed
        direct upload); otherwise `data` is stored under a new key."""
        with self.db.transaction() as conn:
            # One transaction: the task locked (as submit locks it, so the two never interleave),
            # then one statement that locks or creates its PENDING proof and files the photo
            # under the lowest free number (a deleted photo leaves a gap the next upload fills).
            task = self._worker_task(conn, task_id, worker_id, lock=True)
            if task["state"] != TaskState.ACCEPTED:
                raise Conflict(f"proof is added while the task is ACCEPTED; it is {task['state']}")
            photo = one(conn, """
                WITH locked AS (
                    SELECT id FROM proofs WHERE task_id = %(task)s AND state = 'PENDING' FOR UPDATE),
                created AS (
                    INSERT INTO proofs (task_id, submitter_id) SELECT %(task)s, %(worker)s
                     WHERE NOT EXISTS (SELECT FROM locked)
                    RETURNING id),
                proof AS (SELECT id FROM locked UNION ALL SELECT id FROM created),
                slot AS (
                    SELECT proof.id AS proof_id,
                           (SELECT min(n) FROM generate_series(1, %(most)s) AS n
                             WHERE n NOT IN (SELECT sequence_number FROM proof_photos
                                              WHERE proof_id = proof.id)) AS n
                      FROM proof)
                INSERT INTO proof_photos (proof_id, storage_key, content_type, file_size_bytes, checksum_sha256,
                                          capture_time, sequence_number, location_lat, location_lng,
                                          camera_make, camera_model)
                SELECT proof_id,
                       coalesce(%(key)s::text, 'proofs/' || %(task)s::text || '/' || proof_id::text || '/'
                                               || n::text || '-' || %(tag)s::text || '.' || %(ext)s::text),
                       %(type)s::text, %(size)s::bigint, %(sha)s::text, %(taken)s::timestamptz, n,
                       %(lat)s::numeric, %(lng)s::numeric, %(make)s::text, %(model)s::text
                  FROM slot WHERE n IS NOT NULL
                RETURNING *""",
                        {"task": task_id, "worker": worker_id, "most": MAX_PHOTOS, "key": key,
                         "tag": uuid4().hex[:12], "ext": image.extension, "type": image.content_type,
                         "size": image.size, "sha": image.sha256, "taken": image.capture_time or capture_time,
                         "lat": image.location_lat, "lng": image.location_lng, "make": image.camera_make,
                         "model": image.camera_model})
            if photo is None:  # the proof already holds MAX_PHOTOS
                raise ValidationError(f"a proof holds at most {MAX_PHOTOS} photos",
                                      details={"file": [f"max {MAX_PHOTOS} photos"]})
            if data is not None:
                # Stored inside the transaction: if the row fails, the file is an orphan under a
                # key nobody references, never a row pointing at nothing.
                self.s.storage.put(photo["storage_key"], data, image.content_type)
            return photo

    @returns_result
    def delete_photo(self, task_id: UUID, photo_id: UUID, worker_id: UUID) -> dict[str, Any]:
        """The worker takes a photo back off the task's PENDING proof; its file goes too."""
        with self.db.transaction() as conn:
            self._worker_task(conn, task_id, worker_id, lock=True)
            photo = one(conn, """SELECT pp.id, pp.storage_key, p.state FROM proof_photos pp
                                   JOIN proofs p ON p.id = pp.proof_id
                                  WHERE pp.id = %s AND p.task_id = %s FOR UPDATE OF p""", (photo_id, task_id))
            if photo is None:
                raise NotFound("photo not found")
            if photo["state"] != ProofState.PENDING:
                raise Conflict(f"photos of a {photo['state']} proof stay as they are")
            conn.execute("DELETE FROM proof_photos WHERE id = %s", (photo_id,))
        # After commit: a failed commit must not leave a row whose file is gone.
        self.s.storage.delete(photo["storage_key"])
        return {"id": photo_id, "deleted": True}

    @returns_result
    def submit(self, task_id: UUID, worker_id: UUID, *, description: str | None = None,
               proof_id: UUID | None = None, photo_keys: Sequence[str] | None = None) -> dict[str, Any]:
        """PENDING -> SUBMITTED (needs 1-5 photos) and task ACCEPTED -> PROOF_SUBMITTED.
        `photo_keys` chooses which uploaded photos the proof keeps; the others are deleted with
        their files. A refused submission changes nothing."""
        _check_description(description, required=False)
        with self.db.transaction() as conn:
            task = self._worker_task(conn, task_id, worker_id, lock=True)
            if task["state"] != TaskState.ACCEPTED:
                raise Conflict(f"proof is submitted while the task is ACCEPTED; it is {task['state']}")
            proof = one(conn, "SELECT * FROM proofs WHERE task_id = %s AND state = 'PENDING' FOR UPDATE",
                        (task_id,))
            if proof is None or (proof_id is not None and proof["id"] != proof_id):
                raise Conflict("there is no pending proof to submit; upload photos first")
            text = description if description is not None else proof["description"]
            _check_description(text, required=True)
            dropped = self._keep_photos(conn, proof["id"], photo_keys)
            now = self.s.clock()
            # Proof and task move in one statement, and only while the proof holds 1 to
            # MAX_PHOTOS photos (counted after _keep_photos dropped the others).
            proof = one(conn, """
                WITH submitted AS (
                    UPDATE proofs SET state = 'SUBMITTED', description = %(text)s, submitted_at = %(now)s,
                                      review_deadline = %(deadline)s
                     WHERE id = %(proof)s
                       AND (SELECT count(*) FROM proof_photos WHERE proof_id = %(proof)s) BETWEEN 1 AND %(most)s
                    RETURNING *),
                moved AS (
                    UPDATE tasks SET state = 'PROOF_SUBMITTED', proof_submitted_at = %(now)s
                     WHERE id = %(task)s AND EXISTS (SELECT FROM submitted))
                SELECT * FROM submitted""", {"text": text, "now": now, "deadline": now + REVIEW_WINDOW,
                                             "proof": proof["id"], "most": MAX_PHOTOS, "task": task_id})
            if proof is None:
                raise ValidationError(f"a proof needs 1 to {MAX_PHOTOS} photos",
                                      details={"photos": [f"1 to {MAX_PHOTOS} photos"]})
            task |= {"state": TaskState.PROOF_SUBMITTED.value, "proof_submitted_at": now}
            self._notify(task["poster_id"], "PROOF_SUBMITTED", **about(task))
            out = {"task": {k: task[k] for k in ("id", "state", "proof_submitted_at")},
                   "proof": self._with_photos(conn, proof)}
        for key in dropped:
            self.s.storage.delete(key)
        return out

    @returns_result
    def accept(self, proof_id: UUID, reviewer_id: UUID | None) -> dict[str, Any]:
        """The poster approves (reviewer None = the 48 h auto-accept). Runs the completion
        chain — task COMPLETED, escrow RELEASED, XP, badges, trust, notifications — in this
        same transaction, as one notification event (the worker is told four to six times)."""
        with self.db.transaction() as conn, self.s.notifications.event():
            proof, task = self._review(conn, proof_id, reviewer_id, "state = 'ACCEPTED'")
            self._notify(task["worker_id"], "PROOF_ACCEPTED", **about(task))
            completion = self.s.tasks.finish(conn, task)
            return {**proof, "task": completion["task"], "escrow": completion["escrow"],
                    "xp_awarded": completion["xp_awarded"]}

    @returns_result
    def reject(self, proof_id: UUID, reviewer_id: UUID, reason: str) -> dict[str, Any]:
        if not isinstance(reason, str) or not len(reason.strip()) >= 1 or len(reason) > 1000:
            raise ValidationError("a rejection needs a reason", details={"reason": ["1 to 1000 characters"]})
        with self.db.transaction() as conn:
            proof, task = self._review(conn, proof_id, reviewer_id, "state = 'REJECTED', rejection_reason = %(reason)s",
                                       {"reason": reason})
            task = returning(conn, "UPDATE tasks SET state = 'ACCEPTED' WHERE id = %s RETURNING *", (task["id"],))
            self._notify(task["worker_id"], "PROOF_REJECTED", **about(task, reason=reason[:200]))
            self.s.trust.check_rejections(task["worker_id"], task_id=task["id"]).unwrap()
            return {**proof, "task": {k: task[k] for k in ("id", "state")}}

    @returns_result
    def auto_accept_due(self, limit: int = 200) -> dict[str, int]:
        """One pass of the auto-accept job: SUBMITTED proofs past their review deadline."""
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(
                "SELECT id FROM proofs WHERE state = 'SUBMITTED' AND review_deadline <= %s "
                "ORDER BY review_deadline LIMIT %s", (self.s.clock(), limit)).fetchall()]
        accepted = 0
        for proof_id in ids:
            if self.accept(proof_id, None).ok:  # a proof another worker already took fails with CONFLICT
                accepted += 1
        return {"due": len(ids), "accepted": accepted}

    # -- reads -----------------------------------------------------------------

    @returns_result
    def get_by_id(self, proof_id: UUID, viewer_id: UUID | None = None) -> dict[str, Any]:
        with self.db.transaction() as conn:
            proof = one(conn, "SELECT * FROM proofs WHERE id = %s", (proof_id,))
            if proof is None:
                raise NotFound("proof not found")
            self._require_participant(conn, proof["task_id"], viewer_id)
            return self._with_photos(conn, proof)

    @returns_result
    def get_by_task_id(self, task_id: UUID, viewer_id: UUID | None = None) -> dict[str, Any]:
        """The task's latest proof with its photos."""
        with self.db.transaction() as conn:
            self._require_participant(conn, task_id, viewer_id)
            proof = one(conn, "SELECT * FROM proofs WHERE task_id = %s ORDER BY created_at DESC LIMIT 1",
                        (task_id,))
            if proof is None:
                raise NotFound("the task has no proof yet")
            return self._with_photos(conn, proof)

    @returns_result
    def read_photo(self, photo_id: UUID, viewer_id: UUID | None = None) -> tuple[bytes, str]:
        with self.db.transaction() as conn:
            # A photo retention removed (deleted_at) is gone for readers too.
            photo = one(conn, """SELECT pp.storage_key, pp.content_type, p.task_id FROM proof_photos pp
                                 JOIN proofs p ON p.id = pp.proof_id
                                WHERE pp.id = %s AND pp.deleted_at IS NULL""", (photo_id,))
            if photo is None:
                raise NotFound("photo not found")
            self._require_participant(conn, photo["task_id"], viewer_id)
        return self.s.storage.get(photo["storage_key"]), photo["content_type"]

    # -- internals -------------------------------------------------------------

    def _worker_task(self, conn: Any, task_id: UUID, worker_id: UUID, *, lock: bool = False) -> dict[str, Any]:
        task = one(conn, "SELECT * FROM tasks WHERE id = %s" + (" FOR UPDATE" if lock else ""), (task_id,))
        if task is None:
            raise NotFound("task not found")
        if task["worker_id"] != worker_id:
            raise Forbidden("only the task's worker submits its proof")
        return task

    def _review(self, conn: Any, proof_id: UUID, reviewer_id: UUID | None, assignments: str,
                params: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Lock task then proof (always in that order, so reviews never deadlock), check the
        reviewer is the poster and the proof is awaiting review, and record the review
        (`assignments` to the proof's row). The proof's UPDATE is its lock and its state check
        in one: it changes the row only while it is SUBMITTED."""
        task = one(conn, "SELECT * FROM tasks WHERE id = (SELECT task_id FROM proofs WHERE id = %s) FOR UPDATE",
                   (proof_id,))
        if task is None:
            raise NotFound("proof not found")
        if reviewer_id is not None and reviewer_id != task["poster_id"]:
            raise Forbidden("only the task's poster reviews its proof")
        proof = None
        if task["state"] == TaskState.PROOF_SUBMITTED:
            proof = one(conn, f"""UPDATE proofs SET {assignments}, reviewed_by = %(reviewer)s, reviewed_at = now()
                                  WHERE id = %(id)s AND state = 'SUBMITTED' RETURNING *""",
                        {"reviewer": reviewer_id, "id": proof_id, **(params or {})})
        if proof is None:
            state = returning(conn, "SELECT state FROM proofs WHERE id = %s", (proof_id,))["state"]
            raise Conflict(f"the proof is {state}, not awaiting review")
        return proof, task

    def _require_participant(self, conn: Any, task_id: UUID, viewer_id: UUID | None) -> None:
        task = one(conn, "SELECT poster_id, worker_id FROM tasks WHERE id = %s", (task_id,))
        if task is None:
            raise NotFound("task not found")
        audit.require_party_or_admin(conn, (task["poster_id"], task["worker_id"]), viewer_id,
                                     "only the task's poster, its worker or an admin can see its proof")

    def _keep_photos(self, conn: Any, proof_id: UUID, keys: Sequence[str] | None) -> list[str]:
        """Delete the proof's photos not named in `keys` (None keeps all); their storage keys."""
        if keys is None:
            return []
        stored = {r["storage_key"] for r in conn.execute(
            "SELECT storage_key FROM proof_photos WHERE proof_id = %s", (proof_id,)).fetchall()}
        unknown = sorted(set(keys) - stored)
        if unknown:
            raise ValidationError("photo_keys must name photos uploaded to this proof",
                                  details={"photo_keys": [f"not a photo of this proof: {k}" for k in unknown]})
        dropped = sorted(stored - set(keys))
        conn.execute("DELETE FROM proof_photos WHERE proof_id = %s AND storage_key = ANY(%s)", (proof_id, dropped))
        return dropped

    def _with_photos(self, conn: Any, proof: dict[str, Any] | None) -> dict[str, Any]:
        assert proof is not None
        photos = conn.execute("""SELECT id, storage_key, content_type, file_size_bytes, checksum_sha256,
                                        sequence_number, capture_time, location_lat, location_lng,
                                        camera_make, camera_model, created_at
                                   FROM proof_photos WHERE proof_id = %s ORDER BY sequence_number""",
                              (proof["id"],)).fetchall()
        return {**proof, "photos": photos}



def _check_description(text: str | None, *, required: bool) -> None:
    if text is None:
        if required:
            raise ValidationError("a proof needs a description", details={"description": ["1 to 2000 characters"]})
        return
    if not text.strip() or len(text) > 2000:
        raise ValidationError("bad description", details={"description": ["1 to 2000 characters"]})
