"""Shared types: enums mirroring the schema's CHECK value sets (a test compares each with
the live schema), row dataclasses, and ServiceResult, what every service method returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar
from uuid import UUID

from hustlexp.errors import DomainError


class TaskState(StrEnum):
    OPEN = "OPEN"
    ACCEPTED = "ACCEPTED"
    PROOF_SUBMITTED = "PROOF_SUBMITTED"
    DISPUTED = "DISPUTED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


TERMINAL_TASK_STATES = frozenset({TaskState.COMPLETED, TaskState.CANCELLED, TaskState.EXPIRED})
# Every other state: the task still holds its parties (and, funded, its money).
LIVE_TASK_STATES = tuple(state.value for state in TaskState if state not in TERMINAL_TASK_STATES)


class TaskMode(StrEnum):
    STANDARD = "STANDARD"
    LIVE = "LIVE"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class EscrowState(StrEnum):
    PENDING = "PENDING"
    FUNDED = "FUNDED"
    LOCKED_DISPUTE = "LOCKED_DISPUTE"
    RELEASED = "RELEASED"
    REFUNDED = "REFUNDED"
    REFUND_PARTIAL = "REFUND_PARTIAL"


TERMINAL_ESCROW_STATES = frozenset({EscrowState.RELEASED, EscrowState.REFUNDED, EscrowState.REFUND_PARTIAL})


class ProofState(StrEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class DisputeState(StrEnum):
    OPEN = "OPEN"
    EVIDENCE_REQUESTED = "EVIDENCE_REQUESTED"
    RESOLVED = "RESOLVED"
    ESCALATED = "ESCALATED"


class DisputeResolution(StrEnum):
    HUSTLER_WINS = "HUSTLER_WINS"
    CLIENT_WINS = "CLIENT_WINS"
    SPLIT = "SPLIT"


class EscrowAction(StrEnum):
    RELEASE = "RELEASE"
    REFUND = "REFUND"
    SPLIT = "SPLIT"


class DefaultMode(StrEnum):
    WORKER = "worker"
    POSTER = "poster"


class AccountStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


class RoleCertainty(StrEnum):
    STRONG = "STRONG"
    MODERATE = "MODERATE"
    WEAK = "WEAK"


class AdminRole(StrEnum):
    SUPPORT = "support"
    MODERATOR = "moderator"
    ADMIN = "admin"
    FOUNDER = "founder"


class MessageType(StrEnum):
    TEXT = "TEXT"
    AUTO = "AUTO"
    PHOTO = "PHOTO"
    LOCATION = "LOCATION"


class ModerationStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    FLAGGED = "flagged"
    QUARANTINED = "quarantined"


class NotificationPriority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class NotificationChannel(StrEnum):
    PUSH = "push"
    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"


class AIJobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    KILLED = "KILLED"


class EvidenceType(StrEnum):
    PHOTO = "PHOTO"
    MESSAGE = "MESSAGE"
    LOCATION = "LOCATION"
    DOCUMENT = "DOCUMENT"


class EvidenceRequester(StrEnum):
    SYSTEM = "system"
    POSTER = "poster"
    ADMIN = "admin"


class MoneyKind(StrEnum):
    TRANSFER = "TRANSFER"
    REFUND = "REFUND"
    CANCEL_INTENT = "CANCEL_INTENT"


class MoneyStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED_PERMANENT = "FAILED_PERMANENT"
    CANCELLED = "CANCELLED"


# CHECK constraint name -> enum, compared with the live schema by tests/schema/test_domain_enums.py.
CHECKED_ENUMS: dict[str, type[StrEnum]] = {
    "tasks_state_check": TaskState,
    "tasks_mode_check": TaskMode,
    "tasks_risk_level_check": RiskLevel,
    "escrows_state_check": EscrowState,
    "proofs_state_check": ProofState,
    "disputes_state_check": DisputeState,
    "disputes_resolution_check": DisputeResolution,
    "disputes_outcome_escrow_action_check": EscrowAction,
    "users_default_mode_check": DefaultMode,
    "users_account_status_check": AccountStatus,
    "users_role_certainty_tier_check": RoleCertainty,
    "admin_roles_role_check": AdminRole,
    "task_messages_message_type_check": MessageType,
    "task_messages_moderation_status_check": ModerationStatus,
    "evidence_moderation_status_check": ModerationStatus,
    "notifications_priority_check": NotificationPriority,
    "notifications_channels_check": NotificationChannel,
    "ai_jobs_status_check": AIJobStatus,
    "evidence_type_check": EvidenceType,
    "evidence_requested_by_check": EvidenceRequester,
    "money_outbox_kind_check": MoneyKind,
    "money_outbox_status_check": MoneyStatus,
}


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------

R = TypeVar("R", bound="Row")


_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """A Row class's field names, in order and as a set (dataclasses.fields walks them anew on
    every call)."""
    found = _FIELDS.get(cls)
    if found is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        found = _FIELDS[cls] = (names, frozenset(names))
    return found


@dataclass(frozen=True)
class Row:
    """A database row as a typed value. `from_row` ignores columns the class does not name,
    so adding a column never breaks a reader."""

    @classmethod
    def from_row(cls: type[R], row: dict[str, Any]) -> R:
        names = _fields(cls)[1]
        return cls(**{k: v for k, v in row.items() if k in names})

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The columns this class reads, for a SELECT that fetches no others (every column
        fetched is parsed, whether or not anything reads it)."""
        return _fields(cls)[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class User(Row):
    id: UUID
    email: str
    full_name: str
    firebase_uid: str | None = None
    phone: str | None = None
    avatar_url: str | None = None
    default_mode: str = DefaultMode.WORKER
    trust_tier: int = 1
    xp_total: int = 0
    current_level: int = 1
    current_streak: int = 0
    last_task_completed_at: datetime | None = None
    streak_grace_expires_at: datetime | None = None
    is_verified: bool = False
    verified_at: datetime | None = None
    stripe_customer_id: str | None = None
    stripe_connect_id: str | None = None
    account_status: str = AccountStatus.ACTIVE
    onboarding_version: str | None = None
    onboarding_completed_at: datetime | None = None
    role_certainty_tier: str | None = None
    role_was_overridden: bool = False
    xp_visibility_rules: str = "ledger"
    trust_ui_density: str = "normal"
    copy_tone_variant: str = "neutral"
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Task(Row):
    id: UUID
    poster_id: UUID
    title: str
    description: str
    price: int
    state: str
    worker_id: UUID | None = None
    requirements: str | None = None
    location: str | None = None
    location_lat: Any = None
    location_lng: Any = None
    category: str | None = None
    mode: str = TaskMode.STANDARD
    deadline: datetime | None = None
    accepted_at: datetime | None = None
    proof_submitted_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    requires_proof: bool = True
    proof_instructions: str | None = None
    required_trust_tier: int | None = None
    risk_level: str = RiskLevel.LOW
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Escrow(Row):
    id: UUID
    task_id: UUID
    amount: int
    state: str
    refund_amount: int | None = None
    release_amount: int | None = None
    stripe_payment_intent_id: str | None = None
    stripe_transfer_id: str | None = None
    stripe_refund_id: str | None = None
    funded_at: datetime | None = None
    released_at: datetime | None = None
    refunded_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Proof(Row):
    id: UUID
    task_id: UUID
    submitter_id: UUID
    state: str
    description: str | None = None
    reviewed_by: UUID | None = None
    reviewed_at: datetime | None = None
    rejection_reason: str | None = None
    submitted_at: datetime | None = None
    review_deadline: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


# ---------------------------------------------------------------------------
# ServiceResult
# ---------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceResult(Generic[T]):
    """What every service method returns: data on success, or the DomainError that stopped it.
    `unwrap()` turns a failure back into the exception, for a service composing another."""

    data: T | None = None
    error: DomainError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def code(self) -> str | None:
        return self.error.code if self.error else None

    @classmethod
    def success(cls, data: T) -> ServiceResult[T]:
        return cls(data=data)

    @classmethod
    def failure(cls, error: DomainError) -> ServiceResult[T]:
        return cls(error=error)

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.data  # type: ignore[return-value]
