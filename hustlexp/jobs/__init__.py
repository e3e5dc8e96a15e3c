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
- purge-*      retention (hustlexp.services.retention): notifications, message locations,
                             messages, proof photos, processed Stripe events
- anonymize-accounts hourly: closed accounts past their 7-day grace are anonymised
`run_pass(name, services)` runs one pass now; the procrastinate app schedules them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import procrastinate

    from hustlexp.services import Services

log = logging.getLogger("hustlexp.jobs")

PASSES: dict[str, tuple[str, Callable[[Services], Any]]] = {
    "expire": ("*/5 * * * *", lambda s: s.tasks.expire_due()),
    "auto-accept": ("*/15 * * * *", lambda s: s.proofs.auto_accept_due()),
    "payouts": ("*/5 * * * *", lambda s: s.outbox.retry_due()),
    # Retention (hustlexp.services.retention): bounded passes, daily except locations,
    # whose 15-minute shares should not outlive their TTL by much.
    "purge-notifications": ("10 3 * * *", lambda s: s.retention.purge_notifications()),
    "purge-message-locations": ("*/15 * * * *", lambda s: s.retention.purge_message_locations()),
    "purge-messages": ("20 3 * * *", lambda s: s.retention.purge_messages()),
    "purge-proof-photos": ("30 3 * * *", lambda s: s.retention.purge_proof_photos()),
    "purge-stripe-events": ("40 3 * * *", lambda s: s.retention.purge_stripe_events()),
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
    return app
