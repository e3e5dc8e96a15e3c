"""How much SQL each lifecycle request sends: statements, transactions and savepoints per
endpoint, in process (Flask test client) on a real embedded PostgreSQL, Stripe behind the
in-process fake. Profiling only: psycopg's cursor is wrapped to count what goes over the wire.

    python benchmarks/sql_profile.py [--n 20] [--show ENDPOINT] [--history N]

Also prints the CPU milliseconds PostgreSQL spent per request of each endpoint (its process
tree, read from /proc: one request at a time, so nothing else is counted) and, for --show,
each statement's mean round-trip time over the n requests (the server's work plus a local
socket round trip), so the heavy statements stand out. With --history each worker starts with
N completed tasks: approve must cost the same as with none."""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = "127.0.0.1:9099"

from benchmarks.bench_throughput import _postmaster, _tree_cpu
from hustlexp.app import close_app, create_app
from hustlexp.devtools import emulator_token
from hustlexp.services.badge_catalog import CATALOG as BADGES
from hustlexp.services.payments import PaymentsGateway
from tests.fakes.stripe_fake import FakeStripe
from tests.images import JPEG
from tests.pg import TestServer

PROJECT = "hustlexp-profile"
SECRET = "whsec_profile"

WARMUP = 5
seen: list[str] = []
took: list[float] = []
_execute = psycopg.Cursor.execute
_command = psycopg.Connection._exec_command


def counting_execute(self: Any, query: Any, *args: Any, **kw: Any) -> Any:
    seen.append(str(query) if not hasattr(query, "as_string") else query.as_string(self.connection))
    start = time.perf_counter()
    try:
        return _execute(self, query, *args, **kw)
    finally:
        took.append(time.perf_counter() - start)


def counting_command(self: Any, command: Any, *args: Any, **kw: Any) -> Any:
    text = command.decode() if isinstance(command, bytes) else str(command)
    seen.append(text if not hasattr(command, "as_string") else command.as_string(self))
    start = time.perf_counter()
    try:
        return _command(self, command, *args, **kw)
    finally:
        took.append(time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="lifecycles to average over")
    parser.add_argument("--show", default=None, help="print every statement of this endpoint (one request)")
    parser.add_argument("--history", type=int, default=0,
                        help="completed tasks each worker already has (seeded by SQL): what approve costs must "
                             "not grow with it")
    args = parser.parse_args()
    server, fake = TestServer(), FakeStripe()
    per: dict[str, list[Counter[str]]] = defaultdict(list)
    shown: dict[str, list[str]] = {}
    times: list[list[float]] = []  # --show: each request's statement times, in order
    cpu: dict[str, list[float]] = defaultdict(list)
    with server.database() as url, tempfile.TemporaryDirectory() as tmp:
        app = create_app({"HUSTLEXP_ENV": "development", "DATABASE_URL": url, "FIREBASE_PROJECT_ID": PROJECT,
                          "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099", "STRIPE_WEBHOOK_SECRET": SECRET,
                          "HUSTLEXP_STORAGE_DIR": tmp},
                         payments=PaymentsGateway("sk_test_profile", http_client=fake.http_client(),
                                                  webhook_secret=SECRET))
        client = app.test_client()
        with psycopg.connect(url) as conn:
            postgres = _postmaster(conn)

        held = [b for b in BADGES if b.id != "perfect-week"]

        def user(connect: bool = False) -> dict[str, str]:
            uid = f"prof-{uuid.uuid4().hex[:12]}"
            h = {"Authorization": f"Bearer {emulator_token(uid, f'{uid}@example.test', PROJECT)}"}
            assert client.post("/api/users", json={"full_name": uid}, headers=h).status_code == 201
            if connect:
                assert client.put("/api/users/me/payout-account", headers=h,
                                  json={"stripe_connect_id": f"acct_{uuid.uuid4().hex[:12]}"}).status_code == 200
                if args.history:
                    seed_history(uid)
            return h

        def seed_history(uid: str) -> None:
            # A seasoned worker: a completed task every other day (tasks without proof may be born
            # COMPLETED, the cheapest history that counts as such), never a perfect week, and every
            # other badge already held, so approve awards nothing new and shows its steady cost.
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("""
                    WITH poster AS (INSERT INTO users (email, full_name)
                                    VALUES ('history-' || %(uid)s || '@example.test', 'Earlier poster') RETURNING id)
                    INSERT INTO tasks (poster_id, worker_id, title, description, price, category, state,
                                       requires_proof, accepted_at, completed_at)
                    SELECT p.id, w.id, 'Earlier task', 'Seeded history', 4500,
                           (ARRAY['cleaning', 'delivery', 'moving', NULL])[1 + n %% 4], 'COMPLETED', false,
                           now() - n * interval '2 days', now() - n * interval '2 days'
                      FROM poster p, users w, generate_series(1, %(n)s) AS n WHERE w.firebase_uid = %(uid)s""",
                             {"n": args.history, "uid": uid})
                conn.execute("""
                    INSERT INTO badges (user_id, badge_type, badge_tier, awarded_for)
                    SELECT w.id, b.id, b.tier, b.condition FROM users w,
                           unnest(%(ids)s::text[], %(tiers)s::int[], %(conditions)s::text[]) AS b (id, tier, condition)
                     WHERE w.firebase_uid = %(uid)s""",
                             {"uid": uid, "ids": [b.id for b in held], "tiers": [b.tier for b in held],
                              "conditions": [b.condition for b in held]})

        def measured(name: str, call: Any) -> Any:
            seen.clear()
            took.clear()
            before = _tree_cpu(postgres)
            response = call()
            cpu[name].append(_tree_cpu(postgres) - before)
            assert response.status_code < 300, (name, response.get_json())
            counts = Counter(statements=0, transactions=0, savepoints=0)
            for text in seen:
                head = text.strip().split(None, 1)[0].upper() if text.strip() else ""
                if head == "BEGIN":
                    counts["transactions"] += 1
                elif head == "SAVEPOINT":
                    counts["savepoints"] += 1
                elif head not in ("COMMIT", "RELEASE", "ROLLBACK"):
                    counts["statements"] += 1
            per[name].append(counts)
            if args.show == name:
                shown.setdefault(name, list(seen))
                if len(took) == len(shown[name]):
                    times.append(list(took))
            return response.get_json()

        psycopg.Cursor.execute = counting_execute  # type: ignore[method-assign]
        psycopg.Connection._exec_command = counting_command  # type: ignore[method-assign]
        body = {"title": "Profiled task", "description": "Counted", "price": 4500, "location": "Lab",
                "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()}
        for _ in range(args.n):
            poster, worker = user(), user(connect=True)
            task = measured("create", lambda p=poster: client.post("/api/tasks", json=body, headers=p))["data"]
            payload, header = fake.sign(fake.succeed_payment(task["payment_intent_id"]), SECRET)
            measured("webhook", lambda b=payload, h=header: client.post(
                "/webhooks/stripe", data=b, headers={"Stripe-Signature": h, "Content-Type": "application/json"}))
            measured("accept", lambda t=task, w=worker: client.post(f"/api/tasks/{t['id']}/accept", headers=w))
            measured("photo", lambda t=task, w=worker: client.post(
                f"/api/tasks/{t['id']}/proof/photos", headers=w, content_type="multipart/form-data",
                data={"file": (io.BytesIO(JPEG), "p.jpg")}))
            proof = measured("submit", lambda t=task, w=worker: client.post(
                f"/api/tasks/{t['id']}/proof", json={"description": "Done"}, headers=w))["data"]["proof"]
            measured("approve", lambda p=proof, h=poster: client.post(f"/api/proofs/{p['id']}/accept", headers=h))
            measured("list", lambda h=poster: client.get("/api/tasks?limit=20", headers=h))
        psycopg.Cursor.execute = _execute  # type: ignore[method-assign]
        psycopg.Connection._exec_command = _command  # type: ignore[method-assign]
        close_app(app)
    server.close()
    # The first requests of a connection plan every statement (psycopg prepares a statement on
    # its 5th run): the times leave them out when there are enough others.
    warm = WARMUP if args.n > 2 * WARMUP else 0
    print(f"{'endpoint':10} {'statements':>10} {'transactions':>13} {'savepoints':>11} {'db CPU ms':>10}"
          f"   (mean of {args.n}; CPU of the last {args.n - warm})")
    for name, rows in per.items():
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("statements", "transactions", "savepoints")}
        spent = cpu[name][warm:]
        print(f"{name:10} {mean['statements']:10.1f} {mean['transactions']:13.1f} {mean['savepoints']:11.1f}"
              f" {1000 * sum(spent) / len(spent):10.2f}")
    for name, texts in shown.items():
        runs = times[warm:] if len(times) > warm else times
        print(f"\n-- {name}: every statement of one request, mean round trip in µs over {len(runs)} requests")
        for i, text in enumerate(texts):
            mean_us = 1e6 * sum(r[i] for r in runs) / len(runs) if runs else 0.0
            print(f"  {mean_us:7.0f}  " + " ".join(text.split())[:150])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
