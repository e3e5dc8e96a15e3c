"""`hustlexp jobs worker | dispatch | run NAME | recover | schema`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from typing import TYPE_CHECKING, Any

from hustlexp import config
from hustlexp.backoff import Backoff
from hustlexp.jobs import PASSES, STALLED_AFTER_SECONDS, build_app, retry_stalled_jobs, run_pass

if TYPE_CHECKING:
    import procrastinate

    from hustlexp.services import Services

log = logging.getLogger("hustlexp.jobs")

# Transfers and refunds in flight at once: with Stripe answering in 200 ms, 8 sent at most 40 a
# second, fewer than the lifecycles this machine completes (payout delay p50 2 s and growing in
# bench_throughput); 16 send 80.
DISPATCH_THREADS = 16
WORKER_RESTART_SECONDS = 1.0
WORKER_RESTART_MAX_SECONDS = 30.0


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
    from hustlexp.services.storage import build_storage

    if connections > settings.db_pool_max:
        settings = dataclasses.replace(settings, db_pool_max=connections)
    db, server = init_db(settings)
    services = Services(db, payments=init_payments(settings), webhook_secret=settings.stripe_webhook_secret,
                        storage=build_storage(settings), send_inline=send_inline, push=init_push(settings))
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
    app = build_app(conninfo, lambda: services)
    dispatcher = Dispatcher(services, threads=args.dispatch_threads)
    dispatcher.start_thread()
    log.warning("jobs worker started: money dispatcher, %s",
                ", ".join(f"{n} ({c})" for n, (c, _) in PASSES.items()))
    try:
        asyncio.run(_run_jobs(app, conninfo, args.concurrency))
    finally:
        dispatcher.stop()
        services.db.close()
    return 0


async def _run_jobs(app: procrastinate.App, conninfo: str, concurrency: int) -> None:
    """procrastinate's worker until SIGINT/SIGTERM. procrastinate stops its worker when the
    database fails under it (a heartbeat, a poll); this starts it again, waiting
    WORKER_RESTART_SECONDS doubling up to WORKER_RESTART_MAX_SECONDS, so a database that is
    down at start or restarts later never ends the process (its dispatcher thread reconnects
    by itself)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    backoff = Backoff(first=WORKER_RESTART_SECONDS, most=WORKER_RESTART_MAX_SECONDS)
    while not stop.is_set():
        backoff.started()
        try:
            _ensure_queue_schema(conninfo)
            async with app.open_async():
                worker = asyncio.create_task(app.run_worker_async(concurrency=concurrency,
                                                                  install_signal_handlers=False))
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({worker, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    worker.cancel()  # procrastinate's graceful stop: running jobs finish
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
                    return
                stopping.cancel()
                worker.result()
                delay = backoff.failed()
                log.error("job worker stopped by itself; starting it again in %.0f s", delay)
        except Exception as exc:
            delay = backoff.failed()
            log.error("job worker failed (%s); starting it again in %.0f s",
                      str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def cmd_dispatch(args: argparse.Namespace, settings: config.Settings) -> int:
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

    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
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
