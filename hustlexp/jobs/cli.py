"""`hustlexp jobs worker | dispatch | run NAME | recover | schema`."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Any

from hustlexp import config
from hustlexp.jobs import PASSES, STALLED_AFTER_SECONDS, build_app, retry_stalled_jobs, run_pass

if TYPE_CHECKING:
    from hustlexp.services import Services

log = logging.getLogger("hustlexp.jobs")

DISPATCH_THREADS = 8


def register(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="background jobs (procrastinate)").add_subparsers(
        dest="jobs_command", required=True)
    worker = jobs.add_parser("worker", help="run a worker: executes and schedules the periodic jobs")
    worker.add_argument("--concurrency", type=int, default=2, help="jobs run at once (default 2)")
    worker.add_argument("--dispatch-threads", type=int, default=DISPATCH_THREADS,
                        help=f"Stripe calls the money dispatcher makes at once (default {DISPATCH_THREADS})")
    worker.set_defaults(func=cmd_worker)
    dispatch = jobs.add_parser("dispatch", help="only send money_outbox rows as they commit (what "
                               "`hustlexp serve` starts in development)")
    dispatch.add_argument("--threads", type=int, default=DISPATCH_THREADS,
                          help=f"Stripe calls made at once (default {DISPATCH_THREADS})")
    dispatch.set_defaults(func=cmd_dispatch)
    run = jobs.add_parser("run", help="run one pass of a job now (cron, operators, tests)")
    run.add_argument("name", choices=sorted(PASSES))
    run.set_defaults(func=cmd_run)
    recover = jobs.add_parser("recover", help="re-queue jobs left running by dead workers (no heartbeat)")
    recover.add_argument("--after", type=float, default=STALLED_AFTER_SECONDS, metavar="SECONDS",
                         help=f"a worker silent this long is dead (default {STALLED_AFTER_SECONDS:g})")
    recover.set_defaults(func=cmd_recover)
    schema = jobs.add_parser("schema", help="install procrastinate's tables if missing")
    schema.set_defaults(func=cmd_schema)


def _services(settings: config.Settings, *, send_inline: bool = False, connections: int = 0
              ) -> tuple[Services, Any]:
    import dataclasses

    from hustlexp.app import init_db, init_payments, init_push
    from hustlexp.services import Services

    if connections > settings.db_pool_max:
        settings = dataclasses.replace(settings, db_pool_max=connections)
    db, server = init_db(settings)
    services = Services(db, payments=init_payments(settings), webhook_secret=settings.stripe_webhook_secret,
                        storage_dir=settings.storage_dir, send_inline=send_inline, push=init_push(settings))
    return services, server


def cmd_run(args: argparse.Namespace, settings: config.Settings) -> int:
    # A one-shot pass may run where no dispatcher listens (cron): it sends what it queues itself.
    services, _server = _services(settings, send_inline=True)
    try:
        counts = run_pass(args.name, services)
    finally:
        services.db.close()
    print(json.dumps({"job": args.name, **counts}))
    return 0


def cmd_recover(args: argparse.Namespace, settings: config.Settings) -> int:
    import asyncio

    services, _server = _services(settings)
    app = build_app(services.db.conninfo, lambda: services)

    async def recover() -> dict[str, list[int]]:
        async with app.open_async():
            return await retry_stalled_jobs(app.job_manager, args.after)

    try:
        done = asyncio.run(recover())
    finally:
        services.db.close()
    print(json.dumps({"job": "recover", **done}))
    return 0


def cmd_schema(args: argparse.Namespace, settings: config.Settings) -> int:
    services, _server = _services(settings)
    try:
        _ensure_queue_schema(services.db.conninfo)
    finally:
        services.db.close()
    return 0


def cmd_worker(args: argparse.Namespace, settings: config.Settings) -> int:
    from hustlexp.jobs.dispatcher import Dispatcher

    services, _server = _services(settings, connections=args.concurrency + args.dispatch_threads + 1)
    conninfo = services.db.conninfo
    _ensure_queue_schema(conninfo)
    app = build_app(conninfo, lambda: services)
    dispatcher = Dispatcher(services, threads=args.dispatch_threads)
    dispatcher.start_thread()
    log.warning("jobs worker started: money dispatcher, %s",
                ", ".join(f"{n} ({c})" for n, (c, _) in PASSES.items()))
    try:
        app.run_worker(concurrency=args.concurrency)
    finally:
        dispatcher.stop()
        services.db.close()
    return 0


def cmd_dispatch(args: argparse.Namespace, settings: config.Settings) -> int:
    import signal

    from hustlexp.jobs.dispatcher import Dispatcher

    services, _server = _services(settings, connections=args.threads + 1)
    dispatcher = Dispatcher(services, threads=args.threads)
    signal.signal(signal.SIGTERM, lambda *_: dispatcher.stop())
    log.warning("money dispatcher started (%s at once)", args.threads)
    try:
        dispatcher.run()
    except KeyboardInterrupt:
        pass
    finally:
        services.db.close()
    return 0


def _ensure_queue_schema(conninfo: str) -> None:
    """procrastinate's own tables, installed once (their presence is checked first, so two
    workers starting together don't both try)."""
    import procrastinate
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('hustlexp.procrastinate_schema'))")
        try:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
            if exists and exists[0]:
                return
            app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo))
            with app.open():
                app.schema_manager.apply_schema()
            log.warning("installed procrastinate's job tables")
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('hustlexp.procrastinate_schema'))")
