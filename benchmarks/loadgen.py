"""Load for bench_throughput: wrk when it is installed, else a bounded Python generator.

Both replay a prepared list of requests over keep-alive connections for a fixed time (or
until a one-shot list is used up) and report the same figures: requests, errors (no answer
or status >= 400), req/s, p50/p99. The Python generator also runs multi-request clients
(a whole task lifecycle) that wrk cannot express; it spreads its connections over several
processes so one interpreter's GIL is not the limit."""

from __future__ import annotations

import http.client
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

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
    cpu_client: float = 0.0  # CPU seconds of the Python generator itself while it ran

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
    """One keep-alive HTTP/1.1 connection that times every request into `stats`.

    Written on a bare socket: the generator shares the machine's cores with the servers it
    measures, and http.client (header objects, an email parser per response) cost the
    lifecycle rows ~5 ms of CPU per lifecycle, about a tenth of what they measured."""

    def __init__(self, base_url: str, stats: Outcome, lock: threading.Lock) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.stats, self.lock = stats, lock
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _exchange(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(head + body)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self.buffer[:end].split(b"\r\n")
        self.buffer = self.buffer[end + 4:]
        status = int(lines[0].split(None, 2)[1])
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise http.client.HTTPException("chunked answers are not expected from these servers")
        if length is None:  # no length: the body runs to the end of the connection
            while self._fill(eof_ok=True):
                pass
            length, close = len(self.buffer), True
        while len(self.buffer) < length:
            self._fill()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        if close:
            self._drop()
        return status, data

    def _fill(self, eof_ok: bool = False) -> bool:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk and not eof_ok:
            raise http.client.RemoteDisconnected("the server closed the connection")
        self.buffer += chunk
        return bool(chunk)

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, bytes]:
        start = time.perf_counter()
        body = body or b""
        head = "".join([f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n",
                        *(f"{k}: {v}\r\n" for k, v in (headers or {}).items()), "\r\n"]).encode()
        status, data = 0, b""
        for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
            try:
                status, data = self._exchange(head, body)
                break
            except (OSError, ValueError, IndexError, http.client.HTTPException):
                self._drop()
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
        body = None if payload is None else orjson.dumps(payload)
        status, data = self.request(method, path, {**headers, "Content-Type": "application/json"}, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return orjson.loads(data)


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
    started, cpu = time.monotonic(), time.process_time()

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
    stats.cpu_client = time.process_time() - cpu
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
        total.cpu_client += part.cpu_client
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
