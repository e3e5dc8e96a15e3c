"""Service fixtures: the real services on this test's own database, Stripe through the real
`stripe` library talking to an in-process FakeStripe, and a clock tests can move."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hustlexp.db import Database
from hustlexp.services import Services
from hustlexp.services.payments import PaymentsGateway
from tests.fakes.stripe_fake import FakeStripe

WEBHOOK_SECRET = "whsec_test_services"


class Clock:
    """Real time plus an offset the test controls (deadlines, review windows, back-off)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def services(db: Database, tmp_path: Any, stripe_fake: FakeStripe, clock: Clock) -> Iterator[Services]:
    gateway = PaymentsGateway("sk_test_services", http_client=stripe_fake.http_client(),
                              webhook_secret=WEBHOOK_SECRET)
    yield Services(db, payments=gateway, storage_dir=tmp_path / "uploads", webhook_secret=WEBHOOK_SECRET,
                   clock=clock)
