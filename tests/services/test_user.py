"""UserService: registration and look-ups (HX504), profile edits, onboarding (domain §2.5),
pause/resume, payout destination and the require_active guard (HX602)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from hustlexp.db import Database
from hustlexp.errors import Forbidden, NotFound
from hustlexp.services import Services
from hustlexp.services.user import require_active
from tests import factories as f

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def svc(db: Database, clock: Clock) -> Iterator[Services]:
    yield Services(db, clock=clock)


def register(svc: Services, **kw: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    values = {"firebase_uid": f"fb-{tag}", "email": f"{tag}@example.test", "full_name": "Sam Hustle"} | kw
    return svc.users.create(**values).unwrap()


# -- create and look-ups --------------------------------------------------------

def test_create_registers_with_defaults(svc):
    user = register(svc, email="  Sam@Example.TEST ", phone="+1 555 010 2000")
    assert user["email"] == "sam@example.test"
    assert user["phone"] == "+1 555 010 2000"
    assert (user["default_mode"], user["trust_tier"], user["xp_total"], user["account_status"]) == \
        ("worker", 1, 0, "ACTIVE")
    assert user["onboarding_completed_at"] is None


def test_create_poster_mode(svc):
    assert register(svc, default_mode="poster")["default_mode"] == "poster"


@pytest.mark.parametrize("field", ["email", "firebase_uid", "phone"])
def test_create_duplicate_is_conflict(svc, field):
    first = register(svc, phone="+15550100001")
    again = {"firebase_uid": "fb-other", "email": "other@example.test", "full_name": "X", "phone": None}
    again[field] = first[field].upper() if field == "email" else first[field]
    result = svc.users.create(**again)
    assert result.code == "CONFLICT"
    assert result.error.status == 409
    assert field in result.error.details


@pytest.mark.parametrize("kw", [
    {"email": "not-an-email"}, {"email": None}, {"email": "a@b.c" + "x" * 300}, {"full_name": ""},
    {"full_name": "x" * 256},
    {"phone": "call me"}, {"phone": "+1" + "5" * 25}, {"default_mode": "admin"}, {"firebase_uid": ""},
])
def test_create_invalid_input_is_refused(svc, kw):
    values = {"firebase_uid": "fb-1", "email": "ok@example.test", "full_name": "Ok"} | kw
    assert svc.users.create(**values).code == "VALIDATION_ERROR"


def test_lookups_find_the_user(svc):
    user = register(svc)
    assert svc.users.get_by_id(user["id"]).unwrap()["id"] == user["id"]
    assert svc.users.get_by_id(str(user["id"])).unwrap()["id"] == user["id"]
    assert svc.users.get_by_email(user["email"].upper()).unwrap()["id"] == user["id"]
    assert svc.users.get_by_firebase_uid(user["firebase_uid"]).unwrap()["id"] == user["id"]


def test_lookups_missing_user_is_hx504(svc):
    for result in (svc.users.get_by_id(uuid.uuid4()), svc.users.get_by_id("nope"),
                   svc.users.get_by_email("ghost@example.test"), svc.users.get_by_firebase_uid("fb-ghost")):
        assert result.code == "HX504"
        assert result.error.status == 404


# -- update -----------------------------------------------------------------------

def test_update_profile_fields(svc):
    user = register(svc)
    updated = svc.users.update(user["id"], full_name="  Sam H. ", avatar_url="https://cdn.example/a.png",
                               default_mode="poster", phone="+15550109999").unwrap()
    assert (updated["full_name"], updated["avatar_url"], updated["default_mode"], updated["phone"]) == \
        ("Sam H.", "https://cdn.example/a.png", "poster", "+15550109999")
    cleared = svc.users.update(user["id"], avatar_url=None, phone=None).unwrap()
    assert (cleared["avatar_url"], cleared["phone"]) == (None, None)


@pytest.mark.parametrize("fields", [
    {}, {"trust_tier": 4}, {"xp_total": 9999}, {"email": "new@example.test"}, {"account_status": "ACTIVE"},
    {"full_name": ""}, {"full_name": None}, {"avatar_url": "https://x/" + "a" * 500},
    {"avatar_url": "javascript:alert(1)"}, {"default_mode": "boss"},
])
def test_update_refuses_other_fields_and_bad_values(svc, conn, fields):
    user = register(svc)
    result = svc.users.update(user["id"], **fields)
    assert result.code == "VALIDATION_ERROR"
    row = conn.execute("SELECT trust_tier, xp_total, email FROM users WHERE id = %s", (user["id"],)).fetchone()
    assert (row["trust_tier"], row["xp_total"], row["email"]) == (1, 0, user["email"])


def test_update_taken_phone_is_conflict(svc):
    register(svc, phone="+15550100002")
    user = register(svc)
    assert svc.users.update(user["id"], phone="+15550100002").code == "CONFLICT"


def test_update_missing_user_is_hx504(svc):
    assert svc.users.update(uuid.uuid4(), full_name="Ghost").code == "HX504"


def test_update_paused_user_is_hx602(svc):
    user = register(svc)
    svc.users.pause(user["id"]).unwrap()
    result = svc.users.update(user["id"], full_name="Still me")
    assert result.code == "HX602"
    assert result.error.status == 403


# -- onboarding -----------------------------------------------------------------------

def test_onboarding_worker_strong(svc, clock):
    user = register(svc, default_mode="poster")
    done = svc.users.complete_onboarding(user["id"], version="2.1", role_confidence_worker=0.82,
                                         role_confidence_poster=0.18).unwrap()
    assert done["onboarding_completed_at"] == START
    assert done["onboarding_version"] == "2.1"
    assert (done["role_confidence_worker"], done["role_confidence_poster"]) == (Decimal("0.8200"),
                                                                              Decimal("0.1800"))
    assert (done["role_certainty_tier"], done["default_mode"]) == ("STRONG", "worker")
    assert (done["xp_visibility_rules"], done["copy_tone_variant"]) == ("ledger", "earner")
    assert done["xp_total"] == 0


@pytest.mark.parametrize(("worker", "poster", "tier", "mode"), [
    (0.2, 0.75, "STRONG", "poster"), (0.6, 0.4, "MODERATE", "worker"), (0.3, 0.7499, "MODERATE", "poster"),
    (0.59, 0.41, "WEAK", "worker"), (0.5, 0.5, "WEAK", "worker"),
])
def test_onboarding_certainty_tiers(svc, worker, poster, tier, mode):
    user = register(svc)
    done = svc.users.complete_onboarding(user["id"], role_confidence_worker=worker,
                                         role_confidence_poster=poster).unwrap()
    assert (done["role_certainty_tier"], done["default_mode"]) == (tier, mode)


def test_onboarding_override_takes_the_other_role(svc):
    user = register(svc)
    done = svc.users.complete_onboarding(user["id"], role_confidence_worker=0.9, role_confidence_poster=0.1,
                                         overridden=True).unwrap()
    assert (done["default_mode"], done["role_was_overridden"]) == ("poster", True)
    assert (done["xp_visibility_rules"], done["copy_tone_variant"]) == ("outcome", "delegator")


def test_onboarding_without_answers_keeps_mode(svc):
    user = register(svc, default_mode="poster")
    done = svc.users.complete_onboarding(user["id"]).unwrap()
    assert done["onboarding_completed_at"] == START
    assert (done["default_mode"], done["role_certainty_tier"]) == ("poster", None)
    assert done["copy_tone_variant"] == "delegator"


def test_onboarding_repeat_is_idempotent(svc, clock):
    user = register(svc)
    first = svc.users.complete_onboarding(user["id"], role_confidence_worker=0.9,
                                          role_confidence_poster=0.1).unwrap()
    clock.now = START + timedelta(days=1)
    assert svc.users.complete_onboarding(user["id"]).unwrap()["onboarding_completed_at"] == START
    clock.now = START + timedelta(days=30)
    again = svc.users.complete_onboarding(user["id"], role_confidence_worker=0.9,
                                          role_confidence_poster=0.1).unwrap()
    assert again["onboarding_completed_at"] == first["onboarding_completed_at"] == START


def test_onboarding_redo_within_seven_days_is_conflict(svc, clock):
    user = register(svc)
    svc.users.complete_onboarding(user["id"], role_confidence_worker=0.55, role_confidence_poster=0.45).unwrap()
    clock.now = START + timedelta(days=6, hours=23)
    result = svc.users.complete_onboarding(user["id"], role_confidence_worker=0.1, role_confidence_poster=0.9)
    assert result.code == "CONFLICT"


def test_onboarding_redo_after_seven_days_when_weak(svc, clock):
    user = register(svc)
    svc.users.complete_onboarding(user["id"], role_confidence_worker=0.55, role_confidence_poster=0.45).unwrap()
    clock.now = START + timedelta(days=7)
    redo = svc.users.complete_onboarding(user["id"], version="1.1", role_confidence_worker=0.1,
                                         role_confidence_poster=0.9).unwrap()
    assert (redo["default_mode"], redo["role_certainty_tier"], redo["onboarding_version"]) == \
        ("poster", "STRONG", "1.1")
    assert redo["onboarding_completed_at"] == START + timedelta(days=7)


def test_onboarding_redo_after_seven_days_when_overridden(svc, clock):
    user = register(svc)
    svc.users.complete_onboarding(user["id"], role_confidence_worker=0.9, role_confidence_poster=0.1,
                                  overridden=True).unwrap()
    clock.now = START + timedelta(days=8)
    redo = svc.users.complete_onboarding(user["id"], role_confidence_worker=0.9, role_confidence_poster=0.1)
    assert redo.unwrap()["default_mode"] == "worker"


def test_onboarding_redo_of_a_settled_role_needs_an_admin(svc, clock):
    user = register(svc)
    svc.users.complete_onboarding(user["id"], role_confidence_worker=0.9, role_confidence_poster=0.1).unwrap()
    clock.now = START + timedelta(days=30)
    result = svc.users.complete_onboarding(user["id"], role_confidence_worker=0.1, role_confidence_poster=0.9)
    assert result.code == "FORBIDDEN"


@pytest.mark.parametrize("kw", [
    {"role_confidence_worker": 1.2}, {"role_confidence_poster": -0.1}, {"role_confidence_worker": "high"},
    {"role_confidence_worker": True}, {"role_confidence_worker": float("nan")}, {"version": ""},
    {"version": "v" * 21}, {"overridden": "yes"},
])
def test_onboarding_invalid_input_is_refused(svc, conn, kw):
    user = register(svc)
    assert svc.users.complete_onboarding(user["id"], **kw).code == "VALIDATION_ERROR"
    assert conn.execute("SELECT onboarding_completed_at FROM users WHERE id = %s",
                        (user["id"],)).fetchone()["onboarding_completed_at"] is None


def test_onboarding_missing_user_is_hx504(svc):
    assert svc.users.complete_onboarding(uuid.uuid4()).code == "HX504"


# -- admin role -------------------------------------------------------------------

def test_admin_role_row_or_none(svc, conn):
    user, admin = register(svc), register(svc)
    conn.execute("INSERT INTO admin_roles (user_id, role, can_resolve_disputes) VALUES (%s, 'admin', true)",
                 (admin["id"],))
    role = svc.users.get_admin_role(admin["id"]).unwrap()
    assert (role["role"], role["can_resolve_disputes"], role["can_ban_users"]) == ("admin", True, False)
    assert svc.users.get_admin_role(user["id"]).unwrap() is None
    assert svc.users.get_admin_role("garbage").unwrap() is None


# -- pause / resume ---------------------------------------------------------------

def test_pause_and_resume(svc, conn, clock):
    user = register(svc)
    conn.execute("UPDATE users SET current_streak = 4, trust_tier = 2 WHERE id = %s", (user["id"],))
    paused = svc.users.pause(user["id"]).unwrap()
    assert (paused["account_status"], paused["paused_at"]) == ("PAUSED", START)
    assert (paused["pause_streak_snapshot"], paused["pause_trust_tier_snapshot"]) == (4, 2)
    assert svc.users.pause(user["id"]).unwrap()["paused_at"] == START
    resumed = svc.users.resume(user["id"]).unwrap()
    assert (resumed["account_status"], resumed["paused_at"]) == ("ACTIVE", None)
    assert svc.users.resume(user["id"]).unwrap()["account_status"] == "ACTIVE"


def test_pause_suspended_is_forbidden(svc, conn):
    user = register(svc)
    conn.execute("UPDATE users SET account_status = 'SUSPENDED' WHERE id = %s", (user["id"],))
    assert svc.users.pause(user["id"]).code == "ACCOUNT_SUSPENDED"
    assert svc.users.resume(user["id"]).code == "ACCOUNT_SUSPENDED"
    assert conn.execute("SELECT account_status FROM users WHERE id = %s",
                        (user["id"],)).fetchone()["account_status"] == "SUSPENDED"


def test_pause_missing_user_is_hx504(svc):
    assert svc.users.pause(uuid.uuid4()).code == "HX504"
    assert svc.users.resume("nope").code == "HX504"


# -- payout destination ------------------------------------------------------------

def test_connect_account_is_recorded(svc):
    user = register(svc)
    svc.users.pause(user["id"]).unwrap()
    updated = svc.users.set_connect_account(user["id"], "acct_1AbCdEf").unwrap()
    assert updated["stripe_connect_id"] == "acct_1AbCdEf"


@pytest.mark.parametrize("bad", ["", "cus_123", "acct_", "acct_12 3", None])
def test_connect_account_bad_id_is_refused(svc, bad):
    assert svc.users.set_connect_account(register(svc)["id"], bad).code == "VALIDATION_ERROR"


def test_connect_account_missing_user_is_hx504(svc):
    assert svc.users.set_connect_account(uuid.uuid4(), "acct_1").code == "HX504"


# -- require_active ------------------------------------------------------------------

def test_require_active_guards_account_status(db, conn):
    user = f.user(conn)
    with db.transaction() as c:
        assert require_active(c, user)["id"] == user
        assert require_active(c, str(user), lock=True)["id"] == user
    conn.execute("UPDATE users SET account_status = 'PAUSED' WHERE id = %s", (user,))
    with pytest.raises(Forbidden) as paused, db.transaction() as c:
        require_active(c, user)
    assert paused.value.code == "HX602"
    conn.execute("UPDATE users SET account_status = 'SUSPENDED' WHERE id = %s", (user,))
    with pytest.raises(Forbidden) as suspended, db.transaction() as c:
        require_active(c, user)
    assert suspended.value.code == "ACCOUNT_SUSPENDED"
    conn.execute("UPDATE users SET account_status = 'CLOSED' WHERE id = %s", (user,))
    with pytest.raises(Forbidden) as closed, db.transaction() as c:
        require_active(c, user)
    assert closed.value.code == "ACCOUNT_CLOSED"
    for missing in (uuid.uuid4(), "not-a-uuid"):
        with pytest.raises(NotFound) as gone, db.transaction() as c:
            require_active(c, missing)
        assert gone.value.code == "HX504"
