"""A small world for API tests: three registered users and helpers that move one task along
through the real routes, as the mobile app and Stripe would."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api.conftest import WEBHOOK_SECRET, data
from tests.fakes.stripe_fake import FakeStripe
from tests.images import JPEG


def task_body(**overrides: Any) -> dict[str, Any]:
    return {"title": "Walk my dog", "description": "30 minutes around the park", "price": 4500,
            "location": "Central Park", "category": "pet_care",
            "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat()} | overrides


class World:
    """Two registered users and helpers to move one task along, as the app would."""

    def __init__(self, client, register, conn, stripe_fake):
        self.client, self.conn, self.fake = client, conn, stripe_fake
        self.poster, self.ph = register(client)
        self.worker, self.wh = register(client)
        self.stranger, self.sh = register(client)
        conn.execute("UPDATE users SET stripe_connect_id = 'acct_worker' WHERE id = %s", (self.worker["id"],))

    def post(self, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/api/tasks", json=task_body(**overrides), headers=self.ph)
        assert response.status_code == 201, response.get_json()
        return data(response)

    def webhook(self, event: dict[str, Any]) -> Any:
        payload, header = FakeStripe.sign(event, WEBHOOK_SECRET)
        return self.client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": header,
                                                                           "Content-Type": "application/json"})

    def funded(self, **overrides: Any) -> dict[str, Any]:
        task = self.post(**overrides)
        assert self.webhook(self.fake.succeed_payment(task["payment_intent_id"])).status_code == 200
        return task

    def send_money(self, escrow_id: str) -> dict[str, int]:
        """The request only queued the money (outbox PENDING, nothing at Stripe yet); send what
        is due now, as the dispatcher would, and return what moved for the escrow."""
        assert self.fake.money_out(escrow_id) == {"transferred": 0, "refunded": 0}
        pending = self.conn.execute("SELECT count(*) AS n FROM money_outbox WHERE escrow_id = %s AND "
                                    "status = 'PENDING'", (escrow_id,)).fetchone()
        assert pending["n"] >= 1
        self.client.application.extensions["hustlexp"].services.outbox.retry_due().unwrap()
        return self.fake.money_out(escrow_id)

    def accepted(self, **overrides: Any) -> dict[str, Any]:
        task = self.funded(**overrides)
        assert self.client.post(f"/api/tasks/{task['id']}/accept", headers=self.wh).status_code == 200
        return task

    def submitted(self, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        task = self.accepted(**overrides)
        upload = self.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=self.wh,
                                  data={"file": (io.BytesIO(JPEG), "shelf.jpg")}, content_type="multipart/form-data")
        assert upload.status_code == 201, upload.get_json()
        response = self.client.post(f"/api/tasks/{task['id']}/proof", json={"description": "Walked him"},
                                    headers=self.wh)
        assert response.status_code == 200, response.get_json()
        return task, data(response)["proof"]
