"""ProofService: the worker's evidence and the poster's review (domain §2.3, DESIGN §7.7, §7.13).

A proof is born PENDING, collects 1-5 photos, and is SUBMITTED (review deadline 48 h). The
poster accepts it — which runs the whole completion chain in the same transaction — or
rejects it with a reason, sending the task back to ACCEPTED for a new proof."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hustlexp.domain import ProofState, TaskState
from hustlexp.errors import Conflict, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, about, one, returning, returns_result
from hustlexp.services.storage import check_image

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
        """Check the image by content, store it under proofs/{task}/{proof}/{n}.{ext}, and
        attach it to the task's PENDING proof (created on first upload)."""
        image = check_image(data)
        proof = self.create(task_id, worker_id).unwrap()
        with self.db.transaction() as conn:
            locked = one(conn, "SELECT * FROM proofs WHERE id = %s FOR UPDATE", (proof["id"],))
            if locked is None or locked["state"] != ProofState.PENDING:
                raise Conflict("photos are added only to a proof that is not yet submitted")
            count = one(conn, "SELECT count(*) AS n, coalesce(max(sequence_number), 0) AS last "
                        "FROM proof_photos WHERE proof_id = %s", (proof["id"],))
            assert count is not None
            if count["n"] >= MAX_PHOTOS:
                raise ValidationError(f"a proof holds at most {MAX_PHOTOS} photos",
                                      details={"file": [f"max {MAX_PHOTOS} photos"]})
            sequence = count["last"] + 1
            key = f"proofs/{task_id}/{proof['id']}/{sequence}.{image.extension}"
            photo = one(conn, """INSERT INTO proof_photos (proof_id, storage_key, content_type, file_size_bytes,
                                     checksum_sha256, capture_time, sequence_number)
                                 VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                        (proof["id"], key, image.content_type, image.size, image.sha256, capture_time, sequence))
            # Stored inside the transaction: if the row fails, the file is an orphan under a key
            # nobody references, never a row pointing at nothing.
            self.s.storage.put(key, data, image.content_type)
            assert photo is not None
            return photo

    @returns_result
    def submit(self, task_id: UUID, worker_id: UUID, *, description: str | None = None,
               proof_id: UUID | None = None) -> dict[str, Any]:
        """PENDING -> SUBMITTED (needs 1-5 photos) and task ACCEPTED -> PROOF_SUBMITTED."""
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
            photos = one(conn, "SELECT count(*) AS n FROM proof_photos WHERE proof_id = %s", (proof["id"],))
            if photos is None or photos["n"] == 0:
                raise ValidationError("a proof needs at least one photo", details={"photos": ["1 to 5 photos"]})
            now = self.s.clock()
            proof = returning(conn, """UPDATE proofs SET state = 'SUBMITTED', description = %s, submitted_at = %s,
                                        review_deadline = %s WHERE id = %s RETURNING *""",
                        (text, now, now + REVIEW_WINDOW, proof["id"]))
            task = returning(conn, "UPDATE tasks SET state = 'PROOF_SUBMITTED', proof_submitted_at = %s "
                             "WHERE id = %s RETURNING *", (now, task_id))
            self._notify(task["poster_id"], "PROOF_SUBMITTED", **about(task))
            return {"task": {k: task[k] for k in ("id", "state", "proof_submitted_at")},
                    "proof": self._with_photos(conn, proof)}

    @returns_result
    def accept(self, proof_id: UUID, reviewer_id: UUID | None) -> dict[str, Any]:
        """The poster approves (reviewer None = the 48 h auto-accept). Runs the completion
        chain — task COMPLETED, escrow RELEASED, XP, badges, trust, notifications — in this
        same transaction."""
        with self.db.transaction() as conn:
            proof, task = self._review_target(conn, proof_id, reviewer_id)
            proof = returning(conn, """UPDATE proofs SET state = 'ACCEPTED', reviewed_by = %s, reviewed_at = now()
                                       WHERE id = %s RETURNING *""", (reviewer_id, proof_id))
            self._notify(task["worker_id"], "PROOF_ACCEPTED", **about(task))
            completion = self.s.tasks.finish(conn, task)
            return {**proof, "task": completion["task"], "escrow": completion["escrow"],
                    "xp_awarded": completion["xp_awarded"]}

    @returns_result
    def reject(self, proof_id: UUID, reviewer_id: UUID, reason: str) -> dict[str, Any]:
        if not isinstance(reason, str) or not len(reason.strip()) >= 1 or len(reason) > 1000:
            raise ValidationError("a rejection needs a reason", details={"reason": ["1 to 1000 characters"]})
        with self.db.transaction() as conn:
            proof, task = self._review_target(conn, proof_id, reviewer_id)
            proof = returning(conn, """UPDATE proofs SET state = 'REJECTED', reviewed_by = %s, reviewed_at = now(),
                                        rejection_reason = %s WHERE id = %s RETURNING *""",
                        (reviewer_id, reason, proof_id))
            task = returning(conn, "UPDATE tasks SET state = 'ACCEPTED' WHERE id = %s RETURNING *", (task["id"],))
            self._notify(task["worker_id"], "PROOF_REJECTED", **about(task, reason=reason[:200]))
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

    def _review_target(self, conn: Any, proof_id: UUID, reviewer_id: UUID | None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Lock task then proof (always in that order, so reviews never deadlock) and check
        the reviewer is the poster and the proof is awaiting review."""
        found = one(conn, "SELECT task_id FROM proofs WHERE id = %s", (proof_id,))
        if found is None:
            raise NotFound("proof not found")
        task = one(conn, "SELECT * FROM tasks WHERE id = %s FOR UPDATE", (found["task_id"],))
        proof = one(conn, "SELECT * FROM proofs WHERE id = %s FOR UPDATE", (proof_id,))
        assert task is not None and proof is not None
        if reviewer_id is not None and reviewer_id != task["poster_id"]:
            raise Forbidden("only the task's poster reviews its proof")
        if proof["state"] != ProofState.SUBMITTED or task["state"] != TaskState.PROOF_SUBMITTED:
            raise Conflict(f"the proof is {proof['state']}, not awaiting review")
        return proof, task

    def _require_participant(self, conn: Any, task_id: UUID, viewer_id: UUID | None) -> None:
        task = one(conn, "SELECT poster_id, worker_id FROM tasks WHERE id = %s", (task_id,))
        if task is None:
            raise NotFound("task not found")
        audit.require_party_or_admin(conn, (task["poster_id"], task["worker_id"]), viewer_id,
                                     "only the task's poster, its worker or an admin can see its proof")

    def _with_photos(self, conn: Any, proof: dict[str, Any] | None) -> dict[str, Any]:
        assert proof is not None
        photos = conn.execute("""SELECT id, storage_key, content_type, file_size_bytes, checksum_sha256,
                                        sequence_number, capture_time, created_at
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
