-- 1.2.0: operating the service (issue 15): retention, admin and account rights.

-- Retention soft-deletes proof photos 90 days after their task ended (STORAGE_SPEC §7).
ALTER TABLE proof_photos ADD COLUMN deleted_at TIMESTAMPTZ;

-- Retention clears shared locations once they expire.
CREATE INDEX task_messages_location_expiry_idx ON task_messages (location_expires_at)
    WHERE location_latitude IS NOT NULL;
