"""Two-way ratings after completion (RATING_SYSTEM_SPEC, RATE-1..8).

Poster and worker rate each other once, within 7 days of completion. A rating is blind until
the other party rated too or the window closed; blindness is computed when read (PUBLIC_SQL),
so task_ratings stays append-only. A job auto-rates whoever did not rate in time (5 stars,
marked auto), which also publishes the other side's rating.

A rating reads as {id, task_id, rater_id, ratee_id, rater {id, full_name, avatar_url},
stars, comment, tags, is_auto_rated, is_public, created_at}."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hustlexp.domain import TaskState
from hustlexp.errors import Conflict, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, about, one, page_params, returning, returns_result
from hustlexp.services.user import require_user

WINDOW = timedelta(days=7)
MAX_COMMENT = 500
MAX_TAGS = 11
RECENT = 10
AUTO_STARS = 5

# Tags by who is rated (spec §3): the poster rates the worker with WORKER_TAGS, the worker
# rates the poster with POSTER_TAGS. Negative tags only go with fewer than 4 stars.
WORKER_TAGS = frozenset({"on_time", "professional", "high_quality", "good_communication", "would_hire_again",
                         "clean_work", "problem_solver"})
WORKER_NEGATIVE_TAGS = frozenset({"late_arrival", "poor_communication", "quality_issues", "unprofessional"})
POSTER_TAGS = frozenset({"clear_instructions", "fair_payment", "responsive", "friendly", "would_work_again",
                         "respectful"})
POSTER_NEGATIVE_TAGS = frozenset({"unclear_instructions", "unresponsive", "unfair_payment", "rude"})
ALL_TAGS = WORKER_TAGS | WORKER_NEGATIVE_TAGS | POSTER_TAGS | POSTER_NEGATIVE_TAGS

# The one definition of "public": the other party rated this task too, or its window closed.
# Needs %(now)s; `r` is the rating, `t` its task.
PUBLIC_SQL = """(EXISTS (SELECT 1 FROM task_ratings o WHERE o.task_id = r.task_id AND o.rater_id = r.ratee_id)
                 OR t.completed_at + interval '7 days' <= %(now)s)"""

_SELECT = f"""
SELECT r.*, {PUBLIC_SQL} AS is_public,
       u.full_name AS rater_name, u.avatar_url AS rater_avatar_url
  FROM task_ratings r JOIN tasks t ON t.id = r.task_id JOIN users u ON u.id = r.rater_id"""


def rating_item(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "task_id": row["task_id"], "rater_id": row["rater_id"], "ratee_id": row["ratee_id"],
            "rater": {"id": row["rater_id"], "full_name": row["rater_name"], "avatar_url": row["rater_avatar_url"]},
            "stars": row["stars"], "comment": row["comment"], "tags": list(row["tags"]),
            "is_auto_rated": row["is_auto_rated"], "is_public": row["is_public"], "created_at": row["created_at"]}


def summary_from(conn: Any, user_id: Any, now: datetime) -> dict[str, Any]:
    """Count, average (2 decimals, None without ratings) and star distribution of the public
    ratings `user_id` received. Trust promotion (ELITE) reads the same numbers."""
    row = returning(conn, f"""
        SELECT count(*) AS total, round(avg(r.stars), 2) AS average,
               count(*) FILTER (WHERE r.stars = 1) AS s1, count(*) FILTER (WHERE r.stars = 2) AS s2,
               count(*) FILTER (WHERE r.stars = 3) AS s3, count(*) FILTER (WHERE r.stars = 4) AS s4,
               count(*) FILTER (WHERE r.stars = 5) AS s5
          FROM task_ratings r JOIN tasks t ON t.id = r.task_id
         WHERE r.ratee_id = %(user)s AND {PUBLIC_SQL}""", {"user": user_id, "now": now})
    return {"total_ratings": row["total"],
            "average_rating": float(row["average"]) if row["average"] is not None else None,
            "star_distribution": {str(n): row[f"s{n}"] for n in range(1, 6)}}


def _validate(stars: Any, comment: Any, tags: Any, rating_worker: bool) -> tuple[str | None, list[str]]:
    errors: dict[str, list[str]] = {}
    if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
        errors["stars"] = ["an integer from 1 to 5"]
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        errors["comment"] = [f"at most {MAX_COMMENT} characters"]
    tags = [] if tags is None else tags
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        errors["tags"] = ["a list of tags"]
    else:
        allowed = WORKER_TAGS if rating_worker else POSTER_TAGS
        negative = WORKER_NEGATIVE_TAGS if rating_worker else POSTER_NEGATIVE_TAGS
        if isinstance(stars, int) and stars < 4:
            allowed = allowed | negative
        wrong = sorted(set(tags) - allowed)
        if wrong:
            errors["tags"] = [f"not allowed here: {', '.join(wrong)}; allowed: {', '.join(sorted(allowed))}"]
        elif len(set(tags)) != len(tags) or len(tags) > MAX_TAGS:
            errors["tags"] = [f"at most {MAX_TAGS} distinct tags"]
    if errors:
        raise ValidationError("the rating is not valid", details=errors)
    text = comment.strip() if isinstance(comment, str) else None
    return text or None, list(tags)


class RatingService(Service):
    @returns_result
    def submit(self, task_id: Any, rater_id: Any, *, stars: Any, comment: Any = None, tags: Any = None
               ) -> dict[str, Any]:
        """Rate the other party of a COMPLETED task. Returns {rating, both_rated, is_public}.
        Errors: NOT_FOUND (task), HX812 (not its poster or worker), HX807 (not COMPLETED),
        HX808 (window closed), CONFLICT (already rated), VALIDATION_ERROR (stars, comment, tags)."""
        now = self.s.clock()
        with self.db.transaction() as conn:
            # The task row lock orders the two parties' submissions, so exactly one of them sees
            # the pair complete and publishes.
            task = one(conn, "SELECT * FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
            if task is None:
                raise NotFound("No such task.")
            if rater_id not in (task["poster_id"], task["worker_id"]):
                raise Forbidden("Only the task's poster and worker rate each other.", code="HX812")
            if task["state"] != TaskState.COMPLETED:
                raise Conflict("Ratings can only be submitted after the task is COMPLETED.", code="HX807",
                               details={"state": task["state"]})
            if task["completed_at"] + WINDOW <= now:
                raise Conflict("The rating window has closed (7 days after completion).", code="HX808")
            rating_worker = rater_id == task["poster_id"]
            text, tag_list = _validate(stars, comment, tags, rating_worker)
            ratee = task["worker_id"] if rating_worker else task["poster_id"]
            inserted = one(conn, """INSERT INTO task_ratings (task_id, rater_id, ratee_id, stars, comment, tags)
                                    VALUES (%s, %s, %s, %s, %s, %s)
                                    ON CONFLICT (task_id, rater_id) DO NOTHING RETURNING id""",
                           (task_id, rater_id, ratee, stars, text, tag_list))
            if inserted is None:
                raise Conflict("You already rated this task; ratings cannot be changed.")
            rating = self._one(conn, inserted["id"], now)
            both = self._count(conn, task_id) == 2
            if both:
                self._published(conn, task)
            return {"rating": rating, "both_rated": both, "is_public": rating["is_public"]}

    @returns_result
    def get_task_ratings(self, task_id: Any, viewer_id: Any) -> dict[str, Any]:
        """The task's ratings as its poster, worker or an admin may see them: {poster_rating,
        worker_rating} (each None while blind, except for its own rater and admins), both_rated,
        window_closes_at, can_rate (the viewer may still rate)."""
        now = self.s.clock()
        with self.db.transaction() as conn:
            task = one(conn, "SELECT * FROM tasks WHERE id = %s", (task_id,))
            if task is None:
                raise NotFound("No such task.")
            audit.require_party_or_admin(conn, (task["poster_id"], task["worker_id"]), viewer_id,
                                         "only the task's poster, its worker or an admin can see its ratings")
            is_admin = viewer_id not in (task["poster_id"], task["worker_id"])
            rows = conn.execute(_SELECT + " WHERE r.task_id = %(task)s", {"task": task_id, "now": now}).fetchall()
        by_rater = {r["rater_id"]: rating_item(r) for r in rows}

        def shown(rater: Any) -> dict[str, Any] | None:
            item = by_rater.get(rater)
            if item is None or item["is_public"] or is_admin or rater == viewer_id:
                return item
            return None

        closes = task["completed_at"] + WINDOW if task["completed_at"] is not None else None
        open_window = task["state"] == TaskState.COMPLETED and closes is not None and now < closes
        return {"task_id": task["id"], "poster_rating": shown(task["poster_id"]),
                "worker_rating": shown(task["worker_id"]), "both_rated": len(by_rater) == 2,
                "window_closes_at": closes, "can_rate": open_window and not is_admin and viewer_id not in by_rater}

    @returns_result
    def get_my_ratings(self, user_id: Any, *, limit: int | None = 20) -> dict[str, Any]:
        """{given: the caller's own ratings (blind ones too), received: public ratings of the
        caller}, newest first, `limit` of each."""
        limit, _ = page_params(limit, 0)
        now = self.s.clock()
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            given = conn.execute(_SELECT + " WHERE r.rater_id = %(user)s ORDER BY r.created_at DESC, r.id DESC "
                                 "LIMIT %(limit)s", {"user": user_id, "now": now, "limit": limit}).fetchall()
            received = self._received(conn, user_id, now, limit)
            summary = summary_from(conn, user_id, now)
        return {"given": [rating_item(r) for r in given], "received": received, "summary": summary}

    @returns_result
    def get_user_ratings(self, user_id: Any) -> dict[str, Any]:
        """Anyone's public rating summary: {user_id, summary {total_ratings, average_rating,
        star_distribution}, recent (the last 10 public ratings)}."""
        now = self.s.clock()
        with self.db.transaction() as conn:
            require_user(conn, user_id)
            return {"user_id": user_id, "summary": summary_from(conn, user_id, now),
                    "recent": self._received(conn, user_id, now, RECENT)}

    @returns_result
    def auto_rate_due(self, limit: int = 200) -> dict[str, int]:
        """One pass of the auto-rating job: for each COMPLETED task whose window closed, the party
        that did not rate rates 5 stars, marked auto (RATE-3), and the task's ratings are
        published. Safe to run twice at once: each task is handled under its row lock."""
        now = self.s.clock()
        with self.db.transaction() as conn:
            due = [r["id"] for r in conn.execute(
                """SELECT t.id FROM tasks t
                    WHERE t.state = 'COMPLETED' AND t.completed_at + interval '7 days' <= %s
                      AND (SELECT count(*) FROM task_ratings r WHERE r.task_id = t.id) < 2
                    ORDER BY t.completed_at LIMIT %s""", (now, limit)).fetchall()]
        rated = 0
        for task_id in due:
            rated += self._auto_rate(task_id).unwrap()
        return {"tasks": len(due), "auto_ratings": rated}

    # -- internals -------------------------------------------------------------

    @returns_result
    def _auto_rate(self, task_id: Any) -> int:
        with self.db.transaction() as conn:
            task = one(conn, "SELECT * FROM tasks WHERE id = %s FOR UPDATE SKIP LOCKED", (task_id,))
            if task is None:
                return 0
            rows = conn.execute(
                """INSERT INTO task_ratings (task_id, rater_id, ratee_id, stars, is_auto_rated)
                   SELECT %(task)s, pair.rater, pair.ratee, %(stars)s, true
                     FROM (VALUES (%(poster)s::uuid, %(worker)s::uuid), (%(worker)s::uuid, %(poster)s::uuid))
                          AS pair (rater, ratee)
                    WHERE NOT EXISTS (SELECT 1 FROM task_ratings r WHERE r.task_id = %(task)s
                                         AND r.rater_id = pair.rater)
                   RETURNING id""", {"task": task_id, "poster": task["poster_id"], "worker": task["worker_id"],
                                     "stars": AUTO_STARS}).fetchall()
            if rows:
                self._published(conn, task)
            return len(rows)

    def _published(self, conn: Any, task: dict[str, Any]) -> None:
        """Both ratings of `task` just became public: tell each party what they received and
        re-run their promotion."""
        for row in conn.execute("SELECT ratee_id, stars FROM task_ratings WHERE task_id = %s",
                                (task["id"],)).fetchall():
            self._notify(row["ratee_id"], "RATING_RECEIVED", **about(task, stars=row["stars"]))
            # A public rating can complete ELITE's requirements.
            self.s.trust.update_user_trust(row["ratee_id"], task_id=task["id"]).unwrap()

    def _received(self, conn: Any, user_id: Any, now: datetime, limit: int) -> list[dict[str, Any]]:
        rows = conn.execute(_SELECT + f" WHERE r.ratee_id = %(user)s AND {PUBLIC_SQL} "
                            "ORDER BY r.created_at DESC, r.id DESC LIMIT %(limit)s",
                            {"user": user_id, "now": now, "limit": limit}).fetchall()
        return [rating_item(r) for r in rows]

    @staticmethod
    def _one(conn: Any, rating_id: Any, now: datetime) -> dict[str, Any]:
        return rating_item(returning(conn, _SELECT + " WHERE r.id = %(id)s", {"id": rating_id, "now": now}))

    @staticmethod
    def _count(conn: Any, task_id: Any) -> int:
        return int(returning(conn, "SELECT count(*) AS n FROM task_ratings WHERE task_id = %s", (task_id,))["n"])

