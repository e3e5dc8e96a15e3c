"""Load for bench_throughput: wrk when it is installed, else a bounded Python generator.

Both replay a prepared list of requests over keep-alive connections for a fixed time (or
until a one-shot list is used up) and report the same figures: requests, errors (no answer
or status >= 400), req/s, p50/p99. The Python generator also runs multi-request clients
(a whole task lifecycle) that wrk cannot express; it spreads its connections over several
processes so one interpreter's GIL is not the limit."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# (method, path, headers, body)
Request = tuple[str, str, dict[str, str], bytes]


@dataclass
class Outcome:
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    units: int = 0  # whole client journeys (lifecycles) finished without an error
    latencies: list[float] = field(default_factory=list)  # ms (Python generator only)
    p50: float | None = None
    p99: float | None = None
    tool: str = "python"
    # CPU seconds the serving process trees spent during the run (filled in by bench_throughput)
    cpu_app: float = 0.0
    cpu_db: float = 0.0
    cpu_stripe: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def unit_rate(self) -> float:
        return self.units / self.elapsed if self.elapsed else 0.0

    def finish(self) -> Outcome:
        if self.latencies and self.p50 is None:
            ordered = sorted(self.latencies)
            self.p50 = statistics.median(ordered)
            self.p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return self


class Client:
    """One keep-alive HTTP connection that times every request into `stats`."""

    def __init__(self, base_url: str, stats: Outcome, lock: threading.Lock) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.stats, self.lock = stats, lock
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, bytes]:
        start = time.perf_counter()
        status, data = 0, b""
        for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                status, data = response.status, response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                break
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    status = 0
        elapsed = (time.perf_counter() - start) * 1000
        with self.lock:
            self.stats.requests += 1
            self.stats.latencies.append(elapsed)
            if not 200 <= status < 400:
                self.stats.errors += 1
        return status, data

    def json(self, method: str, path: str, headers: dict[str, str], payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, {**headers, "Content-Type": "application/json"}, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data)


# A client function runs one connection until `deadline`: fn(client, arg, deadline).
ClientFn = Callable[[Client, Any, float], None]


def replay(client: Client, arg: tuple[list[Request], bool], deadline: float) -> None:
    requests, cycle = arg
    i = 0
    while time.monotonic() < deadline and requests:
        if i == len(requests):
            if not cycle:
                return
            i = 0
        method, path, headers, body = requests[i]
        client.request(method, path, headers, body or None)
        i += 1


def _process(base_url: str, fn: ClientFn, args: list[Any], start_at: float, duration: float,
             queue: Any) -> None:
    stats, lock = Outcome(), threading.Lock()
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + duration
    started = time.monotonic()

    def run(arg: Any) -> None:
        client = Client(base_url, stats, lock)
        try:
            fn(client, arg, deadline)
        except Exception as exc:  # a broken journey counts as an error, not a crash
            with lock:
                stats.errors += 1
            print(f"load client stopped: {exc}", flush=True)

    threads = [threading.Thread(target=run, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats.elapsed = time.monotonic() - started
    queue.put(stats)


def run_python(base_url: str, fn: ClientFn, args: Sequence[Any], duration: float,
               processes: int | None = None) -> Outcome:
    """Each arg is one connection; connections are dealt over `processes` processes."""
    processes = max(1, min(processes or (os.cpu_count() or 2), len(args)))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 1.5  # everyone imports first, then all start together
    procs = [ctx.Process(target=_process, args=(base_url, fn, list(args[i::processes]), start_at, duration, queue))
             for i in range(processes)]
    for p in procs:
        p.start()
    parts = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    total = Outcome()
    for part in parts:
        total.requests += part.requests
        total.errors += part.errors
        total.units += part.units
        total.latencies += part.latencies
        total.elapsed = max(total.elapsed, part.elapsed)
    return total.finish()


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    """A quoted Lua string (a long bracket string would turn CRLF into LF)."""
    out = []
    for ch in text.encode():
        c = chr(ch)
        out.append(c if 32 <= ch < 127 and c not in '"\\' else f"\\{ch:03d}")
    return '"' + "".join(out) + '"'


def run_wrk(base_url: str, requests: list[Request], connections: int, duration: float, *,
            cycle: bool, threads: int = 2) -> Outcome:
    """wrk -t{threads} -c{connections}, thread k sending requests k, k+threads, ...; a one-shot
    list (cycle=False) stops each thread when its share is used up."""
    host = urlsplit(base_url).netloc
    raw = []
    for method, path, headers, body in requests:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        raw.append("\r\n".join(lines) + "\r\n\r\n" + body.decode())
    script = f"""
local reqs = {{ {", ".join(_lua_string(r) for r in raw)} }}
local cycle = {"true" if cycle else "false"}
local n = 0
local threads_made = 0
function setup(thread) thread:set("tid", threads_made); threads_made = threads_made + 1 end
function init(args) i = tid + 1; step = {threads} end
function request()
  if i > #reqs then
    if cycle then i = tid + 1 else wrk.thread:stop() end
  end
  local r = reqs[i] or reqs[1]
  i = i + step
  return r
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %.3f %.3f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
                              "--timeout", "30s", "-s", path, base_url], capture_output=True, text=True,
                             timeout=duration + 120)
    finally:
        os.unlink(path)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    _, count, errors, micros, p50, p99 = line.split()
    return Outcome(requests=int(count), errors=int(errors), elapsed=int(micros) / 1e6, p50=float(p50),
                   p99=float(p99), tool="wrk")


def run_requests(base_url: str, requests: list[Request], connections: int, duration: float, *,
                 cycle: bool, use_wrk: bool) -> Outcome:
    """The same request list through wrk or the Python generator."""
    if use_wrk:
        return run_wrk(base_url, requests, connections, duration, cycle=cycle)
    shares = [([requests[j] for j in range(i, len(requests), connections)], cycle) for i in range(connections)]
    return run_python(base_url, replay, shares, duration)
