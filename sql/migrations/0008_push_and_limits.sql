-- 1.8.0: beyond one machine (issue 14): push delivery, devices, request limits shared by every host.

-- Push delivery state per notification.
ALTER TABLE notifications ADD COLUMN push_due_at TIMESTAMPTZ;
ALTER TABLE notifications ADD COLUMN push_attempts INTEGER NOT NULL DEFAULT 0
    CONSTRAINT notifications_push_attempts_check CHECK (push_attempts >= 0);
ALTER TABLE notifications ADD COLUMN push_error VARCHAR(200);
CREATE INDEX notifications_push_due_idx ON notifications (push_due_at) WHERE push_due_at IS NOT NULL;

-- Where a user's pushes go.
CREATE TABLE push_devices (
    token           VARCHAR(4096) PRIMARY KEY,
    user_id         UUID NOT NULL
        CONSTRAINT push_devices_user_id_fkey REFERENCES users(id) ON DELETE CASCADE,
    platform        VARCHAR(10) NOT NULL
        CONSTRAINT push_devices_platform_check CHECK (platform IN ('ios', 'android', 'web')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX push_devices_user_idx ON push_devices (user_id);
CREATE TRIGGER push_devices_updated_at BEFORE UPDATE ON push_devices
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();

-- Request limits counted where every API host sees them.
CREATE UNLOGGED TABLE rate_limit_counters (
    key             VARCHAR(200) PRIMARY KEY,
    window_start    TIMESTAMPTZ NOT NULL,
    window_seconds  INTEGER NOT NULL
        CONSTRAINT rate_limit_counters_window_check CHECK (window_seconds > 0),
    hits            INTEGER NOT NULL,
    previous_hits   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rate_limit_counters_window_idx ON rate_limit_counters (window_start);
