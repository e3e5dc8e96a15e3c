"""DisputeService: contesting a proof or its rejection, and the admin's ruling (DESIGN §7.5).

Opening locks the escrow (FUNDED -> LOCKED_DISPUTE) and the task (-> DISPUTED). A ruling
ends both: HUSTLER_WINS completes the task and pays the worker (XP as normal); CLIENT_WINS
cancels and refunds; SPLIT cancels, pays the worker's share and refunds the rest (no XP).

The admin console reads the queue of unresolved disputes (oldest first, each with both
parties, the proofs, the chat and the evidence) and may ask a party for more evidence
(state EVIDENCE_REQUESTED, the party notified); a ruling is possible from either state."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hustlexp.domain import DisputeResolution, DisputeState, EscrowState, ProofState, TaskState
from hustlexp.errors import Conflict, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, about, one, page_params, returns_result

REASONS = ("PROOF_INSUFFICIENT", "WORK_NOT_DONE", "QUALITY_ISSUE", "OTHER")


# A SPLIT giving the worker less than this share counts as a lost dispute (trust penalty).
LOST_BELOW_PERCENT = 50


class DisputeService(Service):
    @returns_result
    def create(self, task_id: UUID, user_id: UUID, *, reason: str, description: str,
               evidence_keys: list[str] | None = None) -> dict[str, Any]:
        """Open a dispute. `evidence_keys` name the opener's confirmed `evidence` uploads for this
        task; each becomes an evidence row of the dispute."""
        errors = {}
        if reason not in REASONS:
            errors["reason"] = [f"one of {', '.join(REASONS)}"]
        if not isinstance(description, str) or not description.strip() or len(description) > 2000:
            errors["description"] = ["1 to 2000 characters"]
        if errors:
            raise ValidationError("the dispute is not valid", details=errors)
        with self.db.transaction() as conn:
            task = one(conn, "SELECT * FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
            if task is None:
                raise NotFound("task not found")
            if user_id not in (task["poster_id"], task["worker_id"]):
                raise Forbidden("only the task's poster or worker can open a dispute")
            latest = one(conn, "SELECT state FROM proofs WHERE task_id = %s ORDER BY created_at DESC LIMIT 1",
                         (task_id,))
            after_rejection = task["state"] == TaskState.ACCEPTED and latest is not None \
                and latest["state"] == ProofState.REJECTED
            if task["state"] != TaskState.PROOF_SUBMITTED and not after_rejection:
                raise Conflict("a dispute is opened on a submitted proof or right after a rejection; "
                               f"the task is {task['state']}")
            if one(conn, "SELECT 1 FROM disputes WHERE task_id = %s AND state <> 'RESOLVED'", (task_id,)):
                raise Conflict("the task already has an open dispute")
            escrow = self.s.escrows.get_by_task_id(task_id).unwrap()
            if escrow["state"] != EscrowState.FUNDED:
                raise Conflict(f"the escrow is {escrow['state']}, not FUNDED")
            escrow = self.s.escrows.lock_for_dispute(escrow["id"]).unwrap()
            dispute = one(conn, """INSERT INTO disputes (task_id, escrow_id, initiated_by, poster_id, worker_id,
                                                        reason, description)
                                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                          (task_id, escrow["id"], user_id, task["poster_id"], task["worker_id"], reason,
                           description))
            assert dispute is not None
            if evidence_keys:
                self.s.uploads.attach(conn, user_id, task_id, evidence_keys, bucket="evidence",
                                      field="evidence_urls", dispute_id=dispute["id"])
            task = one(conn, "UPDATE tasks SET state = 'DISPUTED' WHERE id = %s RETURNING *", (task_id,))
            assert task is not None
            other = task["worker_id"] if user_id == task["poster_id"] else task["poster_id"]
            self._notify(other, "DISPUTE_OPENED", **about(task, reason=reason))
            return {"dispute": _out(dispute), "task": {k: task[k] for k in ("id", "state")},
                    "escrow": {k: escrow[k] for k in ("id", "state", "amount")}}

    @returns_result
    def resolve(self, dispute_id: UUID, admin_id: UUID, *, resolution: str, notes: str,
                split_percent: int | None = None) -> dict[str, Any]:
        errors = {}
        if resolution not in DisputeResolution.__members__:
            errors["resolution"] = ["HUSTLER_WINS, CLIENT_WINS or SPLIT"]
        if not isinstance(notes, str) or not notes.strip() or len(notes) > 5000:
            errors["notes"] = ["1 to 5000 characters"]
        if resolution == DisputeResolution.SPLIT and (
                isinstance(split_percent, bool) or not isinstance(split_percent, int) or not 1 <= split_percent <= 99):
            errors["split_percent"] = ["the worker's share, 1 to 99, required for SPLIT"]
        if resolution != DisputeResolution.SPLIT and split_percent is not None:
            errors["split_percent"] = ["only for SPLIT"]
        if errors:
            raise ValidationError("the ruling is not valid", details=errors)
        with self.db.transaction() as conn:
            role = audit.require_admin(conn, admin_id, "can_resolve_disputes")
            found = one(conn, "SELECT task_id FROM disputes WHERE id = %s", (dispute_id,))
            if found is None:
                raise NotFound("dispute not found")
            # Task first, then dispute: the same order as every other path that touches both.
            task = one(conn, "SELECT * FROM tasks WHERE id = %s FOR UPDATE", (found["task_id"],))
            dispute = one(conn, "SELECT * FROM disputes WHERE id = %s FOR UPDATE", (dispute_id,))
            assert task is not None and dispute is not None
            if dispute["state"] == DisputeState.RESOLVED:
                raise Conflict("the dispute is already resolved")
            xp = None
            if resolution == DisputeResolution.HUSTLER_WINS:
                # INV-3 needs an accepted proof: the ruling accepts the latest one, on the record.
                latest = one(conn, "SELECT id FROM proofs WHERE task_id = %s ORDER BY created_at DESC LIMIT 1",
                             (task["id"],))
                if latest is None:
                    raise Conflict("the worker never submitted a proof; HUSTLER_WINS cannot complete the task")
                conn.execute("UPDATE proofs SET state = 'ACCEPTED', reviewed_by = %s, reviewed_at = now() "
                             "WHERE id = %s", (admin_id, latest["id"]))
                completion = self.s.tasks.finish(conn, task)
                task, escrow, xp = completion["task"], completion["escrow"], completion["xp_awarded"]
                action = "RELEASE"
                penalties = (False, True)
            else:
                conn.execute("UPDATE proofs SET state = 'EXPIRED' WHERE task_id = %s AND state IN "
                             "('PENDING', 'SUBMITTED')", (task["id"],))
                task = one(conn, "UPDATE tasks SET state = 'CANCELLED', cancelled_at = now() WHERE id = %s "
                           "RETURNING *", (task["id"],))
                assert task is not None
                if resolution == DisputeResolution.CLIENT_WINS:
                    escrow = self.s.escrows.refund(dispute["escrow_id"], reason="dispute_client_wins").unwrap()
                    action, penalties = "REFUND", (True, False)
                else:
                    assert split_percent is not None
                    escrow = self.s.escrows.split(dispute["escrow_id"], split_percent).unwrap()
                    # Below half for the worker, the worker lost more than they won.
                    action, penalties = "SPLIT", (split_percent < LOST_BELOW_PERCENT, False)
            dispute = one(conn, """UPDATE disputes SET state = 'RESOLVED', resolution = %s, resolution_notes = %s,
                                          resolved_by = %s, resolved_at = now(), outcome_escrow_action = %s,
                                          outcome_worker_penalty = %s, outcome_poster_penalty = %s
                                    WHERE id = %s RETURNING *""",
                          (resolution, notes, admin_id, action, penalties[0], penalties[1], dispute_id))
            assert dispute is not None
            audit.record(conn, role, "DISPUTE_RESOLVE",
                         {"resolution": resolution, "split_percent": split_percent, "notes": notes},
                         result=action, task_id=task["id"], escrow_id=dispute["escrow_id"], dispute_id=dispute_id,
                         result_details={"escrow_state": escrow["state"]})
            for user in (task["poster_id"], task["worker_id"]):
                self._notify(user, "DISPUTE_RESOLVED", **about(task, resolution=resolution))
            if penalties[0]:
                self.s.trust.penalize(task["worker_id"], dispute_id=dispute_id, task_id=task["id"]).unwrap()
            escrow_row = one(conn, "SELECT * FROM escrows WHERE id = %s", (dispute["escrow_id"],))
            return {"dispute": _out(dispute), "task": {k: task[k] for k in ("id", "state")},
                    "escrow": escrow_row, "xp_awarded": xp}

    @returns_result
    def queue(self, admin_id: UUID, *, limit: int | None = 20, offset: int | None = 0) -> dict[str, Any]:
        """Unresolved disputes, oldest first, in full (admin with can_resolve_disputes).
        Returns {disputes, total}."""
        limit, offset = page_params(limit, offset)
        with self.db.transaction() as conn:
            audit.require_admin(conn, admin_id, "can_resolve_disputes")
            total = one(conn, "SELECT count(*) AS n FROM disputes WHERE state <> 'RESOLVED'")
            rows = conn.execute("SELECT * FROM disputes WHERE state <> 'RESOLVED' ORDER BY created_at, id "
                                "LIMIT %s OFFSET %s", (limit, offset)).fetchall()
            return {"disputes": [self._case(conn, d) for d in rows], "total": total["n"] if total else 0}

    @returns_result
    def request_evidence(self, dispute_id: UUID, admin_id: UUID, *, party: str, note: str) -> dict[str, Any]:
        """Ask the poster or the worker for more evidence (admin with can_resolve_disputes): the
        dispute goes to EVIDENCE_REQUESTED naming the party, who is notified."""
        errors = {}
        if party not in ("poster", "worker"):
            errors["party"] = ["poster or worker"]
        if not isinstance(note, str) or not 1 <= len(note.strip()) <= 1000:
            errors["note"] = ["1 to 1000 characters"]
        if errors:
            raise ValidationError("the request is not valid", details=errors)
        with self.db.transaction() as conn:
            role = audit.require_admin(conn, admin_id, "can_resolve_disputes")
            dispute = one(conn, "SELECT * FROM disputes WHERE id = %s FOR UPDATE", (dispute_id,))
            if dispute is None:
                raise NotFound("dispute not found")
            if dispute["state"] == DisputeState.RESOLVED:
                raise Conflict("the dispute is already resolved")
            asked = dispute[f"{party}_id"]
            dispute = one(conn, """UPDATE disputes SET state = 'EVIDENCE_REQUESTED', evidence_requested_from = %s,
                                          evidence_requested_at = %s WHERE id = %s RETURNING *""",
                          (asked, self.s.clock(), dispute_id))
            task = one(conn, "SELECT * FROM tasks WHERE id = %s", (dispute["task_id"],)) if dispute else None
            assert dispute is not None and task is not None
            self._notify(asked, "DISPUTE_EVIDENCE_REQUESTED", **about(task, note=note.strip()))
            action_id = audit.record(conn, role, "DISPUTE_EVIDENCE_REQUEST", {"party": party, "note": note.strip()},
                                     user_id=asked, task_id=task["id"], dispute_id=dispute_id)
            return {**_out(dispute), "action_id": action_id}

    @returns_result
    def get_by_id(self, dispute_id: UUID, viewer_id: UUID | None = None) -> dict[str, Any]:
        with self.db.transaction() as conn:
            dispute = one(conn, "SELECT * FROM disputes WHERE id = %s", (dispute_id,))
            if dispute is None:
                raise NotFound("dispute not found")
            self._require_party_or_admin(conn, dispute, viewer_id)
            return self._detail(conn, dispute)

    @returns_result
    def get_by_task_id(self, task_id: UUID, viewer_id: UUID | None = None) -> dict[str, Any]:
        """The task's current dispute (the open one, else the latest)."""
        with self.db.transaction() as conn:
            if one(conn, "SELECT 1 FROM tasks WHERE id = %s", (task_id,)) is None:
                raise NotFound("task not found")
            dispute = one(conn, "SELECT * FROM disputes WHERE task_id = %s "
                          "ORDER BY (state <> 'RESOLVED') DESC, created_at DESC LIMIT 1", (task_id,))
            if dispute is None:
                raise NotFound("the task has no dispute")
            self._require_party_or_admin(conn, dispute, viewer_id)
            return self._detail(conn, dispute)

    def _require_party_or_admin(self, conn: Any, dispute: dict[str, Any], viewer_id: UUID | None) -> None:
        audit.require_party_or_admin(conn, (dispute["poster_id"], dispute["worker_id"]), viewer_id,
                                     "only the task's poster, its worker or an admin can see its dispute")

    def _detail(self, conn: Any, dispute: dict[str, Any]) -> dict[str, Any]:
        evidence = conn.execute("""SELECT id, submitted_by, evidence_type, storage_key, description, created_at
                                     FROM evidence WHERE dispute_id = %s ORDER BY created_at""",
                                (dispute["id"],)).fetchall()
        return {**_out(dispute), "evidence": evidence}



    def _case(self, conn: Any, dispute: dict[str, Any]) -> dict[str, Any]:
        """A dispute with everything an admin rules on."""
        people = {r["id"]: r for r in conn.execute(
            "SELECT id, full_name, email, trust_tier, account_status FROM users WHERE id = ANY(%s)",
            ([dispute["poster_id"], dispute["worker_id"]],)).fetchall()}
        task = one(conn, "SELECT id, title, description, state, price, created_at, accepted_at, "
                         "proof_submitted_at FROM tasks WHERE id = %s", (dispute["task_id"],))
        escrow = one(conn, "SELECT id, state, amount FROM escrows WHERE id = %s", (dispute["escrow_id"],))
        proofs = conn.execute("SELECT id, state, description, submitted_at, rejection_reason FROM proofs "
                              "WHERE task_id = %s ORDER BY created_at", (dispute["task_id"],)).fetchall()
        photos = conn.execute("""SELECT id, proof_id, content_type, sequence_number, capture_time FROM proof_photos
                                  WHERE proof_id = ANY(%s) AND deleted_at IS NULL ORDER BY sequence_number""",
                              ([p["id"] for p in proofs],)).fetchall()
        messages = conn.execute(
            """SELECT id, sender_id, message_type, content, photo_urls AS photo_keys, moderation_status, created_at
                 FROM task_messages WHERE task_id = %s ORDER BY created_at, id""", (dispute["task_id"],)).fetchall()
        return {**self._detail(conn, dispute), "poster": people.get(dispute["poster_id"]),
                "worker": people.get(dispute["worker_id"]), "task": task, "escrow": escrow,
                "proofs": [{**p, "photos": [ph for ph in photos if ph["proof_id"] == p["id"]]} for p in proofs],
                "messages": messages}


def _out(dispute: dict[str, Any]) -> dict[str, Any]:
    return {**dispute, "opened_by": dispute["initiated_by"]}
