"""The services: one module per noun. `Services` wires them together; each is built on
first use, so a service reaches another as `self.s.<name>`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hustlexp.db import Database
    from hustlexp.services.account import AccountService
    from hustlexp.services.admin_roles import AdminRoleService
    from hustlexp.services.badge import BadgeService
    from hustlexp.services.chargebacks import ChargebackService
    from hustlexp.services.connect import ConnectService
    from hustlexp.services.dispute import DisputeService
    from hustlexp.services.escrow import EscrowService
    from hustlexp.services.feed import FeedService
    from hustlexp.services.inbox import InboxService
    from hustlexp.services.limits import RateLimits
    from hustlexp.services.messaging import MessagingService
    from hustlexp.services.moderation import ModerationService
    from hustlexp.services.notification import NotificationService
    from hustlexp.services.outbox import MoneyOutbox
    from hustlexp.services.payment_risk import PaymentRiskService
    from hustlexp.services.payments import PaymentsGateway
    from hustlexp.services.payout_desk import PayoutDeskService
    from hustlexp.services.payout_incidents import PayoutIncidentService
    from hustlexp.services.proof import ProofService
    from hustlexp.services.push import PushGateway, PushService
    from hustlexp.services.rating import RatingService
    from hustlexp.services.readiness import ReadinessService
    from hustlexp.services.retention import RetentionService
    from hustlexp.services.storage import Storage
    from hustlexp.services.stripe_webhooks import StripeWebhookHandler
    from hustlexp.services.summary import SummaryService
    from hustlexp.services.task import TaskService
    from hustlexp.services.trust import TrustService
    from hustlexp.services.uploads import UploadService
    from hustlexp.services.user import UserService
    from hustlexp.services.wallet import WalletService
    from hustlexp.services.xp import XPService


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Services:
    def __init__(self, db: Database, *, payments: PaymentsGateway | None = None,
                 storage: Storage | None = None, webhook_secret: str = "whsec_local",
                 clock: Callable[[], datetime] = _utcnow, storage_dir: Path | None = None,
                 send_inline: bool = False, push: PushGateway | None = None,
                 app_url: str = "http://localhost:8081") -> None:
        self.db = db
        # FCM, when configured (FIREBASE_ADMIN_KEY); without it pushes wait in the notifications.
        self.push = push
        # The app's public URL (HUSTLEXP_APP_URL): where Connect onboarding sends the worker back.
        self.app_url = app_url
        # Money rows are sent by a dispatcher (hustlexp.jobs.dispatcher); True sends them from
        # the writing thread right after commit instead (tests, one-shot CLI passes).
        self.send_inline = send_inline
        self._payments = payments
        self._storage = storage
        self._storage_dir = storage_dir
        self.webhook_secret = webhook_secret
        self.clock = clock

    @property
    def payments(self) -> PaymentsGateway:
        if self._payments is None:
            raise RuntimeError("no payments gateway configured")
        return self._payments

    @cached_property
    def storage(self) -> Storage:
        if self._storage is not None:
            return self._storage
        from hustlexp.services.storage import LocalStorage

        return LocalStorage(self._storage_dir or Path("instance") / "uploads")

    def _build(self, module: str, cls: str) -> Any:
        import importlib

        return getattr(importlib.import_module(f"hustlexp.services.{module}"), cls)(self)

    @cached_property
    def tasks(self) -> TaskService:
        return self._build("task", "TaskService")

    @cached_property
    def escrows(self) -> EscrowService:
        return self._build("escrow", "EscrowService")

    @cached_property
    def proofs(self) -> ProofService:
        return self._build("proof", "ProofService")

    @cached_property
    def xp(self) -> XPService:
        return self._build("xp", "XPService")

    @cached_property
    def trust(self) -> TrustService:
        return self._build("trust", "TrustService")

    @cached_property
    def badges(self) -> BadgeService:
        return self._build("badge", "BadgeService")

    @cached_property
    def disputes(self) -> DisputeService:
        return self._build("dispute", "DisputeService")

    @cached_property
    def feed(self) -> FeedService:
        return self._build("feed", "FeedService")

    @cached_property
    def inbox(self) -> InboxService:
        return self._build("inbox", "InboxService")

    @cached_property
    def ratings(self) -> RatingService:
        return self._build("rating", "RatingService")

    @cached_property
    def users(self) -> UserService:
        return self._build("user", "UserService")

    @cached_property
    def messaging(self) -> MessagingService:
        return self._build("messaging", "MessagingService")

    @cached_property
    def notifications(self) -> NotificationService:
        return self._build("notification", "NotificationService")

    @cached_property
    def outbox(self) -> MoneyOutbox:
        return self._build("outbox", "MoneyOutbox")

    @cached_property
    def limits(self) -> RateLimits:
        return self._build("limits", "RateLimits")

    @cached_property
    def pushes(self) -> PushService:
        return self._build("push", "PushService")

    @cached_property
    def admin_roles(self) -> AdminRoleService:
        return self._build("admin_roles", "AdminRoleService")

    @cached_property
    def retention(self) -> RetentionService:
        return self._build("retention", "RetentionService")

    @cached_property
    def accounts(self) -> AccountService:
        return self._build("account", "AccountService")

    @cached_property
    def moderation(self) -> ModerationService:
        return self._build("moderation", "ModerationService")

    @cached_property
    def summary(self) -> SummaryService:
        return self._build("summary", "SummaryService")

    @cached_property
    def readiness(self) -> ReadinessService:
        return self._build("readiness", "ReadinessService")

    @cached_property
    def uploads(self) -> UploadService:
        return self._build("uploads", "UploadService")

    @cached_property
    def webhooks(self) -> StripeWebhookHandler:
        return self._build("stripe_webhooks", "StripeWebhookHandler")

    # -- money events and the payout desk (issue 12) --

    @cached_property
    def chargebacks(self) -> ChargebackService:
        return self._build("chargebacks", "ChargebackService")

    @cached_property
    def payout_incidents(self) -> PayoutIncidentService:
        return self._build("payout_incidents", "PayoutIncidentService")

    @cached_property
    def payment_risk(self) -> PaymentRiskService:
        return self._build("payment_risk", "PaymentRiskService")

    @cached_property
    def payout_desk(self) -> PayoutDeskService:
        return self._build("payout_desk", "PayoutDeskService")

    # -- Connect onboarding and the wallet (issue 12) --

    @cached_property
    def connect(self) -> ConnectService:
        return self._build("connect", "ConnectService")

    @cached_property
    def wallet(self) -> WalletService:
        return self._build("wallet", "WalletService")
