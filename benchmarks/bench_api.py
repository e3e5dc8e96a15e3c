"""Request latencies of the API, in process (Flask test client) on a real embedded PostgreSQL,
with Stripe through the real library against the in-process fake and Firebase in emulator mode.

    python benchmarks/bench_api.py [--n 200]

Prints p50/p95/p99 in milliseconds for: posting a task (task + escrow + PaymentIntent),
browsing the task list, accepting a funded task, and sending a message (spec target: p95 < 100 ms).
Numbers depend on the machine; they are for comparing changes, not for asserting."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = "127.0.0.1:9099"  # tokens from hustlexp dev-token

from hustlexp.app import close_app, create_app
from hustlexp.devtools import emulator_token
from hustlexp.services.payments import PaymentsGateway
from tests.fakes.stripe_fake import FakeStripe
from tests.pg import TestServer

PROJECT = "hustlexp-bench"
SECRET = "whsec_bench"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100)
    return f"p50 {q[49]:6.1f} ms   p95 {q[94]:6.1f} ms   p99 {q[98]:6.1f} ms   (n={len(samples)})"


def _ok(response) -> None:
    assert response.status_code < 300, response.get_json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    n = parser.parse_args().n
    server = TestServer()
    fake = FakeStripe()
    with server.database() as url, tempfile.TemporaryDirectory() as tmp:
        app = create_app({"HUSTLEXP_ENV": "development", "DATABASE_URL": url, "FIREBASE_PROJECT_ID": PROJECT,
                          "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099", "STRIPE_WEBHOOK_SECRET": SECRET,
                          "HUSTLEXP_STORAGE_DIR": tmp},
                         payments=PaymentsGateway("sk_test_bench", http_client=fake.http_client(),
                                                  webhook_secret=SECRET))
        client = app.test_client()

        def user() -> dict[str, str]:
            uid = f"bench-{uuid.uuid4().hex[:12]}"
            headers = {"Authorization": f"Bearer {emulator_token(uid, f'{uid}@example.test', PROJECT)}"}
            assert client.post("/api/users", json={"full_name": uid}, headers=headers).status_code == 201
            return headers

        def timed(fn) -> float:
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1000

        poster, timings = user(), {"POST /api/tasks": [], "GET /api/tasks": [], "POST accept": [],
                                   "POST messages": []}
        body = {"title": "Bench task", "description": "Measured", "price": 4500, "location": "Lab",
                "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()}
        tasks = []
        for _ in range(n):
            out: dict[str, str] = {}

            def post(into: dict[str, str] = out) -> None:
                response = client.post("/api/tasks", json=body, headers=poster)
                _ok(response)
                into.update(response.get_json()["data"])

            timings["POST /api/tasks"].append(timed(post))
            payload, header = fake.sign(fake.succeed_payment(out["payment_intent_id"]), SECRET)
            client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": header})
            tasks.append(out["id"])
        for _ in range(n):
            timings["GET /api/tasks"].append(timed(lambda: client.get("/api/tasks?limit=20", headers=poster)))
        worker = user()
        for task_id in tasks:
            timings["POST accept"].append(timed(lambda t=task_id: _ok(client.post(f"/api/tasks/{t}/accept",
                                                                                  headers=worker))))
        for i in range(min(n, 200)):
            # Within the rate limits (10 an hour per sender and task, 100 a day per sender).
            task_id, sender = tasks[i // 9], (worker, poster)[i % 2]

            def send(t: str = task_id, h: dict[str, str] = sender) -> None:
                response = client.post(f"/api/tasks/{t}/messages", headers=h,
                                       json={"message_type": "TEXT", "content": "On my way"})
                assert response.status_code == 201, response.get_json()

            timings["POST messages"].append(timed(send))
        close_app(app)
    server.close()
    for name, samples in timings.items():
        print(f"{name:18} {percentiles(samples)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
