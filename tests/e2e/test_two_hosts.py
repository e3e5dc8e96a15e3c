"""Two API hosts on one database behave as one service: two `hustlexp serve` processes (each
with its own dispatcher and its own disk) share the request limits, the notifications, the
photos (in one S3 bucket: moto's server, reached by boto3 over HTTP), and push delivery (each
push sent once, through the real firebase-admin client to a local fake FCM)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from hustlexp.services.limits import RULES
from tests import pg as pg_helpers
from tests.api.conftest import SigningKey
from tests.e2e.conftest import serve_stack
from tests.e2e.system import Actor, Served, World, data, error
from tests.fakes import s3_server
from tests.fakes.fcm_fake import FakeFCM
from tests.images import JPEG

DELIVERY_DEADLINE = 60.0  # generous: a bound on waiting, not a performance claim


@contextmanager
def second_host(first: Served, workdir: Path) -> Iterator[Served]:
    """Another `hustlexp serve` on the first one's database, fake Stripe and fake FCM."""
    import subprocess
    import sys

    from tests.e2e.conftest import _free_port, _stop, _wait_for_health

    port = _free_port()
    log_path = workdir / "second.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.server", "--host", "127.0.0.1", "--port",
                                 str(port), "--workers", "1"], cwd=workdir, env=first.env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_for_health(base_url, proc, log_path)
        yield replace(first, base_url=base_url, log_path=log_path, api_pid=proc.pid)
    finally:
        _stop(proc)


def on(world: World, actor: Actor) -> Actor:
    """The same signed-in user, talking to another host."""
    return Actor(world, actor.uid, actor.profile, actor.headers)


def test_two_hosts_share_limits_notifications_photos_and_push(pg: pg_helpers.TestServer, cert_url: str,
                                                       signing_key: SigningKey,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("two-hosts")
    with ExitStack() as stack:
        fcm = stack.enter_context(FakeFCM())
        endpoint = stack.enter_context(s3_server.s3_server())
        s3_server.client(endpoint).create_bucket(Bucket="hustlexp-two-hosts")
        a = stack.enter_context(serve_stack(pg, cert_url, signing_key, workdir, FCM_API_BASE=fcm.url,
                                            FCM_CREDENTIALS=json.dumps(fcm.service_account()),
                                            HUSTLEXP_STORAGE="s3", HUSTLEXP_S3_BUCKET="hustlexp-two-hosts",
                                            HUSTLEXP_S3_ENDPOINT_URL=endpoint, **s3_server.CREDENTIALS))
        b = stack.enter_context(second_host(a, workdir))
        conn = stack.enter_context(psycopg.connect(a.db_url, autocommit=True, row_factory=dict_row))
        world_a, world_b = World(a, conn), World(b, conn)

        poster_a = world_a.register("poster")
        poster_b = on(world_b, poster_a)
        data(poster_b.post("/api/users/me/devices", json={"token": "phone-1", "platform": "ios"}))

        # One limit across both hosts: creations alternate between them.
        limit = RULES["tasks.create"].limit
        tasks = [world_a.post_task(poster_a if n % 2 else poster_b) for n in range(limit)]
        refused = poster_a.post("/api/tasks", json={"title": "One too many", "description": "x", "price": 5000,
                                                    "location": "1 Main St", "category": "assembly",
                                                    "deadline": "2099-01-01T00:00:00Z"})
        error(refused, 429, "RATE_LIMITED")
        assert refused.headers["RateLimit-Limit"] == str(limit) and int(refused.headers["Retry-After"]) >= 1
        error(poster_b.post("/api/tasks", json={}), 429, "RATE_LIMITED")

        # Stripe's webhooks land on either host; each funding notifies the poster (HIGH: pushed now).
        for n, task in enumerate(tasks):
            (world_a if n % 2 else world_b).fund(task)
        listed_on_a = {x["task_id"] for x in poster_a.notifications() if x["type"] == "ESCROW_FUNDED"}
        listed_on_b = {x["task_id"] for x in poster_b.notifications() if x["type"] == "ESCROW_FUNDED"}
        assert listed_on_a == listed_on_b == {t["id"] for t in tasks}

        # Both hosts' dispatchers heard every wake-up; each push went out exactly once, and was
        # recorded as sent (a dispatcher records its batch once FCM has answered: wait for both).
        def funded_rows() -> list[dict[str, Any]]:
            return conn.execute(
                "SELECT sent_at, push_due_at, push_error FROM notifications WHERE user_id = %s AND category = "
                "'ESCROW_FUNDED'", (poster_a.id,)).fetchall()

        deadline = time.monotonic() + DELIVERY_DEADLINE
        while time.monotonic() < deadline and (len(fcm.sent_to("phone-1")) < limit
                                               or any(r["sent_at"] is None for r in funded_rows())):
            time.sleep(0.2)
        pushed = Counter(m["data"]["task_id"] for m in fcm.sent_to("phone-1")
                         if m["data"]["category"] == "ESCROW_FUNDED")
        assert pushed == Counter({t["id"]: 1 for t in tasks})
        rows = funded_rows()
        assert len(rows) == limit and all(r["sent_at"] and r["push_due_at"] is None and r["push_error"] is None
                                          for r in rows)

        # A photo announced through A goes straight to the bucket, is confirmed through B, and
        # A serves it: nothing of it lives on either host's disk.
        worker_a = world_a.worker()
        world_a.accept(tasks[0], worker_a)
        target = data(worker_a.post("/api/uploads", json={"bucket": "proofs", "task_id": tasks[0]["id"],
                                                          "content_type": "image/jpeg", "size": len(JPEG)}), 201)
        assert target["upload_url"].startswith(endpoint)
        assert requests.put(target["upload_url"], data=JPEG, headers=target["headers"], timeout=10).status_code == 200
        photo = data(on(world_b, worker_a).post(f"/api/uploads/{target['upload']['id']}/confirm", json={}))["photo"]
        served = poster_a.get(photo["url"])
        assert served.status_code == 200 and served.content == JPEG
        stored = s3_server.client(endpoint).list_objects_v2(Bucket="hustlexp-two-hosts").get("Contents", [])
        assert [o["Key"] for o in stored] == [photo["storage_key"]]
        assert not any(p.is_file() for p in workdir.rglob("*.jpg"))
        world_a.check_money()
