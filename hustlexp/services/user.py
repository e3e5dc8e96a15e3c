"""Users: registration (a Firebase identity becomes a row), profile edits, onboarding
(domain §2.5), pause/resume, the payout destination, and the account-status guard other
services call before letting a user act."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from psycopg import sql

from hustlexp.domain import AccountStatus, DefaultMode, RoleCertainty, User
from hustlexp.errors import AccountClosed, AccountSuspended, Conflict, Forbidden, NotFound, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, one, page_params, returns_result

REONBOARD_COOLDOWN = timedelta(days=7)
# PRODUCT_SPEC §20.3, in whole days paused: up to 14 keeps the streak, up to 90 the tier.
STREAK_KEPT_DAYS = 14
TIER_KEPT_DAYS = 90
# PRODUCT_SPEC §16.4: a deleted account can be restored for 7 days, then it is anonymised.
DELETION_GRACE = timedelta(days=7)
STRONG_AT = Decimal("0.75")
MODERATE_AT = Decimal("0.60")

# Presentation preferences onboarding sets for each role (domain §2.5).
ROLE_PREFS = {
    DefaultMode.WORKER: {"xp_visibility_rules": "ledger", "copy_tone_variant": "earner"},
    DefaultMode.POSTER: {"xp_visibility_rules": "outcome", "copy_tone_variant": "delegator"},
}

EDITABLE = ("full_name", "avatar_url", "default_mode", "phone")

# Who is calling (every signed-in request): the columns a domain.User holds, no others.
_BY_FIREBASE_UID = f"SELECT {', '.join(User.columns())} FROM users WHERE firebase_uid = %s"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,18}[0-9]")
_CONNECT_ID = re.compile(r"acct_[A-Za-z0-9]{1,250}")


def parse_uuid(value: Any) -> UUID | None:
    """The UUID in `value`, or None when it is not one (a bad id in a path is a 404)."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def missing_user() -> NotFound:
    return NotFound("No such user.", code="HX504")


def require_user(conn: Any, user_id: Any) -> None:
    """NotFound HX504 unless the user exists (any account status)."""
    if one(conn, "SELECT 1 FROM users WHERE id = %s", (user_id,)) is None:
        raise missing_user()


def require_active(conn: Any, user_id: Any, *, lock: bool = False) -> dict[str, Any]:
    """The user's row if their account may act: NotFound HX504 when there is no such user,
    Forbidden HX602 when paused (read-only until they resume), AccountSuspended when suspended,
    AccountClosed when deleted.
    `lock=True` holds the row FOR UPDATE, for callers about to change it."""
    uid = parse_uuid(user_id)
    if uid is None:
        raise missing_user()
    query = "SELECT * FROM users WHERE id = %s FOR UPDATE" if lock else "SELECT * FROM users WHERE id = %s"
    user = one(conn, query, (uid,))
    if user is None:
        raise missing_user()
    if user["account_status"] == AccountStatus.PAUSED:
        raise Forbidden("Your account is paused; resume it to do that.", code="HX602")
    if user["account_status"] == AccountStatus.SUSPENDED:
        raise AccountSuspended("Your account is suspended.")
    if user["account_status"] == AccountStatus.CLOSED:
        raise AccountClosed("Your account was deleted.")
    return user


def certainty_tier(confidence: Decimal) -> RoleCertainty:
    if confidence >= STRONG_AT:
        return RoleCertainty.STRONG
    if confidence >= MODERATE_AT:
        return RoleCertainty.MODERATE
    return RoleCertainty.WEAK


# -- validation ---------------------------------------------------------------

def _name(value: Any, errors: dict[str, list[str]]) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 255:
        errors["full_name"] = ["1 to 255 characters"]
        return None
    return value.strip()


def _phone(value: Any, errors: dict[str, list[str]]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 20 or _PHONE.fullmatch(value.strip()) is None:
        errors["phone"] = ["a phone number of at most 20 characters"]
        return None
    return value.strip()


def _mode(value: Any, errors: dict[str, list[str]]) -> str | None:
    if value not in DefaultMode.__members__.values():
        errors["default_mode"] = ["worker or poster"]
        return None
    return str(value)


def _avatar(value: Any, errors: dict[str, list[str]]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 500 or not value.startswith(("https://", "http://")):
        errors["avatar_url"] = ["an http(s) URL of at most 500 characters"]
        return None
    return value


def _confidence(value: Any, field: str, errors: dict[str, list[str]]) -> Decimal | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        number = Decimal(str(value))
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(1):
        errors[field] = ["a number from 0 to 1"]
        return None
    return number.quantize(Decimal("0.0001"))


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ValidationError("invalid user data", details=errors)


class UserService(Service):
    @returns_result
    def create(self, *, firebase_uid: str | None, email: str | None, full_name: str, phone: str | None = None,
               default_mode: str = DefaultMode.WORKER) -> dict[str, Any]:
        """Register a user. A taken email, Firebase uid or phone is a Conflict."""
        errors: dict[str, list[str]] = {}
        if firebase_uid is not None and (not isinstance(firebase_uid, str) or not 1 <= len(firebase_uid) <= 128):
            errors["firebase_uid"] = ["1 to 128 characters"]
        address = email.strip().lower() if isinstance(email, str) else ""
        if len(address) > 255 or _EMAIL.fullmatch(address) is None:
            errors["email"] = ["a valid email address"]
        name = _name(full_name, errors)
        number = _phone(phone, errors)
        mode = _mode(default_mode, errors)
        _raise_if(errors)
        with self.db.transaction() as conn:
            taken = conn.execute(
                "SELECT email, firebase_uid, phone FROM users "
                "WHERE email = %s OR firebase_uid = %s OR phone = %s", (address, firebase_uid, number)).fetchall()
            if taken:
                fields = sorted({field for row in taken for field, mine in
                                 (("email", address), ("firebase_uid", firebase_uid), ("phone", number))
                                 if mine is not None and row[field] == mine})
                raise Conflict("That account is already registered.",
                               details={field: ["already registered"] for field in fields})
            user = one(conn, """
                INSERT INTO users (firebase_uid, email, full_name, phone, default_mode)
                VALUES (%s, %s, %s, %s, %s) RETURNING *""", (firebase_uid, address, name, number, mode))
            assert user is not None
            return user

    @returns_result
    def get_by_id(self, user_id: Any) -> dict[str, Any]:
        uid = parse_uuid(user_id)
        if uid is None:
            raise missing_user()
        return self._one("SELECT * FROM users WHERE id = %s", uid)

    @returns_result
    def public_profile(self, user_id: Any) -> dict[str, Any]:
        """What any signed-in user may see of another: {id, full_name, avatar_url, trust_tier,
        tier_name, is_verified, current_level, badges [earned view], rating summary, tasks
        completed (as worker), tasks posted that completed, member_since}. Never contact
        details, location, the Firebase uid or money."""
        from hustlexp.services.rating import summary_from
        from hustlexp.services.trust import TIER_NAMES

        with self.db.transaction() as conn:
            user = one(conn, """
                SELECT u.id, u.full_name, u.avatar_url, u.trust_tier, u.is_verified, u.current_level,
                       u.created_at,
                       (SELECT count(*) FROM tasks t WHERE t.worker_id = u.id AND t.state = 'COMPLETED')
                           AS tasks_completed,
                       (SELECT count(*) FROM tasks t WHERE t.poster_id = u.id AND t.state = 'COMPLETED')
                           AS tasks_posted_completed
                  FROM users u WHERE u.id = %s""", (user_id,))
            if user is None:
                raise missing_user()
            rating = summary_from(conn, user_id, self.s.clock())
            badges = self.s.badges.get_user_badges(user_id).unwrap()["earned_badges"]
        return {"id": user["id"], "full_name": user["full_name"], "avatar_url": user["avatar_url"],
                "trust_tier": user["trust_tier"], "tier_name": TIER_NAMES[user["trust_tier"]],
                "is_verified": user["is_verified"], "current_level": user["current_level"],
                "badges": [{k: b.get(k) for k in ("badge_type", "name", "tier", "icon_url", "awarded_at")}
                           for b in badges],
                "rating": rating, "tasks_completed": user["tasks_completed"],
                "tasks_posted_completed": user["tasks_posted_completed"], "member_since": user["created_at"]}

    @returns_result
    def first_xp_celebration(self, user_id: Any, *, mark_shown: bool = False) -> dict[str, Any]:
        """The first-XP celebration flag (domain §2.5): {should_show (XP earned and never shown),
        shown_at}. mark_shown records that the app played it; the first time wins."""
        with self.db.transaction() as conn:
            user = one(conn, "SELECT xp_total, xp_first_celebration_shown_at AS shown_at FROM users WHERE id = %s "
                             "FOR UPDATE", (user_id,))
            if user is None:
                raise missing_user()
            if mark_shown and user["shown_at"] is None:
                if user["xp_total"] == 0:
                    raise Conflict("There is no first XP to celebrate yet.")
                user = one(conn, "UPDATE users SET xp_first_celebration_shown_at = %s WHERE id = %s "
                                 "RETURNING xp_total, xp_first_celebration_shown_at AS shown_at",
                           (self.s.clock(), user_id))
                assert user is not None
            return {"should_show": user["xp_total"] > 0 and user["shown_at"] is None, "shown_at": user["shown_at"]}

    @returns_result
    def get_by_email(self, email: str) -> dict[str, Any]:
        if not isinstance(email, str):
            raise missing_user()
        return self._one("SELECT * FROM users WHERE email = %s", email.strip().lower())

    @returns_result
    def get_by_firebase_uid(self, firebase_uid: str) -> dict[str, Any]:
        """The users row of `firebase_uid` as a domain.User reads it (its columns only)."""
        if not isinstance(firebase_uid, str) or not firebase_uid:
            raise missing_user()
        return self._one(_BY_FIREBASE_UID, firebase_uid)

    @returns_result
    def update(self, user_id: Any, **fields: Any) -> dict[str, Any]:
        """Edit the profile: full_name, avatar_url (None clears), default_mode, phone (None
        clears). Anything else, or nothing at all, is a ValidationError."""
        if not fields:
            raise ValidationError("nothing to update", details={"_schema": ["send at least one field"]})
        errors: dict[str, list[str]] = {k: ["cannot be changed here"] for k in fields if k not in EDITABLE}
        values: dict[str, Any] = {}
        if "full_name" in fields:
            values["full_name"] = _name(fields["full_name"], errors)
        if "avatar_url" in fields:
            values["avatar_url"] = _avatar(fields["avatar_url"], errors)
        if "default_mode" in fields:
            values["default_mode"] = _mode(fields["default_mode"], errors)
        if "phone" in fields:
            values["phone"] = _phone(fields["phone"], errors)
        _raise_if(errors)
        with self.db.transaction() as conn:
            user = require_active(conn, user_id, lock=True)
            if values.get("phone") is not None and one(
                    conn, "SELECT 1 FROM users WHERE phone = %s AND id <> %s", (values["phone"], user["id"])):
                raise Conflict("That phone number is already registered.",
                               details={"phone": ["already registered"]})
            # Column names come from EDITABLE, never from the caller.
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(col), sql.Placeholder(col)) for col in values)
            query = sql.SQL("UPDATE users SET {} WHERE id = %(id)s RETURNING *").format(assignments)
            updated: dict[str, Any] | None = conn.execute(query, values | {"id": user["id"]}).fetchone()
            assert updated is not None
            return updated

    @returns_result
    def complete_onboarding(self, user_id: Any, *, version: str = "1.0",
                            role_confidence_worker: Any = None, role_confidence_poster: Any = None,
                            overridden: bool = False) -> dict[str, Any]:
        """Finish onboarding (domain §2.5): stamp it, lock the version, infer the role from the
        two confidences (the higher wins; `overridden` means the user chose the other one),
        grade the certainty and set the role's presentation preferences.

        Repeating a completion with nothing new is a no-op. Re-onboarding with new answers is
        refused within 7 days of the last completion (Conflict), and after that allowed only
        when the role was WEAK or overridden (otherwise an admin must do it: Forbidden)."""
        errors: dict[str, list[str]] = {}
        if not isinstance(version, str) or not 1 <= len(version) <= 20:
            errors["version"] = ["1 to 20 characters"]
        worker = _confidence(role_confidence_worker, "role_confidence_worker", errors)
        poster = _confidence(role_confidence_poster, "role_confidence_poster", errors)
        if not isinstance(overridden, bool):
            errors["overridden"] = ["true or false"]
        _raise_if(errors)
        answered = worker is not None or poster is not None
        now = self.s.clock()
        with self.db.transaction() as conn:
            user = require_active(conn, user_id, lock=True)
            if user["onboarding_completed_at"] is not None:
                same = (version == user["onboarding_version"] and worker == user["role_confidence_worker"]
                        and poster == user["role_confidence_poster"]
                        and overridden == user["role_was_overridden"])
                if not answered or same:
                    return user
                self._check_reonboarding(user, now)

            mode = user["default_mode"]
            tier = user["role_certainty_tier"] if not answered else None
            if answered:
                w, p = worker or Decimal(0), poster or Decimal(0)
                inferred = DefaultMode.WORKER if w >= p else DefaultMode.POSTER
                other = DefaultMode.POSTER if inferred == DefaultMode.WORKER else DefaultMode.WORKER
                mode = other if overridden else inferred
                tier = certainty_tier(max(w, p))
            prefs = ROLE_PREFS[DefaultMode(mode)]
            updated = one(conn, """
                UPDATE users
                   SET onboarding_completed_at = %(now)s, onboarding_version = %(version)s,
                       role_confidence_worker = %(worker)s, role_confidence_poster = %(poster)s,
                       role_certainty_tier = %(tier)s, role_was_overridden = %(overridden)s,
                       default_mode = %(mode)s, xp_visibility_rules = %(xp_vis)s,
                       copy_tone_variant = %(tone)s
                 WHERE id = %(id)s RETURNING *""", {
                "now": now, "version": version, "worker": worker, "poster": poster, "tier": tier,
                "overridden": overridden, "mode": mode, "xp_vis": prefs["xp_visibility_rules"],
                "tone": prefs["copy_tone_variant"], "id": user["id"]})
            assert updated is not None
            return updated

    @returns_result
    def get_admin_role(self, user_id: Any) -> dict[str, Any] | None:
        """The user's admin_roles row (role and permission flags), or None for everyone else."""
        uid = parse_uuid(user_id)
        if uid is None:
            return None
        with self.db.transaction() as conn:
            return audit.admin_role(conn, uid)

    @returns_result
    def search(self, admin_id: Any, *, query: str | None = None, status: str | None = None,
               limit: int | None = 20, offset: int | None = 0) -> dict[str, Any]:
        """Users for the admin console (any admin): `query` matches an id exactly, or part of the
        email, name or phone; `status` filters by account status. Newest first; {users, total}."""
        limit, offset = page_params(limit, offset)
        text = query.strip() if isinstance(query, str) else ""
        if len(text) > 255:
            raise ValidationError("the query is too long", details={"q": ["at most 255 characters"]})
        if status is not None and status not in AccountStatus.__members__:
            raise ValidationError("unknown account status", details={"status": list(AccountStatus.__members__)})
        # LIKE's wildcards in the query are matched literally.
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params = {"all": not text, "id": parse_uuid(text), "pattern": pattern, "status": status,
                  "limit": limit, "offset": offset}
        where = sql.SQL("""(%(all)s OR id = %(id)s OR email ILIKE %(pattern)s OR full_name ILIKE %(pattern)s
                    OR phone ILIKE %(pattern)s) AND (%(status)s::text IS NULL OR account_status = %(status)s)""")
        with self.db.transaction() as conn:
            audit.require_admin(conn, admin_id)
            total = conn.execute(sql.SQL("SELECT count(*) AS n FROM users WHERE {}").format(where), params).fetchone()
            rows = conn.execute(sql.SQL(
                """SELECT id, email, full_name, phone, account_status, trust_tier, xp_total, is_verified,
                          suspended_at, paused_at, closed_at, created_at
                     FROM users WHERE {} ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""").format(
                where), params).fetchall()
            return {"users": rows, "total": total["n"] if total else 0}

    @returns_result
    def pause(self, user_id: Any, reason: str | None = None) -> dict[str, Any]:
        """ACTIVE → PAUSED (PRODUCT_SPEC §20), remembering the streak and tier it paused with.
        While paused the account is read-only, takes no new tasks and gets no pushes. Pausing a
        paused account changes nothing; a suspended or closed one cannot."""
        if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
            raise ValidationError("the reason is at most 200 characters", details={"reason": ["at most 200"]})
        with self.db.transaction() as conn:
            user = self._locked(conn, user_id)
            if user["account_status"] == AccountStatus.CLOSED:
                raise AccountClosed("Your account was deleted.")
            if user["account_status"] == AccountStatus.PAUSED:
                return user
            updated = one(conn, """
                UPDATE users SET account_status = 'PAUSED', paused_at = %s, pause_reason = %s,
                       pause_streak_snapshot = current_streak, pause_trust_tier_snapshot = trust_tier
                 WHERE id = %s RETURNING *""", (self.s.clock(), reason, user["id"]))
            assert updated is not None
            return updated

    @returns_result
    def resume(self, user_id: Any) -> dict[str, Any]:
        """PAUSED → ACTIVE at once (PAUSE-4), applying §20.3 by the pause's length: up to 14
        days keeps everything; longer resets the streak to at most 1; over 90 days also drops
        the trust tier one level (logged by trust_tier_audit). A CLOSED account inside its
        7-day deletion grace is restored to ACTIVE; after it, it stays closed."""
        with self.db.transaction() as conn:
            user = self._locked(conn, user_id)
            now = self.s.clock()
            if user["account_status"] == AccountStatus.CLOSED:
                if user["anonymized_at"] is not None or now - user["closed_at"] >= DELETION_GRACE:
                    raise AccountClosed("The account was deleted and its grace period is over.")
                updated = one(conn, "UPDATE users SET account_status = 'ACTIVE', closed_at = NULL "
                                    "WHERE id = %s RETURNING *", (user["id"],))
                assert updated is not None
                return updated
            if user["account_status"] == AccountStatus.ACTIVE:
                return user
            days = (now - user["paused_at"]).days if user["paused_at"] is not None else 0
            streak = user["current_streak"] if days <= STREAK_KEPT_DAYS else min(user["current_streak"], 1)
            updated = one(conn, "UPDATE users SET account_status = 'ACTIVE', paused_at = NULL, pause_reason = NULL, "
                                "current_streak = %s WHERE id = %s RETURNING *", (streak, user["id"]))
            if days > TIER_KEPT_DAYS:
                self.s.trust.demote_after_pause(user["id"], days).unwrap()
                updated = one(conn, "SELECT * FROM users WHERE id = %s", (user["id"],))
            assert updated is not None
            return updated

    @returns_result
    def set_connect_account(self, user_id: Any, stripe_connect_id: str) -> dict[str, Any]:
        """Record where the user's payouts go (a Stripe Connect account id, acct_…). Allowed
        whatever the account status: a paused worker may still be owed money."""
        if not isinstance(stripe_connect_id, str) or _CONNECT_ID.fullmatch(stripe_connect_id) is None:
            raise ValidationError("invalid Stripe Connect account id",
                                  details={"stripe_connect_id": ["acct_…"]})
        uid = parse_uuid(user_id)
        if uid is None:
            raise missing_user()
        with self.db.transaction() as conn:
            updated = one(conn, "UPDATE users SET stripe_connect_id = %s WHERE id = %s RETURNING *",
                          (stripe_connect_id, uid))
            if updated is None:
                raise missing_user()
            # Payouts that waited for this account become due with it; the dispatcher sends them.
            self.s.outbox.release_waiting_for(uid).unwrap()
            return updated

    # -- helpers ---------------------------------------------------------------

    def _one(self, query: str, value: Any) -> dict[str, Any]:
        user = self.db.run_repeatable(lambda conn: one(conn, query, (value,)))
        if user is None:
            raise missing_user()
        return user

    @staticmethod
    def _locked(conn: Any, user_id: Any) -> dict[str, Any]:
        uid = parse_uuid(user_id)
        user = one(conn, "SELECT * FROM users WHERE id = %s FOR UPDATE", (uid,)) if uid else None
        if user is None:
            raise missing_user()
        if user["account_status"] == AccountStatus.SUSPENDED:
            raise AccountSuspended("Your account is suspended.")
        return user

    @staticmethod
    def _check_reonboarding(user: dict[str, Any], now: datetime) -> None:
        if now - user["onboarding_completed_at"] < REONBOARD_COOLDOWN:
            raise Conflict("Onboarding was completed less than 7 days ago.",
                           details={"onboarding": ["retry after 7 days"]})
        # No recorded certainty (onboarding finished without answers) counts as weak.
        if user["role_certainty_tier"] not in (None, RoleCertainty.WEAK) and not user["role_was_overridden"]:
            raise Forbidden("Your role is settled; ask support to change it.")
