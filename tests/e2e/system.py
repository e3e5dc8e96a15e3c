"""The E2E harness: the system as served (an API process on real HTTP, fake Stripe as a real
HTTP server, a real PostgreSQL) and the ways a test drives it:

- as the mobile app: ``World.register()`` gives an ``Actor`` calling the API with its own
  Firebase ID token (signed by the tests' key, verified by the real firebase-admin);
- as Stripe: ``World.deliver(event)`` posts a signed webhook;
- as cron: ``World.run_job("expire")`` runs ``hustlexp jobs run expire`` in a subprocess;
- as an operator: ``World.sql()`` on the same database (admin roles, clock moves).

``World.check_money()`` ends every test: for each escrow the test touched, what fake Stripe
moved equals what the database says the escrow is, to the cent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.api.conftest import SigningKey, firebase_claims
from tests.fakes.stripe_fake import FakeStripe
from tests.images import JPEG, PNG  # noqa: F401 (re-exported for the tests)

HTTP_TIMEOUT = 30.0
JOB_TIMEOUT = 120.0
# How long the served money dispatcher may take to pick a row up on a loaded machine (an upper
# bound for waiting, not a performance claim).
DISPATCH_TIMEOUT = 60.0
PLATFORM_KEEPS_PERCENT = 15

Row = dict[str, Any]


@dataclass
class Served:
    """What the session fixture started."""

    base_url: str
    db_url: str
    fake: FakeStripe
    webhook_secret: str
    project_id: str
    signing_key: SigningKey
    env: dict[str, str]
    workdir: Path
    log_path: Path
    api_pid: int = 0  # the gunicorn master


def data(response: requests.Response, status: int = 200) -> Any:
    """The `data` of a success envelope, once the status is the expected one."""
    assert response.status_code == status, f"{response.request.method} {response.url} -> " \
        f"{response.status_code}: {response.text[:1000]}"
    body = response.json()
    assert body["success"] is True and set(body) == {"success", "data", "timestamp"}, body
    return body["data"]


def error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The error object of an error envelope, once status and code are the expected ones."""
    assert response.status_code == status, f"{response.request.method} {response.url} -> " \
        f"{response.status_code}: {response.text[:1000]}"
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    err: dict[str, Any] = body["error"]
    return err


def acknowledged(response: requests.Response) -> Row:
    """The body of a webhook delivery Stripe counts as delivered (200, {"received": true, ...}):
    the webhook answers Stripe, not the app, so it has no envelope."""
    assert response.status_code == 200, f"webhook -> {response.status_code}: {response.text[:1000]}"
    body: Row = response.json()
    assert body["received"] is True, body
    return body


def payout(cents: int) -> int:
    """What the worker receives for `cents`: floor(85 %); the platform keeps the rest
    (DESIGN §7.3). Written out here rather than imported, so the app's formula is checked."""
    return cents * (100 - PLATFORM_KEEPS_PERCENT) // 100


class Actor:
    """One registered user, calling the API as the app does."""

    def __init__(self, world: World, uid: str, profile: Row, headers: dict[str, str]) -> None:
        self.world, self.uid, self.profile, self.headers = world, uid, profile, headers

    @property
    def id(self) -> str:
        return str(self.profile["id"])

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return requests.request(method, self.world.url(path), headers=headers, timeout=HTTP_TIMEOUT, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        if json is None and "files" not in kw and "data" not in kw:
            json = {}
        return self.request("POST", path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.request("PUT", path, json=json, **kw)

    def notifications(self) -> list[Row]:
        listed: list[Row] = data(self.get("/api/notifications", params={"limit": 100}))["notifications"]
        return listed

    def notification_types(self, task_id: str) -> set[str]:
        return {n["type"] for n in self.notifications() if n["task_id"] == task_id}


@dataclass
class World:
    """One test's view of the served system; remembers the escrows the test touched."""

    served: Served
    conn: psycopg.Connection[Row]
    escrows: list[str] = field(default_factory=list)
    money_checked: bool = False

    # -- as the app ---------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.served.base_url + path

    def token(self, uid: str, **claims: Any) -> str:
        project = self.served.project_id
        base = firebase_claims(uid, f"{uid}@example.test", iss=f"https://securetoken.google.com/{project}",
                               aud=project)
        return self.served.signing_key.sign(base | claims)

    def register(self, name: str = "user", **fields: Any) -> Actor:
        uid = f"e2e-{name}-{uuid.uuid4().hex[:12]}"
        headers = {"Authorization": f"Bearer {self.token(uid)}"}
        response = requests.post(self.url("/api/users"), json={"full_name": f"E2E {name}"} | fields,
                                 headers=headers, timeout=HTTP_TIMEOUT)
        return Actor(self, uid, data(response, 201), headers)

    def worker(self, name: str = "worker") -> Actor:
        """A registered worker with a Stripe Connect account for payouts."""
        actor = self.register(name)
        account = f"acct_{uuid.uuid4().hex[:16]}"
        saved = data(actor.put("/api/users/me/payout-account", json={"stripe_connect_id": account}))
        assert saved["stripe_connect_id"] == account
        actor.profile["stripe_connect_id"] = account
        return actor

    def admin(self, name: str = "admin", *, financials: bool = False) -> Actor:
        """A registered user made a dispute-resolving admin (with `financials`, one who may also
        read the money desks), by SQL (operators use `hustlexp admin grant`)."""
        actor = self.register(name)
        self.sql("INSERT INTO admin_roles (user_id, role, can_resolve_disputes, can_override_escrow, "
                 "can_access_financials) VALUES (%s, 'admin', true, true, %s)", (actor.id, financials))
        return actor

    def post_task(self, poster: Actor, **overrides: Any) -> Row:
        body = {"title": "Assemble a bookshelf", "description": "IKEA Billy, all parts in the box",
                "price": 5000, "location": "12 Main St", "category": "assembly",
                "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()} | overrides
        task: Row = data(poster.post("/api/tasks", json=body), 201)
        assert task["state"] == "OPEN" and task["payment_intent_id"], task
        self.escrows.append(task["escrow_id"])
        return task

    def accept(self, task: Row, worker: Actor) -> Row:
        accepted: Row = data(worker.post(f"/api/tasks/{task['id']}/accept"))
        assert accepted["state"] == "ACCEPTED" and accepted["worker_id"] == worker.id
        return accepted

    def submit_proof(self, task: Row, worker: Actor, photos: tuple[bytes, ...] = (JPEG,),
                     description: str = "Assembled and anchored to the wall") -> Row:
        """Upload the photos (multipart, one per request) and submit; returns the proof."""
        for n, image in enumerate(photos, start=1):
            name, mime = ("photo.png", "image/png") if image.startswith(b"\x89PNG") else ("photo.jpg", "image/jpeg")
            uploaded = data(worker.post(f"/api/tasks/{task['id']}/proof/photos",
                                        files={"file": (name, image, mime)}), 201)
            assert uploaded["sequence_number"] == n and uploaded["content_type"] == mime
        submitted = data(worker.post(f"/api/tasks/{task['id']}/proof", json={"description": description}))
        assert submitted["task"]["state"] == "PROOF_SUBMITTED" and submitted["proof"]["state"] == "SUBMITTED"
        proof: Row = submitted["proof"]
        assert len(proof["photos"]) == len(photos)
        return proof

    def proven_task(self, poster: Actor, worker: Actor, **overrides: Any) -> tuple[Row, Row]:
        """(task, proof): posted, funded, accepted by `worker` and its proof submitted."""
        task = self.post_task(poster, **overrides)
        self.fund(task)
        self.accept(task, worker)
        return task, self.submit_proof(task, worker)

    # -- as Stripe ----------------------------------------------------------------------

    def deliver(self, event: Row | bytes, *, secret: str | None = None, signature: str | None = None,
                timestamp: int | None = None) -> requests.Response:
        """POST a webhook as Stripe does: the exact bytes it signed, with Stripe-Signature.
        `signature` replaces the header as is (None signs with `secret`, by default ours)."""
        payload, header = FakeStripe.sign(event, secret or self.served.webhook_secret, timestamp)
        headers = {"Content-Type": "application/json"}
        chosen = header if signature is None else signature
        if chosen:
            headers["Stripe-Signature"] = chosen
        return requests.post(self.url("/webhooks/stripe"), data=payload, headers=headers, timeout=HTTP_TIMEOUT)

    def fund(self, task: Row) -> Row:
        """The poster's card goes through; Stripe tells us."""
        event = self.served.fake.succeed_payment(task["payment_intent_id"])
        ack = acknowledged(self.deliver(event))
        assert ack["result"] == "processed" and ack["state"] == "FUNDED", ack
        return ack

    # -- as cron ------------------------------------------------------------------------

    def run_job(self, name: str) -> Row:
        """`hustlexp jobs run <name>` in its own process, on the served database and fake
        Stripe, as cron runs it; returns the counts it prints."""
        result = subprocess.run([sys.executable, "-m", "hustlexp.cli", "jobs", "run", name],
                                env=self.served.env, cwd=self.served.workdir, capture_output=True, text=True,
                                timeout=JOB_TIMEOUT)
        assert result.returncode == 0, f"hustlexp jobs run {name} exited {result.returncode}\n" \
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
        counts: Row = json.loads(result.stdout.strip().splitlines()[-1])
        assert counts["job"] == name, counts
        return counts

    # -- as an operator -----------------------------------------------------------------

    def sql(self, query: str, params: Any = None) -> list[Row]:
        cursor = self.conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []

    def one(self, query: str, params: Any = None) -> Row:
        rows = self.sql(query, params)
        assert len(rows) == 1, (query, params, rows)
        return rows[0]

    def escrow(self, escrow_id: str) -> Row:
        return self.one("SELECT * FROM escrows WHERE id = %s", (escrow_id,))

    def task_row(self, task_id: str) -> Row:
        return self.one("SELECT * FROM tasks WHERE id = %s", (task_id,))

    def outbox(self, escrow_id: str) -> list[Row]:
        return self.sql("SELECT * FROM money_outbox WHERE escrow_id = %s ORDER BY created_at, kind", (escrow_id,))

    def settle(self, escrow_id: str) -> list[Row]:
        """The escrow's outbox rows once the served dispatcher has tried each (a request only
        commits a PENDING row; the money leaves after it answered). Rows waiting for a retry or
        a payout account stay PENDING."""
        deadline = time.monotonic() + DISPATCH_TIMEOUT
        while True:
            rows = self.outbox(escrow_id)
            if all(r["last_attempt_at"] is not None and r["status"] != "PROCESSING" for r in rows):
                return rows
            assert time.monotonic() < deadline, f"the dispatcher never took {rows}"
            time.sleep(0.05)

    def xp_rows(self, user_id: str) -> list[Row]:
        return self.sql("SELECT * FROM xp_ledger WHERE user_id = %s", (user_id,))

    def wait_until_past(self, moment: datetime) -> None:
        """Sleep until the database's clock (the jobs' clock) is past `moment`."""
        while self.one("SELECT now() AS now")["now"] <= moment:
            time.sleep(0.1)

    # -- the money ----------------------------------------------------------------------

    def check_money(self) -> None:
        """For every escrow this test touched: the cents fake Stripe moved equal what the
        database says, and nothing is left half-way."""
        assert self.escrows, "the test touched no escrow"
        fake = self.served.fake
        for escrow_id in self.escrows:
            self.settle(escrow_id)
            escrow = self.escrow(escrow_id)
            state, amount = escrow["state"], escrow["amount"]
            task = self.task_row(str(escrow["task_id"]))
            assert amount == task["price"], escrow
            funded = escrow["funded_at"] is not None
            if state == "RELEASED":
                expected = {"transferred": payout(amount), "refunded": 0}
            elif state == "REFUND_PARTIAL":
                assert escrow["release_amount"] + escrow["refund_amount"] == amount, escrow
                expected = {"transferred": payout(escrow["release_amount"]), "refunded": escrow["refund_amount"]}
            elif state == "REFUNDED":
                expected = {"transferred": 0, "refunded": amount if funded else 0}
            else:
                expected = {"transferred": 0, "refunded": 0}
            assert fake.money_out(escrow_id) == expected, (state, escrow, fake.money_out(escrow_id))

            transfers = [t for t in fake.transfers if t["metadata"].get("escrow_id") == escrow_id]
            refunds = [r for r in fake.refunds if r["metadata"].get("escrow_id") == escrow_id]
            assert len(transfers) == (1 if expected["transferred"] else 0), transfers
            assert len(refunds) == (1 if expected["refunded"] else 0), refunds
            if transfers:
                worker = self.one("SELECT stripe_connect_id FROM users WHERE id = %s", (task["worker_id"],))
                assert transfers[0]["destination"] == worker["stripe_connect_id"]
                assert transfers[0]["currency"] == "usd"
                assert escrow["stripe_transfer_id"] == transfers[0]["id"], escrow
            if refunds:
                assert refunds[0]["payment_intent"] == escrow["stripe_payment_intent_id"]
                assert escrow["stripe_refund_id"] == refunds[0]["id"], escrow

            intent = fake.payment_intents.get(escrow["stripe_payment_intent_id"] or "")
            assert intent is not None and intent["amount"] == amount, escrow
            assert intent["metadata"]["escrow_id"] == escrow_id
            if funded:
                assert intent["status"] == "succeeded" and intent["amount_received"] == amount, intent
            elif state == "REFUNDED":
                assert intent["status"] == "canceled", intent  # never paid: its intent is closed

            stuck = [r for r in self.outbox(escrow_id) if r["status"] not in ("SUCCEEDED", "CANCELLED")]
            assert not stuck, stuck
        self.money_checked = True


