-- 1.9.0: every money event that matters (issue 12): chargebacks hold an escrow's money,
-- Radar risk levels flag a funded escrow, reversed transfers and failed payouts are recorded.

ALTER TABLE escrows ADD COLUMN chargeback_hold VARCHAR(20)
    CONSTRAINT escrows_chargeback_hold_check CHECK (chargeback_hold IN ('CHARGEBACK', 'CHARGEBACK_LOST'));
ALTER TABLE escrows ADD COLUMN payment_risk_level VARCHAR(20);
ALTER TABLE escrows ADD COLUMN risk_cleared_at TIMESTAMPTZ;
ALTER TABLE escrows ADD COLUMN risk_cleared_by UUID
    CONSTRAINT escrows_risk_cleared_by_fkey REFERENCES users(id);

CREATE TABLE chargebacks (
    id                          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    stripe_dispute_id           VARCHAR(255) NOT NULL CONSTRAINT chargebacks_stripe_dispute_id_key UNIQUE,
    escrow_id                   UUID CONSTRAINT chargebacks_escrow_id_fkey REFERENCES escrows(id),
    stripe_charge_id            VARCHAR(255),
    stripe_payment_intent_id    VARCHAR(255),
    amount                      INTEGER NOT NULL CONSTRAINT chargebacks_amount_check CHECK (amount >= 0),
    reason                      VARCHAR(100),
    status                      VARCHAR(10) NOT NULL
        CONSTRAINT chargebacks_status_check CHECK (status IN ('OPEN', 'WON', 'LOST')),
    stripe_status               VARCHAR(50),
    money_held                  BOOLEAN NOT NULL,
    loss_amount                 INTEGER NOT NULL DEFAULT 0
        CONSTRAINT chargebacks_loss_amount_check CHECK (loss_amount >= 0),
    opened_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at                   TIMESTAMPTZ,

    CONSTRAINT chargebacks_closed_check CHECK ((status = 'OPEN') = (closed_at IS NULL))
);

CREATE INDEX chargebacks_page_idx ON chargebacks (opened_at DESC, id DESC);
CREATE INDEX chargebacks_escrow_idx ON chargebacks (escrow_id);

CREATE TABLE payout_incidents (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    kind                VARCHAR(20) NOT NULL
        CONSTRAINT payout_incidents_kind_check CHECK (kind IN ('TRANSFER_REVERSED', 'PAYOUT_FAILED')),
    stripe_object_id    VARCHAR(255) NOT NULL,
    stripe_account_id   VARCHAR(255),
    user_id             UUID CONSTRAINT payout_incidents_user_id_fkey REFERENCES users(id),
    escrow_id           UUID CONSTRAINT payout_incidents_escrow_id_fkey REFERENCES escrows(id),
    amount              INTEGER NOT NULL CONSTRAINT payout_incidents_amount_check CHECK (amount >= 0),
    failure_code        VARCHAR(100),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT payout_incidents_object_key UNIQUE (kind, stripe_object_id)
);

CREATE FUNCTION guard_chargeback_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.chargeback_hold = 'CHARGEBACK_LOST' AND NEW.chargeback_hold IS DISTINCT FROM OLD.chargeback_hold THEN
        RAISE EXCEPTION 'escrow % lost a chargeback; its hold is permanent', OLD.id USING ERRCODE = 'HX204';
    END IF;
    IF NEW.chargeback_hold IS NOT NULL AND NEW.state IS DISTINCT FROM OLD.state
       AND NEW.state IN ('RELEASED', 'REFUNDED', 'REFUND_PARTIAL') THEN
        RAISE EXCEPTION 'escrow % is held by a chargeback: no release, no refund', OLD.id
            USING ERRCODE = 'HX204';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER escrow_chargeback_guard BEFORE UPDATE ON escrows
    FOR EACH ROW EXECUTE FUNCTION guard_chargeback_hold();

-- Whether a movement of `kind` for this escrow may not go out because a chargeback holds it.
CREATE FUNCTION held_by_chargeback(p_escrow_id UUID, p_kind VARCHAR) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_kind IN ('TRANSFER', 'REFUND')
       AND EXISTS (SELECT 1 FROM escrows WHERE id = p_escrow_id AND chargeback_hold IS NOT NULL)
$$;

CREATE FUNCTION refuse_money_of_held_escrow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'INSERT' OR NEW.attempt_count > OLD.attempt_count)
       AND held_by_chargeback(NEW.escrow_id, NEW.kind) THEN
        RAISE EXCEPTION 'escrow % is held by a chargeback: its % may not be sent', NEW.escrow_id, NEW.kind
            USING ERRCODE = 'HX204';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER money_outbox_held_escrow_guard BEFORE INSERT OR UPDATE ON money_outbox
    FOR EACH ROW EXECUTE FUNCTION refuse_money_of_held_escrow();
