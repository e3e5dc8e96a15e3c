"""Background jobs on procrastinate (DESIGN §7.14): PostgreSQL is the queue, so any number of
workers on any number of machines share the work with no new infrastructure.

The passes, each safe to run twice at once (every item is re-checked under its own row lock,
money rows are claimed with SKIP LOCKED):
- expire       every 5 min:  OPEN tasks past their deadline -> EXPIRED, escrow refunded/closed;
                             overdue ACCEPTED tasks -> one warning to the worker
- auto-accept  every 15 min: SUBMITTED proofs past their 48 h review deadline -> the normal
                             completion chain
- payouts      every 5 min:  money_outbox rows that are due (back-off 5 min, 30 min, 2 h, 24 h,
                             then FAILED_PERMANENT and the admins are told)
- auto-rate    hourly:       COMPLETED tasks whose 7-day rating window closed -> the missing
                             ratings as 5 stars marked auto, and both sides published
- trust-decay  daily:        users above tier 1 with no completed task (and no tier change) in
                             90 days lose one tier, reason DECAY (ARCHITECTURE §4.3)
- purge-*      retention (hustlexp.services.retention): notifications, message locations,
                             messages, proof photos, processed Stripe events,
                             stale upload intents
- anonymize-accounts hourly: closed accounts past their 7-day grace are anonymised

`run_pass(name, services)` runs one pass now; the procrastinate app schedules them.

A worker killed mid-job (OOM, SIGKILL, a lost host) leaves its job in `doing`. Workers send
procrastinate heartbeats; every minute `hustlexp.retry-stalled` asks procrastinate for the
jobs of workers silent for STALLED_AFTER_SECONDS (`get_stalled_jobs`) and puts them back in
the queue (`retry_job`). Re-running a pass is safe for the reasons above (a money row the dead
worker had claimed is taken again once its lease runs out, with the same idempotency key).
`hustlexp jobs recover` does the same now."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import procrastinate
    import procrastinate.manager

    from hustlexp.services import Services

log = logging.getLogger("hustlexp.jobs")

# procrastinate's own defaults: a worker beats every 10 s and is stalled after 30 s of silence.
STALLED_AFTER_SECONDS = 30.0

PASSES: dict[str, tuple[str, Callable[[Services], Any]]] = {
    "expire": ("*/5 * * * *", lambda s: s.tasks.expire_due()),
    "auto-accept": ("*/15 * * * *", lambda s: s.proofs.auto_accept_due()),
    "payouts": ("*/5 * * * *", lambda s: s.outbox.retry_due()),
    "auto-rate": ("17 * * * *", lambda s: s.ratings.auto_rate_due()),
    "trust-decay": ("30 3 * * *", lambda s: s.trust.decay_inactive()),
    # Retention (hustlexp.services.retention): bounded passes, daily except locations,
    # whose 15-minute shares should not outlive their TTL by much.
    "purge-notifications": ("10 3 * * *", lambda s: s.retention.purge_notifications()),
    "purge-message-locations": ("*/15 * * * *", lambda s: s.retention.purge_message_locations()),
    "purge-messages": ("20 3 * * *", lambda s: s.retention.purge_messages()),
    "purge-proof-photos": ("30 3 * * *", lambda s: s.retention.purge_proof_photos()),
    "purge-stripe-events": ("40 3 * * *", lambda s: s.retention.purge_stripe_events()),
    # Hourly: an upload intent lives 20 minutes, so its object should not linger for a day.
    "purge-upload-intents": ("45 * * * *", lambda s: s.retention.purge_upload_intents()),
    # Closed accounts past their 7-day grace lose their identity (hustlexp.services.account).
    "anonymize-accounts": ("25 * * * *", lambda s: s.accounts.anonymize_due()),
}


def run_pass(name: str, services: Services) -> dict[str, Any]:
    """One pass of job `name`, now. Returns its counts. Its log lines carry a run id of their
    own (money it sends carries the id of the request that queued it)."""
    from hustlexp.obs import context

    _, step = PASSES[name]
    run_id = f"job-{name}-{uuid.uuid4().hex[:12]}"
    with context.bound(run_id):
        counts: dict[str, Any] = step(services).unwrap()
        log.info("job %s: %s", name, counts,
                 extra={"request_id": run_id, "fields": {"event": "job", "job": name, **counts}})
    return counts


def build_app(conninfo: str, services_factory: Callable[[], Services]) -> procrastinate.App:
    """The procrastinate app with one periodic task per pass. `services_factory` is called once,
    in the worker, on the first job (so importing this module connects to nothing)."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    holder: dict[str, Services] = {}

    def services() -> Services:
        if "s" not in holder:
            holder["s"] = services_factory()
        return holder["s"]

    for name, (cron, _) in PASSES.items():
        def job(timestamp: int, _name: str = name) -> None:
            run_pass(_name, services())

        # queueing_lock: at most one pass of each kind waits in the queue, however many
        # workers' schedulers defer it.
        task = app.task(name=f"hustlexp.{name}", queueing_lock=name, pass_context=False)(job)
        app.periodic(cron=cron, periodic_id=name)(task)

    async def retry_stalled(context: procrastinate.JobContext, timestamp: int) -> None:
        await retry_stalled_jobs(context.app.job_manager)

    stalled = app.task(name="hustlexp.retry-stalled", queueing_lock="retry-stalled", pass_context=True)(
        retry_stalled)
    app.periodic(cron="* * * * *", periodic_id="retry-stalled")(stalled)
    return app


async def retry_stalled_jobs(manager: procrastinate.manager.JobManager,
                             after_seconds: float = STALLED_AFTER_SECONDS) -> dict[str, list[int]]:
    """Put back in the queue every job left `doing` by a worker with no heartbeat for
    `after_seconds`. A job whose pass already waits in the queue again (same queueing lock) is
    closed as failed instead: the waiting one does its work. Returns the job ids of each."""
    import procrastinate

    done: dict[str, list[int]] = {"retried": [], "superseded": []}
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=after_seconds):
        assert job.id is not None
        try:
            await manager.retry_job(job)
            done["retried"].append(job.id)
        except procrastinate.exceptions.UniqueViolation:
            await manager.finish_job(job, procrastinate.jobs.Status.FAILED, delete_job=False)
            done["superseded"].append(job.id)
        log.warning("job %s (%s) was left running by a dead worker: %s", job.id, job.task_name,
                    "retried" if job.id in done["retried"] else "closed, the same pass is queued")
    return done
