"""TaskService: a task's life from OPEN to COMPLETED, CANCELLED or EXPIRED (domain §2.1).

Every transition locks the task row first and checks its state under the lock, so of N
concurrent attempts exactly one wins and the rest see the new state (409 CONFLICT)."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from hustlexp.domain import EscrowState, TaskState
from hustlexp.errors import Conflict, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, about, one, page_params, returning, returns_result, trim_page
from hustlexp.services.eligibility import update_if_eligible
from hustlexp.services.escrow import worker_payout
from hustlexp.services.notification import Notice
from hustlexp.services.trust import require_eligible
from hustlexp.services.user import missing_user

log = logging.getLogger(__name__)

CATEGORIES = (
    "cleaning", "delivery", "moving", "handyman", "yard_work", "pet_care", "errands", "tech_help",
    "assembly", "tutoring", "event_help", "photography", "personal_assistant", "other",
)
LIVE_MIN_PRICE = 1500  # cents: a LIVE task pays for an immediate start
SORTABLE = {"created_at": "t.created_at", "price": "t.price", "deadline": "t.deadline"}
NULLABLE_SORTS = frozenset({"deadline"})
# What a completion answers about the escrow.
COMPLETION_ESCROW = ("id", "state", "amount", "released_at", "stripe_transfer_id")
ESCROW_COLUMNS = ("id", "task_id", "amount", "state", "refund_amount", "release_amount", "stripe_payment_intent_id",
                  "stripe_transfer_id", "stripe_refund_id", "funded_at", "released_at", "refunded_at", "created_at",
                  "updated_at")
CREATE_FIELDS = ("title", "description", "requirements", "location", "location_lat", "location_lng",
                 "category", "price", "mode", "deadline", "requires_proof", "proof_instructions",
                 "required_trust_tier", "risk_level")


class TaskService(Service):
    # -- create ----------------------------------------------------------------

    @returns_result
    def create(self, poster_id: UUID, *, idempotency_key: str | None = None, **fields: Any) -> dict[str, Any]:
        """Task OPEN + escrow PENDING (amount = price) in one transaction; then, after commit and
        holding no lock, the PaymentIntent. If Stripe is unreachable the task still exists and
        the app asks again through escrow.create_payment_intent.

        With an idempotency_key, a retry (same poster, same key) returns the first task instead
        of posting a second one; the same key with different fields is a CONFLICT."""
        unknown = set(fields) - set(CREATE_FIELDS)
        if unknown:
            raise ValidationError("unknown fields", details={k: ["unknown field"] for k in sorted(unknown)})
        _validate_new_task(fields, self.s.clock())
        values = {k: v for k, v in fields.items() if v is not None}
        row = values | {"poster_id": poster_id, "idempotency_key": idempotency_key}
        # Column names come from CREATE_FIELDS above, never from the request. One statement (atomic
        # on its own, so no BEGIN/COMMIT): the task, only for an ACTIVE poster and a new key, and
        # its escrow. No row back means a paused/unknown poster or a replay: the checked path says which.
        with self.db.one_statement() as conn:
            created = one(conn, _create_sql(tuple(row)), row)
        if created is None:
            with self.db.transaction() as conn:
                self._require_active(conn, poster_id)
                return self._replay(conn, poster_id, idempotency_key, values)
        escrow = {c: created.pop(f"escrow__{c}") for c in ESCROW_COLUMNS}
        task = created
        intent: dict[str, Any] = {"payment_intent_id": None, "client_secret": None}
        result = self.s.escrows.first_intent(escrow, poster_id)
        if result.ok:
            intent = {k: result.unwrap()[k] for k in ("payment_intent_id", "client_secret")}
        else:
            log.warning("task %s created but its PaymentIntent failed: %s", task["id"], result.code)
        return {**task, "escrow_id": escrow["id"], "escrow": escrow, **intent}

    # -- transitions -----------------------------------------------------------

    @returns_result
    def accept(self, task_id: UUID, worker_id: UUID) -> dict[str, Any]:
        with self.db.transaction() as conn:
            # The task locked, with the candidate's tier, in one read.
            task = one(conn, """
                SELECT t.*, u.id AS candidate_id, u.trust_tier AS candidate_trust_tier
                  FROM tasks t LEFT JOIN users u ON u.id = %(worker)s
                 WHERE t.id = %(task)s FOR UPDATE OF t""", {"task": task_id, "worker": worker_id})
            if task is None:
                raise NotFound("task not found")
            if task["state"] != TaskState.OPEN:
                # Who may not see the task learns nothing about it, its state included.
                _require_visible(conn, task, worker_id)
                raise Conflict(f"the task is {task['state']}, no longer OPEN")
            if task["candidate_id"] is None:
                raise missing_user()
            # The feed's own predicate (services/eligibility.py), so the two never disagree, as
            # the condition of the update itself; only a refused worker costs a second read, to
            # say which rule failed.
            tier = task["candidate_trust_tier"]
            accepted = update_if_eligible(conn, task_id, worker_id, tier,
                                          "state = 'ACCEPTED', worker_id = %(user)s, accepted_at = now()")
            if accepted is None:
                require_eligible(conn, task_id, worker_id, tier)
                raise Conflict("the task cannot be accepted now")
            task = accepted
            # Both parties' notifications in one read and one insert (no savepoint: if they
            # fail, the acceptance rolls back with them, as Service._notify does).
            self.s.notifications.record_all(conn, [Notice(task["poster_id"], "TASK_ACCEPTED", **about(task)),
                                                   Notice(worker_id, "TASK_WORKER_ASSIGNED", **about(task))])
            return task

    @returns_result
    def submit_proof(self, task_id: UUID, worker_id: UUID, *, description: str | None = None,
                     proof_id: UUID | None = None, photo_keys: Sequence[str] | None = None) -> dict[str, Any]:
        """ACCEPTED -> PROOF_SUBMITTED: the same as proof.submit, addressed by task."""
        return self.s.proofs.submit(task_id, worker_id, description=description, proof_id=proof_id,
                                    photo_keys=photo_keys).unwrap()

    @returns_result
    def complete(self, task_id: UUID, actor_id: UUID | None) -> dict[str, Any]:
        """The completion chain (DESIGN §7.7): task COMPLETED -> escrow RELEASED -> XP -> badges,
        trust, notifications, in one transaction. Idempotent: a COMPLETED task is returned as is.
        actor_id None is the system (auto-accept)."""
        with self.db.transaction() as conn:
            task = _lock(conn, task_id)
            role = None
            if actor_id is not None and actor_id != task["poster_id"]:
                role = audit.require_admin(conn, actor_id, "can_override_escrow")
            if task["state"] == TaskState.COMPLETED:
                return self._completion(conn, task, xp=None)
            accepted = one(conn, "SELECT id FROM proofs WHERE task_id = %s AND state = 'ACCEPTED'", (task_id,))
            no_proof_needed = not task["requires_proof"] and task["state"] == TaskState.ACCEPTED
            if task["state"] != TaskState.PROOF_SUBMITTED and not no_proof_needed:
                raise Conflict(f"a {task['state']} task cannot be completed")
            if task["requires_proof"] and accepted is None:
                raise Conflict("the task has no accepted proof; approve the proof first", code="HX301")
            if role is not None:
                audit.record(conn, role, "TASK_COMPLETE", {"proof_id": str(accepted["id"]) if accepted else None},
                             task_id=task_id, user_id=task["worker_id"])
            return self.finish(conn, task)

    def finish(self, conn: Any, task: dict[str, Any]) -> dict[str, Any]:
        """Run the chain for a task already locked and checked by the caller (proof acceptance,
        dispute ruling, task.complete). Must run inside the caller's transaction; its
        notifications are one event."""
        with self.s.notifications.event():
            task = _update(conn, task["id"], "state = 'COMPLETED', completed_at = now()")
            escrow = self.s.escrows.release_completed(conn, task)
            xp = self.s.xp.award_released(conn, {**escrow, "worker_id": task["worker_id"]})
            payout = worker_payout(escrow["amount"])
            self.s.notifications.record_all(conn, [
                Notice(task["worker_id"], "ESCROW_RELEASED", **about(task, amount=payout)),
                *(Notice(party, "RATING_REQUESTED", **about(task))
                  for party in (task["poster_id"], task["worker_id"]))])
        return {"task": task, "escrow": {k: escrow[k] for k in COMPLETION_ESCROW}, "xp_awarded": _xp_out(xp)}

    @returns_result
    def cancel(self, task_id: UUID, actor_id: UUID, *, reason: str | None = None) -> dict[str, Any]:
        """OPEN/ACCEPTED -> CANCELLED by the poster or an admin; the poster gets everything back."""
        with self.db.transaction() as conn:
            task = _lock(conn, task_id)
            role = None if actor_id == task["poster_id"] else audit.require_admin(conn, actor_id)
            if task["state"] not in (TaskState.OPEN, TaskState.ACCEPTED):
                raise Conflict(f"a {task['state']} task cannot be cancelled")
            task = _update(conn, task_id, "state = 'CANCELLED', cancelled_at = now()")
            escrow = self._close_escrow(conn, task, reason or "task_cancelled")
            if task["worker_id"]:
                self._notify(task["worker_id"], "TASK_CANCELLED", **about(task, reason=reason))
            if role is not None:
                audit.record(conn, role, "TASK_CANCEL", {"reason": reason}, task_id=task_id,
                             escrow_id=escrow["id"])
            return {"task": task, "escrow": escrow}

    @returns_result
    def expire(self, task_id: UUID) -> dict[str, Any]:
        """OPEN past its deadline -> EXPIRED with the escrow closed like a cancellation (job)."""
        with self.db.transaction() as conn:
            task = _lock(conn, task_id)
            if task["state"] != TaskState.OPEN or task["deadline"] is None or task["deadline"] > self.s.clock():
                raise Conflict("only an OPEN task past its deadline expires")
            task = _update(conn, task_id, "state = 'EXPIRED', expired_at = now()")
            escrow = self._close_escrow(conn, task, "task_expired")
            self._notify(task["poster_id"], "TASK_EXPIRED", **about(task))
            return {"task": task, "escrow": escrow}

    @returns_result
    def expire_due(self, limit: int = 200) -> dict[str, Any]:
        """One pass of the expiry job. Safe to run concurrently: each task is re-checked under
        its lock, and one already taken by another worker is skipped."""
        with self.db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(
                "SELECT id FROM tasks WHERE state = 'OPEN' AND deadline < %s ORDER BY deadline LIMIT %s",
                (self.s.clock(), limit)).fetchall()]
            overdue = conn.execute(
                """SELECT t.* FROM tasks t WHERE t.state = 'ACCEPTED' AND t.deadline < %s
                    AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.task_id = t.id
                                       AND n.category = 'TASK_OVERDUE')""",
                (self.s.clock(),)).fetchall()
            for task in overdue:
                self._notify(task["worker_id"], "TASK_OVERDUE", **about(task))
        expired = sum(1 for task_id in ids if self.expire(task_id).ok)
        return {"expired": expired, "overdue_warned": len(overdue)}

    # -- reads -----------------------------------------------------------------

    @returns_result
    def get_by_id(self, task_id: UUID, viewer_id: UUID | None = None) -> dict[str, Any]:
        """The task with poster, worker, escrow and latest-proof summaries. Visible to its
        participants, admins, and anyone while it is OPEN."""
        with self.db.transaction() as conn:
            task = one(conn, "SELECT * FROM tasks WHERE id = %s", (task_id,))
            if task is None:
                raise NotFound("task not found")
            _require_visible(conn, task, viewer_id)
            return self._detail(conn, task)

    @returns_result
    def list(self, viewer_id: UUID | None = None, *, states: list[str] | None = None,
             category: str | None = None, mode: str | None = None, poster_id: UUID | None = None,
             worker_id: UUID | None = None, min_price: int | None = None, max_price: int | None = None,
             sort: str = "created_at", order: str = "desc", limit: int | None = None,
             offset: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """OPEN tasks plus the viewer's own (admins see all), filtered, sorted and paged.

        Keyset paging by default: pass the `next_cursor` of one page to get the next; a page
        costs the same however many tasks match (no count, no skipped rows), and `total` is
        None. With `offset` (older clients) the page is skipped to and `total` counted."""
        if cursor is not None and offset is not None:
            raise ValidationError("use cursor or offset, not both", details={"cursor": ["not with offset"]})
        limit, skip = page_params(limit, offset)
        if sort not in SORTABLE:
            raise ValidationError("bad sort", details={"sort": [f"one of {', '.join(SORTABLE)}"]})
        if order not in ("asc", "desc"):
            raise ValidationError("bad order", details={"order": ["asc or desc"]})
        where: list[str] = ["TRUE"]
        params: dict[str, Any] = {"limit": limit + 1, "offset": skip}
        column = SORTABLE[sort]
        if cursor is not None:
            params["after_value"], params["after_id"] = _read_cursor(cursor, sort, order)
            where.append(_after(column, sort in NULLABLE_SORTS, params["after_value"] is None, order))
        if viewer_id is not None:  # admins see every task
            where.append("(t.state = 'OPEN' OR t.poster_id = %(viewer)s OR t.worker_id = %(viewer)s "
                         "OR EXISTS (SELECT 1 FROM admin_roles a WHERE a.user_id = %(viewer)s))")
            params["viewer"] = viewer_id
        filters = {"states": ("t.state = ANY(%(states)s)", states), "category": ("t.category = %(category)s",
                   category), "mode": ("t.mode = %(mode)s", mode), "poster_id": ("t.poster_id = %(poster_id)s",
                   poster_id), "worker_id": ("t.worker_id = %(worker_id)s", worker_id),
                   "min_price": ("t.price >= %(min_price)s", min_price),
                   "max_price": ("t.price <= %(max_price)s", max_price)}
        for name, (clause, value) in filters.items():
            if value is not None and value != []:
                where.append(clause)
                params[name] = value
        direction = "ASC" if order == "asc" else "DESC"
        # NULLS LAST is ASC's default; spelling it out for a NOT NULL column sorted DESC would
        # stop the (created_at, id) index from answering the page.
        nulls = " NULLS LAST" if sort in NULLABLE_SORTS and direction == "DESC" else ""
        # The WHERE clauses, the sort column and the direction are the constants above; every
        # value the caller sent travels as a parameter. One more row than asked says has_more.
        page = f"""SELECT {_SUMMARY_COLUMNS}, u.full_name AS poster_name, u.avatar_url AS poster_avatar_url,
                          u.trust_tier AS poster_trust_tier, u.is_verified AS poster_is_verified
                     FROM tasks t JOIN users u ON u.id = t.poster_id
                    WHERE {" AND ".join(where)}
                    ORDER BY {column} {direction}{nulls}, t.id {direction}
                    LIMIT %(limit)s OFFSET %(offset)s"""
        total = None
        if offset is None:  # a keyset page: one read, no transaction, no connection check
            rows = self.db.run_repeatable(lambda conn: conn.execute(page, params).fetchall())
        else:  # an offset page counts in the same snapshot
            with self.db.transaction() as conn:
                rows = conn.execute(page, params).fetchall()
                total = returning(conn, f"SELECT count(*) AS n FROM tasks t WHERE {' AND '.join(where)}",
                                  params)["n"]
        rows, has_more = trim_page(rows, limit)
        next_cursor = _write_cursor(sort, order, rows[-1][sort], rows[-1]["id"]) if has_more else None
        return {"tasks": [_summary(r) for r in rows], "total": total, "has_more": has_more,
                "next_cursor": next_cursor, "limit": limit, "offset": skip}

    @returns_result
    def review_queue(self, admin_id: UUID, *, limit: int | None = 20, offset: int | None = 0) -> dict[str, Any]:
        """Live tasks an admin was asked to look at (e.g. a party was suspended), oldest request
        first (any admin). The admin then cancels or lets them run. {tasks, total}."""
        limit, offset = page_params(limit, offset)
        live = "review_requested_at IS NOT NULL AND state NOT IN ('COMPLETED', 'CANCELLED', 'EXPIRED')"
        with self.db.transaction() as conn:
            audit.require_admin(conn, admin_id)
            total = returning(conn, "SELECT count(*) AS n FROM tasks WHERE " + live)["n"]
            rows = conn.execute("SELECT * FROM tasks WHERE " + live + " ORDER BY review_requested_at, id "
                                "LIMIT %s OFFSET %s", (limit, offset)).fetchall()
            return {"tasks": rows, "total": total}

    # -- internals -------------------------------------------------------------

    def _replay(self, conn: Any, poster_id: UUID, key: str | None, values: dict[str, Any]) -> dict[str, Any]:
        task = one(conn, "SELECT * FROM tasks WHERE poster_id = %s AND idempotency_key = %s", (poster_id, key))
        assert task is not None
        differs = sorted(k for k, v in values.items() if k in task and _normal(task[k]) != _normal(v))
        if differs:
            raise Conflict("this Idempotency-Key was used for a different task",
                           details={"idempotency_key": [f"first used with other {', '.join(differs)}"]})
        escrow = one(conn, "SELECT * FROM escrows WHERE task_id = %s", (task["id"],))
        assert escrow is not None
        intent: dict[str, Any] = {"payment_intent_id": escrow["stripe_payment_intent_id"], "client_secret": None}
        if escrow["state"] == EscrowState.PENDING:
            again = self.s.escrows.create_payment_intent(escrow["id"])
            if again.ok:
                intent = {k: again.unwrap()[k] for k in ("payment_intent_id", "client_secret")}
        return {**task, "escrow_id": escrow["id"], "escrow": escrow, **intent, "replayed": True}

    def _close_escrow(self, conn: Any, task: dict[str, Any], reason: str) -> dict[str, Any]:
        """Refund what was paid (or close an unpaid escrow) and retire proofs still in flight."""
        conn.execute("UPDATE proofs SET state = 'EXPIRED' WHERE task_id = %s AND state IN ('PENDING', 'SUBMITTED')",
                     (task["id"],))
        escrow = one(conn, "SELECT id, state FROM escrows WHERE task_id = %s", (task["id"],))
        assert escrow is not None
        refunded = self.s.escrows.refund(escrow["id"], reason=reason).unwrap()
        if escrow["state"] != EscrowState.PENDING:
            self._notify(task["poster_id"], "ESCROW_REFUNDED", **about(task, amount=refunded["amount"]))
        return refunded

    def _completion(self, conn: Any, task: dict[str, Any], *, xp: dict[str, Any] | None) -> dict[str, Any]:
        escrow = one(conn, f"SELECT {', '.join(COMPLETION_ESCROW)} FROM escrows WHERE task_id = %s", (task["id"],))
        if xp is None:
            xp = one(conn, "SELECT * FROM xp_ledger WHERE task_id = %s", (task["id"],))
        return {"task": task, "escrow": escrow, "xp_awarded": _xp_out(xp)}

    def _detail(self, conn: Any, task: dict[str, Any]) -> dict[str, Any]:
        def person(user_id: Any) -> dict[str, Any] | None:
            if user_id is None:
                return None
            return one(conn, "SELECT id, full_name, avatar_url, trust_tier, is_verified FROM users WHERE id = %s",
                       (user_id,))

        escrow = one(conn, "SELECT id, amount, state FROM escrows WHERE task_id = %s", (task["id"],))
        proof = one(conn, "SELECT id, state, submitted_at FROM proofs WHERE task_id = %s "
                    "ORDER BY created_at DESC LIMIT 1", (task["id"],))
        return {**task, "poster": person(task["poster_id"]), "worker": person(task["worker_id"]),
                "escrow": escrow, "proof": proof}

    def _require_active(self, conn: Any, user_id: UUID) -> None:
        from hustlexp.services.user import require_active

        require_active(conn, user_id)



def _require_visible(conn: Any, task: dict[str, Any], viewer_id: UUID | None) -> None:
    """An OPEN task is on the board for everyone; any other only for its poster, its worker and
    admins (403 FORBIDDEN otherwise)."""
    if task["state"] != TaskState.OPEN:
        audit.require_party_or_admin(conn, (task["poster_id"], task["worker_id"]), viewer_id,
                                     "only the task's poster, its worker or an admin can see it")


def _lock(conn: Any, task_id: UUID) -> dict[str, Any]:
    row = one(conn, "SELECT * FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
    if row is None:
        raise NotFound("task not found")
    return row


def _update(conn: Any, task_id: UUID, assignments: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    row = one(conn, f"UPDATE tasks SET {assignments} WHERE id = %(id)s RETURNING *",
              {"id": task_id, **(params or {})})
    assert row is not None
    return row


def _xp_out(xp: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if xp is None else {k: xp[k] for k in (
        "id", "base_xp", "streak_multiplier", "trust_multiplier", "effective_xp", "user_xp_after",
        "user_level_before", "user_level_after") if k in xp}


# What a list row shows (_summary), every sort column among them: only these are fetched.
_SUMMARY_FIELDS = ("id", "title", "category", "price", "state", "mode", "location", "deadline", "created_at",
                   "poster_id", "worker_id")
_SUMMARY_COLUMNS = ", ".join(f"t.{c}" for c in _SUMMARY_FIELDS)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {**{k: row[k] for k in _SUMMARY_FIELDS},
            "poster": {"id": row["poster_id"], "full_name": row["poster_name"],
                       "avatar_url": row["poster_avatar_url"], "trust_tier": row["poster_trust_tier"],
                       "is_verified": row["poster_is_verified"]}}


def _write_cursor(sort: str, order: str, value: Any, task_id: Any) -> str:
    """An opaque cursor: the sort, and the sort value and id of the page's last row."""
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort, order, value, str(task_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_cursor(cursor: str, sort: str, order: str) -> tuple[Any, UUID]:
    bad = ValidationError("invalid cursor", details={"cursor": ["pass next_cursor from the previous page"]})
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        was_sort, was_order, value, task_id = decoded
        task_uuid = UUID(task_id)
        if sort == "price":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
        elif value is not None:
            value = datetime.fromisoformat(value)
        elif sort not in NULLABLE_SORTS:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
        raise bad from None
    if (was_sort, was_order) != (sort, order):
        raise ValidationError("the cursor belongs to another sort", details={
            "cursor": [f"made for sort={was_sort}&order={was_order}"]})
    return value, task_uuid


def _after(column: str, nullable: bool, at_null: bool, order: str) -> str:
    """Rows after the cursor in `ORDER BY column <order> NULLS LAST, id <order>`."""
    cmp = ">" if order == "asc" else "<"
    if at_null:  # already among the trailing NULLs
        return f"({column} IS NULL AND t.id {cmp} %(after_id)s)"
    after = f"({column}, t.id) {cmp} (%(after_value)s, %(after_id)s)"
    return f"({after} OR {column} IS NULL)" if nullable else after


def _normal(value: Any) -> Any:
    """Compare a stored column with a request value (numbers and times in one form)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return value


@functools.lru_cache(maxsize=256)
def _create_sql(columns: tuple[str, ...]) -> str:
    """task.create's statement for these columns (names from CREATE_FIELDS, never from the
    request), built once per set of columns a client sends."""
    return """
        WITH task AS (
            INSERT INTO tasks ({columns}) SELECT {values} WHERE EXISTS (
                SELECT 1 FROM users WHERE id = %(poster_id)s AND account_status = 'ACTIVE')
            ON CONFLICT (poster_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING *),
        escrow AS (INSERT INTO escrows (task_id, amount) SELECT id, price FROM task RETURNING *)
        SELECT task.*, {escrow_columns} FROM task JOIN escrow ON escrow.task_id = task.id""".format(
        columns=", ".join(columns), values=", ".join(f"%({c})s" for c in columns),
        escrow_columns=", ".join(f"escrow.{c} AS escrow__{c}" for c in ESCROW_COLUMNS))


def _validate_new_task(fields: dict[str, Any], now: datetime) -> None:
    """Rules a schema can't express; the API's marshmallow schema checks shapes and lengths."""
    errors: dict[str, list[str]] = {}
    for name, maximum in (("title", 255), ("description", 5000)):
        value = fields.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > maximum:
            errors[name] = [f"1 to {maximum} characters"]
    if fields.get("requirements") is not None and len(fields["requirements"]) > 2000:
        errors["requirements"] = ["at most 2000 characters"]
    price, mode = fields.get("price"), fields.get("mode") or "STANDARD"
    if isinstance(price, bool) or not isinstance(price, int) or price < (LIVE_MIN_PRICE if mode == "LIVE" else 500):
        errors["price"] = ["integer cents, at least 500 (1500 for LIVE)"]
    if mode not in ("STANDARD", "LIVE"):
        errors["mode"] = ["STANDARD or LIVE"]
    if fields.get("category") is not None and fields["category"] not in CATEGORIES:
        errors["category"] = [f"one of {', '.join(CATEGORIES)}"]
    deadline = fields.get("deadline")
    if deadline is not None and (deadline.tzinfo is None or deadline <= now):
        errors["deadline"] = ["a timezone-aware time in the future"]
    if errors:
        raise ValidationError("the task is not valid", details=errors)

