"""Subcommands beyond `db`: serve (and jobs). Each registers itself on the `hustlexp` parser.

`hustlexp serve` runs the API under gunicorn (its Python API: workers fork from this process
and build their own app with create_app, so no pool or socket crosses a fork). With no
DATABASE_URL it first starts the embedded PostgreSQL, installs the schema on an empty database
and migrates an older one (a DATABASE_URL that is behind is refused: run `hustlexp db
migrate`). Ctrl-C or SIGTERM stops gunicorn (workers finish in-flight requests) and then the
embedded server.

Worker model: gunicorn `gthread`, --workers processes of --threads threads each, so a request
waiting on Stripe (creating a PaymentIntent) holds one thread while the others keep serving.
Each worker's pool holds one connection per thread, at most POOL_PER_WORKER: a request holds a
connection only while it talks to the database, never while it waits on Stripe, so threads
beyond that wait on Stripe, not on the pool.

Money: outside production `serve` also starts the money dispatcher (`hustlexp jobs dispatch`,
a child process, started again whenever it exits or is killed) so one command pays out; in
production run `hustlexp jobs worker`, which holds the dispatcher and the periodic jobs
(--no-dispatch turns the child off anywhere).

Metrics: workers share their Prometheus samples through PROMETHEUS_MULTIPROC_DIR (a fresh
temporary directory unless set), so GET /metrics on any worker reports them all."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from hustlexp import config
from hustlexp.backoff import Backoff

log = logging.getLogger("hustlexp.serve")

GRACEFUL_TIMEOUT_SECONDS = 30
# Measured with benchmarks/bench_throughput.py on 2 cores: see README "Local work".
DEFAULT_THREADS = 24
# More database sessions than this per worker add no throughput on a small machine, and
# workers x this (+ the dispatcher's 17) must stay under PostgreSQL's max_connections (100).
POOL_PER_WORKER = 16


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve the REST API with gunicorn",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_ranged(1, 65535), default=8000, help="port to bind (default 8000)")
    serve.add_argument("--workers", type=_ranged(1, 64), default=2,
                       help="gunicorn worker processes (default 2)")
    serve.add_argument("--threads", type=_ranged(1, 64), default=DEFAULT_THREADS,
                       help=f"threads per worker (default {DEFAULT_THREADS}; 1 = gunicorn's sync worker)")
    serve.add_argument("--no-dispatch", action="store_true",
                       help="do not start the money dispatcher (default: started outside production)")
    serve.add_argument("--access-log", action="store_true", help="log every request to stderr")
    serve.set_defaults(func=cmd_serve)

    from hustlexp import admin_cli
    from hustlexp.jobs import cli as jobs_cli

    jobs_cli.register(sub)
    admin_cli.register(sub)


def _ranged(low: int, high: int) -> Any:
    """An argparse type: an integer in low..high (argparse reports anything else, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, not {value}")
        return value

    return parse


def cmd_serve(args: argparse.Namespace, settings: config.Settings) -> int:
    url, server = _database(settings)
    master = os.getpid()
    metrics_dir = _metrics_dir()
    dispatcher = None
    try:
        if not settings.production and not args.no_dispatch:
            dispatcher = Supervised([sys.executable, "-m", "hustlexp.cli", *(["-v"] if args.verbose else []),
                                     "jobs", "dispatch"], {**os.environ, "DATABASE_URL": url}, "money dispatcher")
        pool_max = min(args.threads, POOL_PER_WORKER)
        app = ApiServer(dataclasses.replace(settings, database_url=url, db_pool_max=pool_max), {
            "bind": f"{args.host}:{args.port}",
            "workers": args.workers,
            "worker_class": "gthread" if args.threads > 1 else "sync",
            "threads": args.threads,
            "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
            "accesslog": "-" if args.access_log else None,
            "errorlog": "-",
            "loglevel": "info" if args.verbose else "warning",
            "proc_name": "hustlexp",
        })
        log.info("serving on http://%s:%s", args.host, args.port)
        app.run()  # returns by SystemExit when gunicorn halts
    finally:
        # A forked worker unwinds through here too; only the master owns the children.
        if os.getpid() == master:
            if dispatcher is not None:
                dispatcher.stop()
            if server is not None:
                server.cleanup()
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


# prometheus_client reads it when first imported, so it is set before anything imports it.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_dir() -> Path | None:
    """Point prometheus_client's multiprocess mode at a directory before any worker exists.
    A directory made here is removed at exit (returned); a configured one is emptied of a
    previous run's samples and kept."""
    configured = os.environ.get(MULTIPROC_ENV, "").strip()
    if configured:
        for stale in Path(configured).glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    made = Path(tempfile.mkdtemp(prefix="hustlexp-metrics-"))
    os.environ[MULTIPROC_ENV] = str(made)
    return made


class Supervised:
    """A child process of the serve master, started again whenever it exits (killed, crashed)
    until stop(): money must not stop moving for the life of the server because its dispatcher
    died. The first restart waits 1 s; a child that keeps dying young waits twice as long each
time, up to 30 s."""

    POLL_SECONDS = 0.5
    MAX_DELAY_SECONDS = 30.0

    def __init__(self, cmd: list[str], env: dict[str, str], name: str) -> None:
        self.cmd, self.env, self.name = cmd, env, name
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.child = subprocess.Popen(cmd, env=env)
        self._watcher = threading.Thread(target=self._watch, name=f"supervise {name}", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        backoff = Backoff(first=1.0, most=self.MAX_DELAY_SECONDS, settled=60.0)  # a minute is no crash loop
        while not self._stopping.wait(self.POLL_SECONDS):
            # gunicorn's master reaps every exited child (waitpid(-1)); poll() then reads 0.
            code = self.child.poll()
            if code is None:
                continue
            delay = backoff.failed()
            log.error("%s (pid %s) exited with %s; starting it again in %.0f s", self.name, self.child.pid,
                      code, delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.child = subprocess.Popen(self.cmd, env=self.env)
                backoff.started()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        child = self.child
        child.terminate()
        try:
            child.wait(timeout=GRACEFUL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()


def _database(settings: config.Settings) -> tuple[str, Any]:
    """DATABASE_URL, or the embedded server. An empty database gets the current schema; one that
    is behind is refused with the command that fixes it, except the embedded development server,
    which migrates itself; one ahead of this build is refused either way."""
    import psycopg

    from hustlexp.db import embedded, migrations

    if settings.database_url:
        try:
            with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=5) as conn:
                outcome = migrations.migrate(conn, allow=("install",))
        except migrations.SchemaError as exc:
            raise config.ConfigError(f"DATABASE_URL cannot be served: {exc}") from None
        except psycopg.Error as exc:
            # Serve anyway: /health answers 503 and requests succeed once the database is back.
            log.warning("database not reachable at start (%s); serving anyway", str(exc).strip().splitlines()[0])
            return settings.database_url, None
        if outcome.action != "none":
            log.warning("database: %s", outcome.describe())
        return settings.database_url, None
    url, server = embedded.resolve_url(None)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            outcome = migrations.migrate(conn)
    except migrations.SchemaError as exc:
        server.cleanup()
        # ConfigError (not cli.CliError) so `python -m hustlexp.cli`, where cli is __main__,
        # still reports it as one clear line.
        raise config.ConfigError(f"the embedded database in {embedded.DEFAULT_DATA_DIR} or "
                                 f"HUSTLEXP_PGDATA cannot be served: {exc}") from None
    if outcome.action != "none":
        log.warning("embedded database: %s", outcome.describe())
    return url, server


class ApiServer(BaseApplication):
    """gunicorn, configured in code; each worker builds its app after the fork."""

    def __init__(self, settings: config.Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = {k: v for k, v in options.items() if v is not None}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("worker_exit", _close_worker_app)
        self.cfg.set("child_exit", _forget_worker_metrics)
        # gunicorn answers what it cannot parse (bad request line 400, URI too long 414, header
        # fields too large 431) itself, as HTML, before our app sees the request; it offers no
        # hook for that page, so its one writer is replaced by ours. Workers inherit it by fork.
        gunicorn_util.write_error = write_json_error

    def load(self) -> Any:
        from hustlexp.app import create_app

        return create_app(self.settings)


def _forget_worker_metrics(arbiter: Any, worker: Any) -> None:
    from hustlexp.obs.metrics import worker_exited

    worker_exited(worker.pid)


def write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's error answer, as our JSON error envelope. gunicorn's own message (which may
    quote the offending request) is logged by gunicorn, not echoed to the client."""
    from datetime import UTC, datetime

    from hustlexp.api.base import error_code

    body = json.dumps({"success": False, "error": {"code": error_code(status), "message": reason},
                       "timestamp": datetime.now(UTC).isoformat()}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


def _close_worker_app(arbiter: Any, worker: Any) -> None:
    app = getattr(worker.app, "callable", None)
    if app is not None:
        from hustlexp.app import close_app

        close_app(app)
