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
    """Real time plus an offset the test controls (deadlines, review windows, back-off); or,
    built with a start, a fixed time that `advance` moves and `clock.now = ...` sets."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start
        self.offset = timedelta(0)

    @property
    def now(self) -> datetime:
        return (self._start or datetime.now(UTC)) + self.offset

    @now.setter
    def now(self, value: datetime) -> None:
        self._start, self.offset = value, timedelta(0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(db: Database, tmp_path: Any, stripe_fake: FakeStripe, clock: Clock) -> Iterator[Services]:
    gateway = PaymentsGateway("sk_test_services", http_client=stripe_fake.http_client(),
                              webhook_secret=WEBHOOK_SECRET)
    # send_inline: money goes out right after each commit, so a test sees it without a dispatcher
    # (tests/services/test_dispatcher.py covers the dispatcher itself).
    yield Services(db, payments=gateway, storage_dir=tmp_path / "uploads", webhook_secret=WEBHOOK_SECRET,
                   clock=clock, send_inline=True)


@pytest.fixture
def svc(db: Database, clock: Clock) -> Iterator[Services]:
    """Services without a payments gateway, on the test's clock (for services that never pay)."""
    yield Services(db, clock=clock)


@pytest.fixture
def ids(conn: Any) -> dict[str, Any]:
    """A task in ACCEPTED with its poster, worker and FUNDED escrow (raw SQL, tests/factories.py)."""
    from tests import factories

    return factories.accepted_task(conn)
