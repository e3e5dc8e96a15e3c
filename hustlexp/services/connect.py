"""ConnectService: a worker's Stripe Connect (Express) account, from onboarding to payouts
(STRIPE_INTEGRATION §3).

`users.stripe_connect_id` is where a worker's transfers go; `payout_accounts` is our copy of what
Stripe says about that account (details submitted, payouts enabled, what it still wants). The
copy is written by `account.updated` webhooks and by refreshes when it is stale, whichever comes,
in any order: each carries the moment its state was Stripe's truth, and an older one never
overwrites a newer one. When payouts turn on, the worker's waiting transfers become due; when they
turn off, new transfers wait (the outbox checks PAYABLE_SQL) and the worker is told.

Stripe is never called while a database lock is held (DESIGN §7.8): onboarding creates the
account first (idempotent by our user id), then stores it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hustlexp.services.base import Service, one, returns_result
from hustlexp.services.payments import PaymentError, account_snapshot
from hustlexp.services.user import missing_user

log = logging.getLogger(__name__)

# The one rule for "a transfer to this worker may go out now", over `users u` joined with
# PAYOUT_ACCOUNT_JOIN: an account to send to, and Stripe has not told us it cannot take payouts.
# An account id set by hand (PUT, no onboarding) has no copy until Stripe reports on it: paid as given.
PAYOUT_ACCOUNT_JOIN = "LEFT JOIN payout_accounts pa ON pa.stripe_account_id = u.stripe_connect_id"
PAYABLE_SQL = "(u.stripe_connect_id IS NOT NULL AND coalesce(pa.payouts_enabled, true))"

# How long our copy is trusted before GET refreshes it from Stripe: briefly while onboarding is
# unfinished (the worker has just come back from Stripe's forms and the app is asking), longer
# once payouts are on (account.updated tells us of any change).
FRESH_WHILE_ONBOARDING = timedelta(seconds=30)
FRESH_WHEN_READY = timedelta(minutes=15)

ONBOARDING_PATH = "/settings/payments"


def onboarding_status(has_account: bool, details_submitted: bool) -> str:
    """NOT_STARTED / INCOMPLETE / COMPLETE, as STRIPE_INTEGRATION §3.2 reads an account."""
    if not has_account:
        return "NOT_STARTED"
    return "COMPLETE" if details_submitted else "INCOMPLETE"


class ConnectService(Service):
    @returns_result
    def start_onboarding(self, user_id: UUID) -> dict[str, Any]:
        """The caller's Express account (created once: the Stripe call is keyed by our user id)
        and a fresh Account Link into Stripe's onboarding forms. Calling again gives a new link
        for the same account."""
        with self.db.transaction() as conn:
            user = self._user(conn, user_id)
        account_id = user["stripe_connect_id"]
        if account_id is None:
            account = self.s.payments.create_express_account(
                user_id=str(user["id"]), email=user["email"], idempotency_key=f"connect-account-{user['id']}")
            account_id = self._store_new_account(user["id"], account)
        base = self.s.app_url.rstrip("/") + ONBOARDING_PATH
        link = self.s.payments.create_account_link(account_id=account_id, refresh_url=f"{base}?refresh=true",
                                                   return_url=f"{base}?success=true")
        return {"stripe_account_id": account_id, "url": link["url"],
                "expires_at": datetime.fromtimestamp(link["expires_at"], UTC)}

    @returns_result
    def status(self, user_id: UUID) -> dict[str, Any]:
        """The caller's payout account as we know it, refreshed from Stripe first when our copy is
        stale. If Stripe cannot be asked, our copy is the answer (`synced_at` says how old)."""
        with self.db.transaction() as conn:
            current = self._status_row(conn, user_id)
        if current["stripe_connect_id"] is not None and self._stale(current):
            try:
                account = self.s.payments.retrieve_account(current["stripe_connect_id"])
            except PaymentError as exc:
                log.warning("payout account %s of user %s not refreshed: %s", current["stripe_connect_id"],
                            user_id, exc)
            else:
                # Stripe's clock, not the service's: this competes with events' `created`, which
                # has whole seconds, so an event of the same second still applies after it.
                self.apply(account, as_of=datetime.now(UTC).replace(microsecond=0)).unwrap()
                with self.db.transaction() as conn:
                    current = self._status_row(conn, user_id)
        return _status_out(current)

    @returns_result
    def apply(self, account: dict[str, Any], *, as_of: datetime) -> dict[str, Any]:
        """Store what Stripe says about an account (an `account.updated` object or a retrieved
        Account) if it is not older than what we hold, and act on payouts turning on or off.
        An account that is nobody's (no user links it, its metadata names no user) is ignored."""
        snap = account_snapshot(account)
        with self.db.transaction() as conn:
            owner = self._owner(conn, snap)
            if owner is None:
                log.warning("account.updated for %s: no such worker", snap["id"])
                return {"result": "ignored", "reason": "unknown_account"}
            first_copy = one(conn, """INSERT INTO payout_accounts (stripe_account_id, user_id) VALUES (%s, %s)
                                      ON CONFLICT (stripe_account_id) DO NOTHING RETURNING true AS new""",
                             (snap["id"], owner)) is not None
            held = one(conn, "SELECT * FROM payout_accounts WHERE stripe_account_id = %s FOR UPDATE",
                       (snap["id"],))
            assert held is not None
            if held["stripe_state_at"] is not None and as_of < held["stripe_state_at"]:
                return {"result": "skipped", "reason": "older_than_stored", "account_id": snap["id"]}
            user = one(conn, "SELECT stripe_connect_id, anonymized_at FROM users WHERE id = %s FOR UPDATE", (owner,))
            assert user is not None
            # Whether the worker could be paid before this (PAYABLE_SQL): a hand-set account we
            # had no copy of was paid as given; an account not yet linked could not be.
            if not first_copy:
                was: bool | None = held["payouts_enabled"]
            else:
                was = True if user["stripe_connect_id"] == snap["id"] else None
            conn.execute("""UPDATE payout_accounts
                               SET details_submitted = %(details)s, payouts_enabled = %(payouts)s,
                                   charges_enabled = %(charges)s, currently_due = %(due)s,
                                   disabled_reason = %(reason)s, stripe_state_at = %(as_of)s, synced_at = now()
                             WHERE stripe_account_id = %(id)s""",
                         {"details": snap["details_submitted"], "payouts": snap["payouts_enabled"],
                          "charges": snap["charges_enabled"], "due": snap["currently_due"],
                          "reason": snap["disabled_reason"], "as_of": as_of, "id": snap["id"]})
            # The webhook may beat onboarding's own commit (or outlive a request that died after
            # Stripe made the account): the account names its worker, so link it here too.
            # Never for an anonymised account: its payout destination was scrubbed on purpose.
            if user["stripe_connect_id"] is None and user["anonymized_at"] is None:
                conn.execute("UPDATE users SET stripe_connect_id = %s WHERE id = %s", (snap["id"], owner))
                user["stripe_connect_id"] = snap["id"]
            now_enabled = snap["payouts_enabled"]
            outcome: dict[str, Any] = {"result": "processed", "account_id": snap["id"], "user_id": owner,
                                       "payouts_enabled": now_enabled}
            if user["stripe_connect_id"] != snap["id"] or was == now_enabled:
                return outcome
            if now_enabled:
                outcome["transfers_due"] = self.s.outbox.release_waiting_for(owner).unwrap()["due"]
                self._notify(owner, "PAYOUT_ACCOUNT_READY", metadata={"account_id": snap["id"]})
            elif was:
                self._notify(owner, "PAYOUT_ACCOUNT_RESTRICTED",
                             metadata={"account_id": snap["id"], "currently_due": snap["currently_due"][:20]})
            return outcome

    # -- helpers ---------------------------------------------------------------

    def _store_new_account(self, user_id: UUID, account: dict[str, Any]) -> str:
        """Link the account Stripe just made; a concurrent call that linked first wins (with the
        same idempotency key Stripe handed both the same account anyway)."""
        with self.db.transaction() as conn:
            # Its first state: restricted until the worker finishes the forms. No stripe_state_at,
            # so any account.updated, even one stamped in this same second, replaces it; a row a
            # webhook already wrote stays. Written before the user is locked: apply() takes the
            # same two rows in the same order, so the two never deadlock.
            conn.execute("""INSERT INTO payout_accounts (stripe_account_id, user_id, details_submitted,
                                                         payouts_enabled, charges_enabled, currently_due,
                                                         disabled_reason, synced_at)
                            VALUES (%s, %s, %s, %s, %s, %s, %s, now())
                            ON CONFLICT (stripe_account_id) DO NOTHING""",
                         (account["id"], user_id, account["details_submitted"], account["payouts_enabled"],
                          account["charges_enabled"], account["currently_due"], account["disabled_reason"]))
            user = one(conn, "SELECT id, stripe_connect_id FROM users WHERE id = %s FOR UPDATE", (user_id,))
            assert user is not None
            if user["stripe_connect_id"] is not None:
                return str(user["stripe_connect_id"])
            conn.execute("UPDATE users SET stripe_connect_id = %s WHERE id = %s", (account["id"], user_id))
        log.info("user %s: Express account %s created", user_id, account["id"])
        return str(account["id"])

    @staticmethod
    def _user(conn: Any, user_id: Any) -> dict[str, Any]:
        user = one(conn, "SELECT id, email, stripe_connect_id FROM users WHERE id = %s", (user_id,))
        if user is None:
            raise missing_user()
        return user

    @staticmethod
    def _status_row(conn: Any, user_id: Any) -> dict[str, Any]:
        row = one(conn, f"""SELECT u.stripe_connect_id, pa.stripe_account_id IS NOT NULL AS has_copy,
                                   pa.details_submitted, pa.payouts_enabled, pa.charges_enabled, pa.currently_due,
                                   pa.disabled_reason, pa.synced_at, {PAYABLE_SQL} AS payable
                              FROM users u {PAYOUT_ACCOUNT_JOIN} WHERE u.id = %s""", (user_id,))
        if row is None:
            raise missing_user()
        return row

    def _stale(self, row: dict[str, Any]) -> bool:
        if row["synced_at"] is None:
            return True
        fresh = FRESH_WHEN_READY if row["payouts_enabled"] and row["details_submitted"] else FRESH_WHILE_ONBOARDING
        return bool(self.s.clock() - row["synced_at"] >= fresh)

    @staticmethod
    def _owner(conn: Any, snap: dict[str, Any]) -> Any:
        """Whose account this is: the row we hold, the user it pays, else the user its metadata
        names (set by us at creation)."""
        row = one(conn, """SELECT coalesce((SELECT user_id FROM payout_accounts WHERE stripe_account_id = %(id)s),
                                           (SELECT id FROM users WHERE stripe_connect_id = %(id)s LIMIT 1)) AS owner""",
                  {"id": snap["id"]})
        if row is not None and row["owner"] is not None:
            return row["owner"]
        named = snap["metadata"].get("hustlexp_user_id")
        try:
            uid = UUID(named) if named else None
        except ValueError:
            return None
        found = one(conn, "SELECT id FROM users WHERE id = %s", (uid,)) if uid else None
        return found["id"] if found else None


def _status_out(row: dict[str, Any]) -> dict[str, Any]:
    has_account = row["stripe_connect_id"] is not None
    # A hand-set account with no copy yet is paid as given (PAYABLE_SQL), so it reads as ready.
    details = bool(row["details_submitted"]) if row["has_copy"] else has_account
    return {"status": onboarding_status(has_account, details), "stripe_account_id": row["stripe_connect_id"],
            "payouts_enabled": bool(row["payable"]), "details_submitted": details,
            "charges_enabled": bool(row["charges_enabled"]) if row["has_copy"] else has_account,
            "currently_due": list(row["currently_due"] or []), "disabled_reason": row["disabled_reason"],
            "synced_at": row["synced_at"]}


def event_time(event: dict[str, Any]) -> datetime:
    """When an event's state was Stripe's truth: its `created` (whole seconds), which
    stripe_webhooks.check_event_shape requires of account.updated."""
    return datetime.fromtimestamp(event["created"], UTC)
