"""The restart back-off of the parts that must keep running: the dispatcher `hustlexp serve`
supervises, the job worker, the dispatcher's own database connection. A part that keeps
failing young waits twice as long each time, up to a ceiling; one that ran a while was no
crash loop, so its next failure starts short again."""

from __future__ import annotations

import time


class Backoff:
    def __init__(self, first: float, most: float, settled: float | None = None) -> None:
        """Wait `first` seconds after a failure, doubling up to `most`; an attempt that lived
        `settled` seconds (by default `most`) resets the wait to `first`."""
        self.first, self.most = first, most
        self.settled = most if settled is None else settled
        self._next = first
        self._started = time.monotonic()

    def started(self) -> None:
        """An attempt begins now."""
        self._started = time.monotonic()

    def failed(self) -> float:
        """The attempt ended: how long to wait before the next one."""
        if time.monotonic() - self._started >= self.settled:
            self._next = self.first
        delay, self._next = self._next, min(self._next * 2, self.most)
        return delay
