"""Throughput of `hustlexp serve` against a bare Flask + psycopg transition, side by side.

    python benchmarks/bench_throughput.py [--runs 3] [--duration 5] [--warmup 2] [--workers 4]
                                          [--python] [--connections 16] [--slow-connections 128]
                                          [--threads N] [--rows create,accept,...]
    nox -s bench -- --runs 3

Starts an embedded PostgreSQL, the fake Stripe over real HTTP (with a latency switch),
`hustlexp serve` and benchmarks/bare_app.py under the same gunicorn settings, then loads each
row with the same tool (wrk -t2 -c16 when installed, else the Python generator in
benchmarks/loadgen.py; whole lifecycles always use the Python generator) and prints one table:
req/s, p50/p99, errors, and each endpoint ÷ the bare transition.

The rows with Stripe at 0 ms use --connections (16) clients, as issue 11 defines them. The rows
with every Stripe call taking 200 ms use --slow-connections (128): by Little's law a client
waiting 200 ms per Stripe call sends at most 5 of them a second, so 16 clients could never
create more than 80 tasks/s however fast the server is, and the row would measure the client.
With 128 clients the ceiling is 640/s, above what this machine creates with Stripe at 0 ms
(64 clients capped the row at 320/s, below half of that), so the row measures the server (its
worker threads and pool). Each fresh server first runs --warmup seconds of
unmeasured lifecycles, so the rows see it in its steady state. Each row's label states its
client count. With --runs N every row is measured N times and shown as the median with its
spread (min–max). --rows measures only the rows named (the bare transition always runs), for
profiling one endpoint. The `me` row (GET /api/users/me) has no goal: it is the floor every
signed-in endpoint stands on (token, users row, envelope). Numbers depend on the machine and
its load; they are for comparing changes, never asserted."""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests as http
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import loadgen  # noqa: E402
from hustlexp.devtools import emulator_token  # noqa: E402
from tests.fakes.stripe_fake import FakeStripe  # noqa: E402  (signs the webhook events)
from tests.images import JPEG  # noqa: E402
from tests.pg import TestServer  # noqa: E402

PROJECT = "hustlexp-bench"
SECRET = "whsec_bench"
SLOW_STRIPE = 0.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_headers(uid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator_token(uid, f'{uid}@example.test', PROJECT)}"}


def task_body() -> dict[str, Any]:
    return {"title": "Bench task", "description": "Measured", "price": 4500, "location": "Lab",
            "category": "assembly", "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()}


def signed_success(pi_id: str, escrow_id: str, amount: int) -> tuple[bytes, str]:
    event = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "payment_intent.succeeded",
             "created": int(time.time()), "livemode": False,
             "data": {"object": {"id": pi_id, "object": "payment_intent", "amount": amount,
                                 "amount_received": amount, "status": "succeeded", "currency": "usd",
                                 "metadata": {"escrow_id": escrow_id}}}}
    return FakeStripe.sign(event, SECRET)


# -- the whole lifecycle, one client -------------------------------------------------------------

def lifecycle(client: loadgen.Client, arg: tuple[str, str], deadline: float) -> None:
    """create -> fund webhook -> accept -> photo -> submit -> approve, until the deadline."""
    poster, worker = token_headers(arg[0]), token_headers(arg[1])
    boundary = "benchboundary"
    photo = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
             f"Content-Type: image/jpeg\r\n\r\n").encode() + JPEG + f"\r\n--{boundary}--\r\n".encode()
    multipart = {**worker, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    while time.monotonic() < deadline:
        task = client.json("POST", "/api/tasks", poster, task_body())["data"]
        payload, signature = signed_success(task["payment_intent_id"], task["escrow_id"], task["price"])
        status, _ = client.request("POST", "/webhooks/stripe", {"Content-Type": "application/json",
                                                                "Stripe-Signature": signature}, payload)
        if status != 200:
            raise RuntimeError(f"webhook -> {status}")
        client.json("POST", f"/api/tasks/{task['id']}/accept", worker, {})
        status, body = client.request("POST", f"/api/tasks/{task['id']}/proof/photos", multipart, photo)
        if status != 201:
            raise RuntimeError(f"photo -> {status}: {body[:200]!r}")
        proof = client.json("POST", f"/api/tasks/{task['id']}/proof", worker, {"description": "Done"})["data"]
        client.json("POST", f"/api/proofs/{proof['proof']['id']}/accept", poster, {})
        with client.lock:
            client.stats.units += 1


# -- the served processes -----------------------------------------------------------------------

class StripeProcess:
    """The fake Stripe served by benchmarks/stripe_server.py, a process of its own."""

    def __init__(self, log: Path) -> None:
        with open(log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "stripe_server.py")],
                                         stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().split()
        if len(line) != 2:
            self.stop()
            raise RuntimeError("the fake Stripe did not start")
        self.url, self.control = line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def set_latency(self, seconds: float) -> None:
        http.put(f"{self.control}/latency", data=str(seconds).encode(), timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _postmaster(conn: psycopg.Connection[Any]) -> int:
    """The pid of the PostgreSQL server behind `conn` (0 when it is not on this machine)."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        with open(f"/proc/{backend[0] if backend else 0}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def _tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its live descendants, plus
    the children they already reaped (PostgreSQL's ended backends)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[1] is the parent pid; [11..14] utime, stime, cutime, cstime (proc(5), from state on)
        stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / ticks)
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


class Meter:
    """CPU per request of the process trees that serve a row: the app (its gunicorn and, for
    hustlexp, the dispatcher), PostgreSQL and the fake Stripe. Load on the shared machine moves
    req/s a lot and CPU-time per request little."""

    def __init__(self, postgres: int, stripe: int) -> None:
        self.postgres, self.stripe = postgres, stripe
        self.app = 0

    def __call__(self, fn: Callable[[], loadgen.Outcome]) -> loadgen.Outcome:
        roots = (self.app, self.postgres, self.stripe)
        before = [_tree_cpu(r) for r in roots]
        outcome = fn()
        spent = [_tree_cpu(r) - b for r, b in zip(roots, before, strict=True)]
        outcome.cpu_app, outcome.cpu_db, outcome.cpu_stripe = spent
        return outcome


def _wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if http.get(url, timeout=2).status_code < 500:
                return
        except http.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url}")


@contextmanager
def served(cmd: list[str], env: dict[str, str], health: str, what: str, log: Path) -> Iterator[int]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(health, proc, what)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


def serve_threads() -> int:
    """The thread count `hustlexp serve` uses by default (1 before it had one)."""
    from hustlexp import commands

    return int(getattr(commands, "DEFAULT_THREADS", 1))


# -- the bench ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, db_url: str, stripe: StripeProcess, meter: Meter) -> None:
        self.args, self.db_url, self.stripe, self.meter = args, db_url, stripe, meter
        self.api = f"http://127.0.0.1:{args.port}"
        self.bare = f"http://127.0.0.1:{args.bare_port}"
        self.use_wrk = loadgen.have_wrk() and not args.python
        self.delays: dict[str, list[tuple[float, float, int, int]]] = {"lifecycle": [], "lifecycle_slow": []}

    def load(self, base: str, reqs: list[loadgen.Request], *, cycle: bool,
             connections: int | None = None) -> loadgen.Outcome:
        clients = connections or self.args.connections
        return self.meter(lambda: loadgen.run_requests(base, reqs, clients, self.args.duration,
                                                       cycle=cycle, use_wrk=self.use_wrk))

    def lifecycles(self, pairs: list[tuple[str, str]]) -> loadgen.Outcome:
        return self.meter(lambda: loadgen.run_python(self.api, lifecycle, pairs, self.args.duration))

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        with psycopg.connect(self.db_url, autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def register(self, uid: str, payout: bool = False) -> str:
        headers = token_headers(uid)
        r = http.post(f"{self.api}/api/users", json={"full_name": uid}, headers=headers, timeout=30)
        assert r.status_code == 201, r.text
        if payout:
            r = http.put(f"{self.api}/api/users/me/payout-account", headers=headers, timeout=30,
                         json={"stripe_connect_id": f"acct_{uuid.uuid4().hex[:16]}"})
            assert r.status_code == 200, r.text
        return str(r.json()["data"]["id"])

    def seed_tasks(self, poster_id: str, n: int, escrow: str, tag: str) -> list[dict[str, Any]]:
        """n OPEN tasks of one poster straight in SQL; escrow 'PENDING' (with an intent id) or 'FUNDED'."""
        rows = self.sql(
            """WITH t AS (INSERT INTO tasks (poster_id, title, description, price, location, category, deadline)
                          SELECT %(poster)s, 'Seeded ' || g, 'Seeded for the benchmark', 4500, 'Lab', 'assembly',
                                 now() + interval '2 days' FROM generate_series(1, %(n)s) g RETURNING id, price)
               INSERT INTO escrows (task_id, amount, stripe_payment_intent_id)
               SELECT id, price, 'pi_' || %(tag)s || replace(id::text, '-', '') FROM t
               RETURNING id, task_id, amount, stripe_payment_intent_id""",
            {"poster": poster_id, "n": n, "tag": tag})
        if escrow == "FUNDED":
            self.sql("UPDATE escrows SET state = 'FUNDED', funded_at = now() WHERE stripe_payment_intent_id "
                     "LIKE %s", (f"pi_{tag}%",))
        self.settle()
        return rows

    def settle(self) -> None:
        """Vacuum and analyse every table and checkpoint, before a row is measured: else
        autovacuum and the checkpointer do it during the next row, and their CPU lands on that
        row's requests (PostgreSQL's CPU per request swung by half from run to run). Analysing
        also stands in for the autovacuum a live database gets every minute: a table still
        without statistics (notifications, on a database seconds old) gave each connection a
        generic plan made for an empty table and kept for its life (accept's database CPU was
        3.0 ms against 1.2 after ANALYZE, before notifications_created_idx became BRIN)."""
        self.sql("VACUUM (ANALYZE)")
        self.sql("CHECKPOINT")

    def measure_bare(self) -> loadgen.Outcome:
        """The yardstick row (self.meter.app is the bare app's pid), once every worker answers and
        after --warmup seconds of the same load unmeasured (a row begun while some workers were
        still importing cost twice the CPU per request)."""
        transition = [("POST", "/transition", {}, b"")]
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < self.args.workers and time.monotonic() < deadline:
            # A new connection each time: any worker that has booted may take it.
            seen.add(http.get(f"{self.bare}/health", headers={"Connection": "close"}, timeout=10).json()["pid"])
        if self.args.warmup:
            loadgen.run_requests(self.bare, transition, self.args.connections, self.args.warmup, cycle=True,
                                 use_wrk=self.use_wrk)
        return self.load(self.bare, transition, cycle=True)

    def measure(self) -> dict[str, loadgen.Outcome]:
        out: dict[str, loadgen.Outcome] = {}
        wanted = self.args.rows
        run = uuid.uuid4().hex[:8]
        self.stripe.set_latency(0.0)
        pairs = []
        for i in range(max(self.args.connections, self.args.slow_connections)):
            p, w = f"lc-poster-{run}-{i}", f"lc-worker-{run}-{i}"
            self.register(p)
            self.register(w, payout=True)
            pairs.append((p, w))
        if self.args.warmup:
            # Unmeasured lifecycles first: every endpoint runs on the workers' connections, so the
            # rows measure a server in its steady state (plans cached, statements prepared), not
            # one whose first requests of each kind plan everything.
            loadgen.run_python(self.api, lifecycle, pairs[:self.args.connections], self.args.warmup)

        poster_uid = f"poster-{run}"
        poster_id = self.register(poster_uid)
        open_now = self.sql("SELECT count(*) AS n FROM tasks WHERE state = 'OPEN'")[0]["n"]
        if open_now >= 1_000:  # no seeding (which settles) before the first row: settle here
            self.settle()

        poster = token_headers(poster_uid)
        # Enough one-shot requests for the fastest rate we could see in the time given.
        budget = int(self.args.duration * 2500)

        if "me" in wanted:
            out["me"] = self.load(self.api, [("GET", "/api/users/me", poster, b"")], cycle=True)
        for board in (1_000, 100_000):
            if f"list{board}" not in wanted:
                continue
            if open_now < board:
                self.seed_tasks(poster_id, board - open_now, "FUNDED", f"list{run}{board}")
                open_now = board
            out[f"list{board}"] = self.load(self.api, [("GET", "/api/tasks?limit=20", poster, b"")], cycle=True)

        def create_requests() -> list[loadgen.Request]:
            return [("POST", "/api/tasks", {**poster, "Content-Type": "application/json"},
                     json.dumps(task_body()).encode())]

        if "create" in wanted:
            out["create"] = self.load(self.api, create_requests(), cycle=True)
        if "webhook" in wanted:
            out["webhook"] = self.webhooks(poster_id, budget, run)
        if "accept" in wanted:
            out["accept"] = self.accepts(poster_id, budget, run)
        if "lifecycle" in wanted:
            self.settle()
            since = self.sql("SELECT now() AS now")[0]["now"]
            out["lifecycle"] = self.lifecycles(pairs[:self.args.connections])
            self.delays["lifecycle"].append(self.dispatch_delay(since))
        if not {"create_slow", "lifecycle_slow"} & wanted:
            return out
        self.stripe.set_latency(SLOW_STRIPE)
        try:
            if "create_slow" in wanted:
                self.settle()
                out["create_slow"] = self.load(self.api, create_requests(), cycle=True,
                                               connections=self.args.slow_connections)
            if "lifecycle_slow" in wanted:
                self.settle()
                since = self.sql("SELECT now() AS now")[0]["now"]
                out["lifecycle_slow"] = self.lifecycles(pairs[:self.args.slow_connections])
                self.delays["lifecycle_slow"].append(self.dispatch_delay(since))
        finally:
            self.stripe.set_latency(0.0)
        return out

    def webhooks(self, poster_id: str, budget: int, run: str) -> loadgen.Outcome:
        """`budget` payment_intent.succeeded deliveries, each for its own PENDING escrow, sent once."""
        pending = self.seed_tasks(poster_id, budget, "PENDING", f"wh{run}")
        hooks = []
        for e in pending:
            payload, signature = signed_success(e["stripe_payment_intent_id"], str(e["id"]), e["amount"])
            hooks.append(("POST", "/webhooks/stripe", {"Content-Type": "application/json",
                                                      "Stripe-Signature": signature}, payload))
        return self.load(self.api, hooks, cycle=False)

    def accepts(self, poster_id: str, budget: int, run: str) -> loadgen.Outcome:
        """`budget` FUNDED tasks, each accepted once by one of --connections workers."""
        funded = self.seed_tasks(poster_id, budget, "FUNDED", f"acc{run}")
        workers = [token_headers(f"acc-worker-{run}-{i}") for i in range(self.args.connections)]
        for i in range(self.args.connections):
            self.register(f"acc-worker-{run}-{i}", payout=True)
        accepts = [("POST", f"/api/tasks/{e['task_id']}/accept", {**workers[i % len(workers)],
                    "Content-Type": "application/json"}, b"{}") for i, e in enumerate(funded)]
        return self.load(self.api, accepts, cycle=False)

    def dispatch_delay(self, since: Any) -> tuple[float, float, int, int]:
        """How long the lifecycles' transfers waited between the approval's commit and Stripe's
        answer (money_outbox created_at -> completed_at): (p50 s, p99 s, sent, not sent in 60 s)."""
        deadline = time.monotonic() + 60
        query = """SELECT count(*) FILTER (WHERE status = 'SUCCEEDED') AS sent,
                          count(*) FILTER (WHERE status <> 'SUCCEEDED') AS unsent,
                          percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at))
                              FILTER (WHERE status = 'SUCCEEDED') AS p50,
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at))
                              FILTER (WHERE status = 'SUCCEEDED') AS p99
                     FROM money_outbox WHERE kind = 'TRANSFER' AND created_at >= %s"""
        while (row := self.sql(query, (since,))[0])["unsent"] and time.monotonic() < deadline:
            time.sleep(0.5)
        return float(row["p50"] or 0), float(row["p99"] or 0), int(row["sent"]), int(row["unsent"])


Row = tuple[str, str, str, Callable[[dict[str, float]], str]]  # key, label, goal, judge of the medians


def rows(connections: int, slow: int, wanted: set[str]) -> list[Row]:
    """The table's rows that were measured, each labelled with the client count it runs with."""
    return [(key, label.replace("{c}", str(connections)).replace("{s}", str(slow)), goal, judge)
            for key, label, goal, judge in ROWS if key in wanted]


ROWS: list[Row] = [
    ("bare", "bare transition (lock, check, update, ledger row)", "-", lambda m: ""),
    # No goal: the cheapest signed-in request (token, one users row, the envelope), the floor
    # under every endpoint below; what it costs beyond the bare transition, they all pay.
    ("me", "GET /api/users/me (floor: token + user row)", "-", lambda m: ""),
    ("create", "POST /api/tasks (Stripe at 0 ms)", ">= 0.5", lambda m: _ge(m["create"] / m["bare"], 0.5)),
    ("webhook", "POST /webhooks/stripe (payment_intent.succeeded)", ">= 0.6",
     lambda m: _ge(m["webhook"] / m["bare"], 0.6)),
    ("accept", "POST /api/tasks/{id}/accept", ">= 0.5", lambda m: _ge(m["accept"] / m["bare"], 0.5)),
    ("list1000", "GET /api/tasks?limit=20, 1,000 OPEN", ">= 0.6", lambda m: _ge(m["list1000"] / m["bare"], 0.6)),
    ("list100000", "GET /api/tasks?limit=20, 100,000 OPEN", ">= 0.6",
     lambda m: _ge(m["list100000"] / m["bare"], 0.6)),
    ("lifecycle", "whole lifecycle, {c} clients (lifecycles/s)", ">= 90/s", lambda m: _ge(m["lifecycle"], 90)),
    ("create_slow", "POST /api/tasks, Stripe at 200 ms, {s} clients", ">= 50 % of 0 ms",
     lambda m: _ge(m["create_slow"] / m["create"], 0.5)),
    ("lifecycle_slow", "lifecycle, Stripe at 200 ms, {s} clients (lifecycles/s)", ">= 60/s",
     lambda m: _ge(m["lifecycle_slow"], 60)),
]


def _judge(judge: Callable[[dict[str, float]], str], medians: dict[str, float]) -> str:
    try:
        return judge(medians)
    except KeyError:  # judged against a row left out with --rows
        return "(not judged)"


def _ge(value: float, goal: float) -> str:
    return "met" if value >= goal else "NOT met"


def report_delays(delays: dict[str, list[tuple[float, float, int, int]]]) -> None:
    print("\npayouts: approval commit -> transfer SUCCEEDED at Stripe (the dispatcher), per run")
    for key, label in (("lifecycle", "lifecycle, Stripe at 0 ms"), ("lifecycle_slow", "lifecycle, Stripe at 200 ms")):
        if not delays[key]:
            continue
        runs = "; ".join(f"p50 {p50:.2f} s p99 {p99:.2f} s ({sent} sent, {unsent} not)"
                         for p50, p99, sent, unsent in delays[key])
        print(f"  {label:30} {runs}")


def report(runs: list[dict[str, loadgen.Outcome]], tool: str, table: list[tuple[str, str, str, Any]]) -> None:
    def rate(key: str, o: loadgen.Outcome) -> float:
        return o.unit_rate if key.startswith("lifecycle") else o.rate

    medians = {key: statistics.median(rate(key, r[key]) for r in runs) for key, *_ in table}
    print(f"\nload: {tool}; {len(runs)} run(s); median (min-max)")
    head = f"{'endpoint':58} {'rate/s':>22} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'÷ bare':>7}  goal"
    print(head)
    print("-" * len(head))
    for key, label, goal, judge in table:
        rates = [rate(key, r[key]) for r in runs]
        p50 = statistics.median(r[key].p50 or 0 for r in runs)
        p99 = statistics.median(r[key].p99 or 0 for r in runs)
        errors = sum(r[key].errors for r in runs)
        ratio = "" if key.startswith("lifecycle") else f"{medians[key] / medians['bare']:.2f}"
        spread = f"{medians[key]:.0f} ({min(rates):.0f}-{max(rates):.0f})"
        print(f"{label:58} {spread:>22} {p50:8.1f} {p99:8.1f} {errors:7d} {ratio:>7}  {goal} {_judge(judge, medians)}")

    print("\nCPU ms per request (per lifecycle for lifecycles), median of the runs; rate/s of each run;"
          "\n`load` is the Python generator's own CPU (it shares the cores; not in the total)")
    head = f"{'endpoint':58} {'app':>7} {'db':>7} {'stripe':>7} {'total':>7} {'load':>6}  rate/s per run"
    print(head)
    print("-" * len(head))
    for key, label, *_ in table:
        def per(o: loadgen.Outcome, spent: float, key: str = key) -> float:
            done = o.units if key.startswith("lifecycle") else o.requests
            return spent * 1000 / done if done else 0.0

        cpu = [statistics.median(per(r[key], getattr(r[key], f"cpu_{part}")) for r in runs)
               for part in ("app", "db", "stripe", "client")]
        each = " ".join(f"{rate(key, r[key]):.0f}" for r in runs)
        load = f"{cpu[3]:6.2f}" if cpu[3] else f"{'-':>6}"
        print(f"{label:58} {cpu[0]:7.2f} {cpu[1]:7.2f} {cpu[2]:7.2f} {sum(cpu[:3]):7.2f} {load}  {each}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per row")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of unmeasured lifecycles on each fresh server before its rows (0: none)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers, both apps")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker, both apps "
                        "(default: what `hustlexp serve` uses)")
    parser.add_argument("--connections", type=int, default=16, help="clients of the rows with Stripe at 0 ms")
    parser.add_argument("--slow-connections", type=int, default=128,
                        help="clients of the rows with Stripe at 200 ms (enough that the client count does not "
                             "bound them: at most clients / 0.2 s requests a second)")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--rows", default=",".join(key for key, *_ in ROWS),
                        help="comma-separated rows to measure (bare always runs), e.g. --rows create,accept; "
                             f"all: {','.join(key for key, *_ in ROWS[1:])}")
    parser.add_argument("--python", action="store_true", help="use the Python load generator even if wrk exists")
    args = parser.parse_args()
    known = {key for key, *_ in ROWS}
    args.rows = {"bare", *(r.strip() for r in args.rows.split(",") if r.strip())}
    if args.rows - known:
        parser.error(f"unknown rows: {', '.join(sorted(args.rows - known))}")
    args.port = args.port or free_port()
    # Its own free port: port + 1 may be held by any socket (it was, once, by a client's).
    args.bare_port = free_port()
    while args.bare_port == args.port:
        args.bare_port = free_port()
    threads = args.threads or serve_threads()

    pg = TestServer()
    tmp = Path(tempfile.mkdtemp(prefix="hustlexp-bench-"))
    log = tmp / "servers.log"
    stripe = StripeProcess(log)
    try:
        bare_name = f"bare_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(bare_name)))
        bare_url = pg.url_for(bare_name)
        with psycopg.connect(bare_url, autocommit=True) as conn:
            from benchmarks.bare_app import SCHEMA

            conn.execute(SCHEMA)
            meter = Meter(_postmaster(conn), stripe.pid)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "FIREBASE_", "HUSTLEXP_"))}
        env |= {"HUSTLEXP_ENV": "development", "STRIPE_API_BASE": stripe.url,
                "STRIPE_SECRET_KEY": "sk_test_bench", "STRIPE_WEBHOOK_SECRET": SECRET,
                "FIREBASE_PROJECT_ID": PROJECT, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
                "HUSTLEXP_STORAGE_DIR": str(tmp / "uploads"), "BARE_DATABASE_URL": bare_url,
                # One poster creates tasks as fast as it can: the request limits would refuse it.
                "HUSTLEXP_RATE_LIMITS": "off",
                "PYTHONPATH": str(ROOT)}
        serve_cmd = [sys.executable, "-m", "hustlexp.cli", "serve", "--port", str(args.port),
                     "--workers", str(args.workers)]
        if args.threads:
            serve_cmd += ["--threads", str(args.threads)]
        bare_cmd = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind",
                    f"127.0.0.1:{args.bare_port}", "--log-level", "warning"]
        bare_cmd += ["--worker-class", "gthread", "--threads", str(threads)] if threads > 1 else []
        print(f"hustlexp serve --workers {args.workers} (threads {threads}) and the bare app alike; "
              f"{args.connections} connections ({args.slow_connections} with slow Stripe), "
              f"{args.duration:g} s a row; logs in {log}", flush=True)
        runs = []
        use_wrk = False
        delays: dict[str, list[tuple[float, float, int, int]]] = {"lifecycle": [], "lifecycle_slow": []}
        for n in range(args.runs):
            # A fresh database each run: the board sizes and the notification history start over.
            db_url = pg.url_for(pg.create_database())
            bench = Bench(args, db_url, stripe, meter)
            use_wrk = bench.use_wrk
            # The bare app is stopped before hustlexp serve starts: the two apps' pools together
            # (4 x 10 and 4 x 16 + the dispatcher's 17) would pass PostgreSQL's 100 connections.
            with served([*bare_cmd, "benchmarks.bare_app:app"], env, f"{bench.bare}/health", "bare app",
                        log) as meter.app:
                bare = bench.measure_bare()
            with served(serve_cmd, env | {"DATABASE_URL": db_url}, f"{bench.api}/health", "hustlexp serve",
                        log) as meter.app:
                runs.append({"bare": bare, **bench.measure()})
            for key, values in bench.delays.items():
                delays[key] += values
            print(f"run {n + 1}/{args.runs} done", flush=True)
        table = rows(args.connections, args.slow_connections, args.rows)
        report(runs, "wrk -t2 (+ Python for lifecycles), clients per row as labelled" if use_wrk
               else "Python generator, clients per row as labelled", table)
        report_delays(delays)
    finally:
        stripe.stop()
        pg.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
