"""Lifecycles driven through the real services, for tests that need a task at some stage.
Each step is what the app and Stripe would do; nothing is written behind the services' backs
except users, whose creation is not under test here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from hustlexp.services import Services
from tests.fakes.stripe_fake import FakeStripe
from tests.images import JPEG, PNG  # noqa: F401 (re-exported for the tests)
from tests.services.conftest import WEBHOOK_SECRET


def user(services: Services, *, connect: bool = True, **cols: Any) -> Any:
    tag = uuid.uuid4().hex[:10]
    values = {"email": f"u{tag}@example.test", "full_name": f"User {tag}", "firebase_uid": f"fb-{tag}",
              "stripe_connect_id": f"acct_{tag}" if connect else None} | cols
    with services.db.transaction() as conn:
        row = conn.execute(
            "INSERT INTO users ({}) VALUES ({}) RETURNING id".format(  # test-only builder
                ", ".join(values), ", ".join(["%s"] * len(values))), list(values.values())).fetchone()
    return row["id"]


def admin(services: Services, **flags: bool) -> Any:
    """A new admin: resolves disputes and overrides escrows unless told otherwise, plus any other
    admin_roles flag given (can_access_financials=True, ...)."""
    admin_id = user(services)
    flags = {"can_resolve_disputes": True, "can_override_escrow": True} | flags
    columns = sql.SQL(", ").join(map(sql.Identifier, flags))
    with services.db.transaction() as conn:
        conn.execute(sql.SQL("INSERT INTO admin_roles (user_id, role, {}) VALUES (%s, 'admin', {})").format(
            columns, sql.SQL(", ").join([sql.Placeholder()] * len(flags))), (admin_id, *flags.values()))
    return admin_id


def post(services: Services, poster: Any, *, price: int = 4500, **fields: Any) -> dict[str, Any]:
    values = {"title": "Assemble a bookshelf", "description": "Two IKEA Billy units", "price": price,
              "location": "12 Main St", "category": "assembly",
              "deadline": datetime.now(UTC) + timedelta(days=3)} | fields
    return services.tasks.create(poster, **values).unwrap()


def deliver(services: Services, event: dict[str, Any]) -> dict[str, Any]:
    payload, header = FakeStripe.sign(event, WEBHOOK_SECRET)
    return services.webhooks.handle(payload, header).unwrap()


def fund(services: Services, fake: FakeStripe, task: dict[str, Any]) -> None:
    deliver(services, fake.succeed_payment(task["payment_intent_id"]))


def funded_task(services: Services, fake: FakeStripe, *, price: int = 4500, **fields: Any
                ) -> tuple[Any, dict[str, Any]]:
    poster = user(services)
    task = post(services, poster, price=price, **fields)
    fund(services, fake, task)
    return poster, task


def accepted_task(services: Services, fake: FakeStripe, *, price: int = 4500, worker: Any = None,
                  **fields: Any) -> dict[str, Any]:
    poster, task = funded_task(services, fake, price=price, **fields)
    worker = worker or user(services)
    services.tasks.accept(task["id"], worker).unwrap()
    return {"poster": poster, "worker": worker, "task": task["id"], "escrow": task["escrow_id"],
            "price": price}


def submitted_task(services: Services, fake: FakeStripe, **kw: Any) -> dict[str, Any]:
    ids = accepted_task(services, fake, **kw)
    submit_proof(services, ids)
    return ids


def submit_proof(services: Services, ids: dict[str, Any], photos: int = 1) -> dict[str, Any]:
    for _ in range(photos):
        services.proofs.upload_photo(ids["task"], ids["worker"], JPEG).unwrap()
    out = services.proofs.submit(ids["task"], ids["worker"], description="Done, see photos").unwrap()
    ids["proof"] = out["proof"]["id"]
    return out


def completed_task(services: Services, fake: FakeStripe, **kw: Any) -> dict[str, Any]:
    ids = submitted_task(services, fake, **kw)
    ids["completion"] = services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    return ids


def row(services: Services, query: str, *params: Any) -> dict[str, Any] | None:
    with services.db.transaction() as conn:
        result: dict[str, Any] | None = conn.execute(query, params).fetchone()
        return result
