"""The dispatcher: sends money_outbox rows moments after the transaction that wrote them
commits, so no API request waits on a Stripe transfer or refund (DESIGN §7.16); and, on a
second channel, the pushes of notifications just recorded (hustlexp.services.push), so no
request waits on FCM either.

It LISTENs on the outbox channel; every notification names the rows just made due, and each
is sent on a small thread pool (`MoneyOutbox.dispatch` claims a row with SKIP LOCKED, so any
number of dispatchers, the retry job and a one-shot pass can run at once and Stripe still
moves the money once). Notifications sent while no dispatcher listened are not lost: at start
and every SWEEP_SECONDS it also sends rows that were never attempted. Failed attempts back off
and belong to the periodic `payouts` job. A lost database connection is reopened."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from hustlexp.services.outbox import CHANNEL
from hustlexp.services.push import CHANNEL as PUSH_CHANNEL

if TYPE_CHECKING:
    from hustlexp.services import Services

log = logging.getLogger("hustlexp.dispatcher")

SWEEP_SECONDS = 60.0
RECONNECT_SECONDS = 2.0


class Dispatcher:
    def __init__(self, services: Services, *, threads: int = 8) -> None:
        self.services = services
        self.threads = threads
        self.stop_event = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="money")

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        """Listen and send until stop() (or KeyboardInterrupt)."""
        try:
            while not self.stop_event.is_set():
                try:
                    self._listen()
                except psycopg.OperationalError as exc:
                    log.warning("dispatcher lost the database (%s); reconnecting",
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    self.stop_event.wait(RECONNECT_SECONDS)
        finally:
            self._pool.shutdown(wait=True)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="money-dispatcher", daemon=True)
        thread.start()
        return thread

    def _listen(self) -> None:
        with psycopg.connect(self.services.db.conninfo, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            conn.execute(f"LISTEN {PUSH_CHANNEL}")
            next_sweep = 0.0
            while not self.stop_event.is_set():
                if time.monotonic() >= next_sweep:
                    self._send(self._never_attempted(conn))
                    # Every push due by now: held ones whose hold ended, retries, missed wake-ups.
                    self._pool.submit(self._push, None)
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                pushes: list[str] = []
                for note in conn.notifies(timeout=1.0):
                    if note.channel == PUSH_CHANNEL:
                        pushes.extend(note.payload.split(","))
                    else:
                        self._send(note.payload.split(","))
                if pushes:
                    # One FCM batch for all the pushes that arrived together.
                    self._pool.submit(self._push, pushes)

    @staticmethod
    def _never_attempted(conn: psycopg.Connection[Any]) -> list[str]:
        rows = conn.execute("""SELECT id FROM money_outbox
                                WHERE status = 'PENDING' AND last_attempt_at IS NULL AND next_attempt_at <= now()
                                ORDER BY next_attempt_at LIMIT 500""").fetchall()
        return [str(r[0]) for r in rows]

    def _send(self, ids: list[str]) -> None:
        for text in ids:
            try:
                outbox_id = UUID(text)
            except ValueError:
                log.warning("ignoring notification %r: not an outbox id", text)
                continue
            self._pool.submit(self._dispatch, outbox_id)

    def _push(self, ids: list[str] | None) -> None:
        try:
            counts = self.services.pushes.send_due(ids).unwrap()
            if counts["claimed"]:
                log.info("push: %s", counts)
        except Exception:  # the rows stay due; the next sweep or the push job sends them
            log.exception("sending pushes failed")

    def _dispatch(self, outbox_id: UUID) -> None:
        try:
            result = self.services.outbox.dispatch(outbox_id).unwrap()
            log.info("outbox %s: %s", outbox_id, result["status"])
        except Exception:  # the row stays PENDING/PROCESSING; the payouts job picks it up
            log.exception("dispatching outbox %s failed", outbox_id)
