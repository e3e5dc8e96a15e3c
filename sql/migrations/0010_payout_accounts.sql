-- 1.10.0: Connect onboarding and the wallet (issue 12, first half).

-- Our copy of each worker's Stripe Connect account (see sql/schema.sql).
CREATE TABLE payout_accounts (
    stripe_account_id   VARCHAR(255) NOT NULL
        CONSTRAINT payout_accounts_pkey PRIMARY KEY,
    user_id             UUID NOT NULL
        CONSTRAINT payout_accounts_user_id_fkey REFERENCES users(id),
    details_submitted   BOOLEAN NOT NULL DEFAULT false,
    payouts_enabled     BOOLEAN NOT NULL DEFAULT false,
    charges_enabled     BOOLEAN NOT NULL DEFAULT false,
    currently_due       TEXT[] NOT NULL DEFAULT '{}',
    disabled_reason     VARCHAR(255),
    stripe_state_at     TIMESTAMPTZ,
    synced_at           TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX payout_accounts_user_idx ON payout_accounts (user_id);

CREATE TRIGGER payout_accounts_updated_at BEFORE UPDATE ON payout_accounts
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();

-- A worker's payouts, newest first (the wallet), and their waiting transfers.
CREATE INDEX money_outbox_recipient_idx ON money_outbox (recipient_id, created_at DESC, id DESC)
    WHERE kind = 'TRANSFER';
