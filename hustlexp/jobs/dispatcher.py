"""The dispatcher: sends money_outbox rows moments after the transaction that wrote them
commits, so no API request waits on a Stripe transfer or refund (DESIGN §7.16); and, on a
second channel, the pushes of notifications just recorded (hustlexp.services.push, batched per
wait), so no request waits on FCM either. Every sweep also sends every push due by then.

It LISTENs on the outbox channel; every notification names the rows just made due, and each
is sent on a small thread pool (`MoneyOutbox.dispatch` claims a row with SKIP LOCKED, so any
number of dispatchers, the retry job and a one-shot pass can run at once and Stripe still
moves the money once). Every attempt is bounded by the Stripe budget of one call, so a hung
Stripe holds a thread for that long at most, never forever.

Notifications sent while no dispatcher listened are not lost: on connecting, and again
whenever a row becomes due by itself (at most SWEEP_SECONDS apart), it sweeps
(`MoneyOutbox.dispatcher_due`): rows never attempted, claims whose lease ran out (their process
died or lost the database mid-attempt), and retries no payouts job took. Failed attempts
otherwise back off and belong to the periodic `payouts` job.

Nothing ends the dispatcher but stop(): a lost database, a failing sweep or any other error is
logged, waited out (RECONNECT_SECONDS, doubling up to RECONNECT_MAX_SECONDS) and followed by a
new connection, a new LISTEN and a sweep."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg

from hustlexp.backoff import Backoff
from hustlexp.errors import Unavailable
from hustlexp.services.outbox import CHANNEL
from hustlexp.services.push import CHANNEL as PUSH_CHANNEL

if TYPE_CHECKING:
    from hustlexp.services import Services

log = logging.getLogger("hustlexp.dispatcher")

SWEEP_SECONDS = 60.0
PUSH_SWEEP_SECONDS = 10.0
RECONNECT_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5
# How long one wait for notifications lasts: how soon stop() is noticed.
LISTEN_SLICE_SECONDS = 1.0


class Dispatcher:
    def __init__(self, services: Services, *, threads: int = 8) -> None:
        self.services = services
        self.threads = threads
        self.stop_event = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="money")
        # Rows handed to the thread pool and not finished: a sweep does not queue them twice.
        self._queued: set[UUID] = set()
        self._queued_lock = threading.Lock()
        self._next_push_sweep = 0.0

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        """Listen and send until stop() (or KeyboardInterrupt)."""
        backoff = Backoff(first=RECONNECT_SECONDS, most=RECONNECT_MAX_SECONDS)
        try:
            while not self.stop_event.is_set():
                backoff.started()
                try:
                    self._listen()
                except Exception as exc:
                    delay = backoff.failed()
                    if isinstance(exc, psycopg.OperationalError | Unavailable):  # the database is away
                        log.warning("dispatcher lost the database (%s); reconnecting in %.1f s",
                                    _first_line(exc), delay)
                    else:
                        log.exception("dispatcher failed; reconnecting in %.1f s", delay)
                    self.stop_event.wait(delay)
        finally:
            self._pool.shutdown(wait=True)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="money-dispatcher", daemon=True)
        thread.start()
        return thread

    def _listen(self) -> None:
        with psycopg.connect(self.services.db.conninfo, autocommit=True,
                             connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            conn.execute(f"LISTEN {PUSH_CHANNEL}")
            conn.execute(f"LISTEN {CHANNEL}")
            log.info("dispatcher listening")
            next_sweep = 0.0  # at once: what became due while nobody listened
            while not self.stop_event.is_set():
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._sweep()
                wait = min(LISTEN_SLICE_SECONDS, max(0.0, next_sweep - time.monotonic()))
                pushes: list[str] = []
                for note in conn.notifies(timeout=wait):
                    if note.channel == PUSH_CHANNEL:
                        pushes.extend(note.payload.split(","))
                    else:
                        self._send(note.payload.split(","))
                if pushes:
                    # One FCM batch for all the pushes that arrived together.
                    self._pool.submit(self._push, pushes)

    def _sweep(self) -> float:
        """Queue what is due without a notification; seconds until the next sweep."""
        # Every push due by now: held ones whose hold ended, retries, missed wake-ups (at most
        # every PUSH_SWEEP_SECONDS, however often money rows fall due).
        if time.monotonic() >= self._next_push_sweep:
            self._next_push_sweep = time.monotonic() + PUSH_SWEEP_SECONDS
            self._pool.submit(self._push, None)
        found = self.services.outbox.dispatcher_due().unwrap()
        self._send([str(i) for i in found["due"]])
        next_in = found["next_in"]
        return SWEEP_SECONDS if next_in is None else min(SWEEP_SECONDS, max(0.1, float(next_in)))

    def _send(self, ids: list[str]) -> None:
        for text in ids:
            try:
                outbox_id = UUID(text)
            except ValueError:
                log.warning("ignoring notification %r: not an outbox id", text)
                continue
            with self._queued_lock:
                if outbox_id in self._queued:
                    continue
                self._queued.add(outbox_id)
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
        except Exception:
            # Unclaimed, it is swept again at reconnection; claimed, once its lease runs out.
            log.exception("dispatching outbox %s failed", outbox_id)
        finally:
            with self._queued_lock:
                self._queued.discard(outbox_id)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
