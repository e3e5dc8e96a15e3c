-- 1.5.0: operating the service (issue 15): retention, admin and account rights.

-- Retention soft-deletes proof photos 90 days after their task ended (STORAGE_SPEC §7).
ALTER TABLE proof_photos ADD COLUMN deleted_at TIMESTAMPTZ;

-- Retention clears shared locations once they expire.
CREATE INDEX task_messages_location_expiry_idx ON task_messages (location_expires_at)
    WHERE location_latitude IS NOT NULL;

-- Account states: CLOSED (deleted by its owner, anonymised after the grace period).
ALTER TABLE users DROP CONSTRAINT users_account_status_check;
ALTER TABLE users ADD CONSTRAINT users_account_status_check
    CHECK (account_status IN ('ACTIVE', 'PAUSED', 'SUSPENDED', 'CLOSED'));
ALTER TABLE users ADD COLUMN suspended_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN pause_reason VARCHAR(200);
ALTER TABLE users ADD COLUMN closed_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN anonymized_at TIMESTAMPTZ;

-- Tasks an admin must look at.
ALTER TABLE tasks ADD COLUMN review_requested_at TIMESTAMPTZ;
ALTER TABLE tasks ADD COLUMN review_reason VARCHAR(100);

-- Who was asked for more evidence, and when.
ALTER TABLE disputes ADD COLUMN evidence_requested_from UUID
    CONSTRAINT disputes_evidence_requested_from_fkey REFERENCES users(id);
ALTER TABLE disputes ADD COLUMN evidence_requested_at TIMESTAMPTZ;

-- The request that queued a money movement, for logs and Stripe metadata.
ALTER TABLE money_outbox ADD COLUMN request_id VARCHAR(100);
