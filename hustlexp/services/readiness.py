"""What an operator needs to know is flowing: the money outbox backlog and the job workers.
Read by GET /health/ready and, at scrape time, by /metrics. The job queue's own tables
(procrastinate) hold the workers' heartbeats (every 10 s) and the due jobs; before any worker
ever ran they do not exist, which reads as "no worker"."""

from __future__ import annotations

from typing import Any

from hustlexp.services.base import Service, one, returns_result

# A worker that has not reported for this long is gone (procrastinate beats every 10 s).
HEARTBEAT_STALE_SECONDS = 60
# Money due but not sent for this long means the dispatcher is not keeping up.
OUTBOX_STALE_SECONDS = 15 * 60


class ReadinessService(Service):
    @returns_result
    def snapshot(self) -> dict[str, Any]:
        """{outbox_by_status, outbox_backlog, oldest_pending_age_seconds, job_lag_seconds,
        worker_heartbeat_age_seconds} (ages None when there is nothing to age)."""
        with self.db.transaction() as conn:
            outbox = {r["status"]: r["n"] for r in conn.execute(
                "SELECT status, count(*) AS n FROM money_outbox GROUP BY status").fetchall()}
            oldest = one(conn, "SELECT extract(epoch FROM now() - min(next_attempt_at))::float AS age "
                               "FROM money_outbox WHERE status IN ('PENDING', 'PROCESSING') "
                               "AND next_attempt_at <= now()")
            queue = one(conn, "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS jobs, "
                              "to_regclass('procrastinate_workers') IS NOT NULL AS workers")
            assert queue is not None
            lag = beat = None
            if queue["jobs"]:
                row = one(conn, """
                    SELECT coalesce(extract(epoch FROM now() - min(coalesce(j.scheduled_at, e.at))), 0)::float AS lag
                      FROM procrastinate_jobs j
                      LEFT JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred'
                     WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())""")
                lag = row["lag"] if row else None
            if queue["workers"]:
                row = one(conn, "SELECT extract(epoch FROM now() - max(last_heartbeat))::float AS age "
                                "FROM procrastinate_workers")
                beat = row["age"] if row else None
            return {"outbox_by_status": outbox,
                    "outbox_backlog": outbox.get("PENDING", 0) + outbox.get("PROCESSING", 0),
                    "oldest_pending_age_seconds": oldest["age"] if oldest else None,
                    "job_lag_seconds": lag, "worker_heartbeat_age_seconds": beat}
