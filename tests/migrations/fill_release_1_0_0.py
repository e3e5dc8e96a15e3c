"""Install schema 1.0.0 and fill it through the 1.0.0 services, as a deployment of that release
would have. Run by tests/migrations/test_upgrade.py with the 1.0.0 source tree first on
PYTHONPATH, so `hustlexp` and `tests` below are the release's own code, not today's.

    python fill_release_1_0_0.py DATABASE_URL STORAGE_DIR

Prints one JSON line: what it made."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

import hustlexp
from hustlexp.db import Database
from hustlexp.db import schema as release_schema
from hustlexp.services import Services
from hustlexp.services.payments import PaymentsGateway
from tests.fakes.stripe_fake import FakeStripe
from tests.services import flows
from tests.services.conftest import WEBHOOK_SECRET, Clock


def main(url: str, storage: Path) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        release_schema.apply(conn)  # the release's own installer, reading the release's schema.sql
    db = Database(url, min_size=1, max_size=4).open()
    clock = Clock()
    made: dict[str, int] = {}
    with FakeStripe() as fake:
        gateway = PaymentsGateway("sk_test_release", http_client=fake.http_client(), webhook_secret=WEBHOOK_SECRET)
        s = Services(db, payments=gateway, storage_dir=storage, webhook_secret=WEBHOOK_SECRET, clock=clock)
        poster = flows.user(s)
        admin = flows.admin(s)

        flows.post(s, poster)                                   # OPEN, escrow PENDING
        flows.funded_task(s, fake)                              # OPEN, escrow FUNDED
        accepted = flows.accepted_task(s, fake)                 # ACCEPTED
        s.messaging.send(accepted["task"], accepted["worker"], message_type="TEXT", content="On my way").unwrap()
        s.messaging.send(accepted["task"], accepted["poster"], message_type="LOCATION",
                         location={"lat": 40.7128, "lng": -74.006}).unwrap()
        flows.submitted_task(s, fake)                           # PROOF_SUBMITTED
        worker = flows.user(s, is_verified=True)
        for _ in range(5):                                      # COMPLETED, RELEASED, XP, badges, tier 2
            flows.completed_task(s, fake, worker=worker)
        cancelled = flows.accepted_task(s, fake)                # CANCELLED, REFUNDED
        s.tasks.cancel(cancelled["task"], cancelled["poster"], reason="Plans changed").unwrap()
        disputed = flows.submitted_task(s, fake)                # DISPUTED, LOCKED_DISPUTE
        s.disputes.create(disputed["task"], disputed["poster"], reason="QUALITY_ISSUE",
                          description="The shelf wobbles").unwrap()
        for ruling, share in (("SPLIT", 40), ("HUSTLER_WINS", None), ("CLIENT_WINS", None)):
            ids = flows.submitted_task(s, fake)                 # resolved disputes: every escrow outcome
            dispute = s.disputes.create(ids["task"], ids["worker"], reason="OTHER",
                                        description="Poster went silent").unwrap()
            s.disputes.resolve(dispute["dispute"]["id"], admin, resolution=ruling, notes="Reviewed the photos",
                               split_percent=share).unwrap()
        flows.post(s, poster, deadline=datetime.now(UTC) + timedelta(hours=1))
        flows.funded_task(s, fake, deadline=datetime.now(UTC) + timedelta(hours=1))
        clock.advance(hours=2)
        s.tasks.expire_due().unwrap()                           # EXPIRED, both escrow paths

    with db.transaction() as conn:
        for table in ("users", "tasks", "escrows", "proofs", "proof_photos", "xp_ledger", "trust_ledger",
                      "badges", "disputes", "task_messages", "notifications", "money_outbox",
                      "processed_stripe_events", "admin_actions"):
            made[table] = conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]
        made["task_states"] = conn.execute("SELECT count(DISTINCT state) AS n FROM tasks").fetchone()["n"]
        made["escrow_states"] = conn.execute("SELECT count(DISTINCT state) AS n FROM escrows").fetchone()["n"]
    db.close()
    print(json.dumps({"release": hustlexp.__version__, "code": str(Path(hustlexp.__file__).parent), **made}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
