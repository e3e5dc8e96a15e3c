-- 1.7.0: direct uploads to object storage (issue 14): presign, upload, confirm, attach.

CREATE TABLE uploads (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             UUID NOT NULL CONSTRAINT uploads_user_id_fkey REFERENCES users(id),
    bucket              VARCHAR(20) NOT NULL
        CONSTRAINT uploads_bucket_check CHECK (bucket IN ('proofs', 'avatars', 'messages', 'evidence')),
    task_id             UUID CONSTRAINT uploads_task_id_fkey REFERENCES tasks(id),
    storage_key         VARCHAR(500) NOT NULL CONSTRAINT uploads_storage_key_unique UNIQUE,
    content_type        VARCHAR(100) NOT NULL,
    file_size_bytes     BIGINT NOT NULL
        CONSTRAINT uploads_file_size_check CHECK (file_size_bytes > 0),
    state               VARCHAR(20) NOT NULL DEFAULT 'PENDING'
        CONSTRAINT uploads_state_check CHECK (state IN ('PENDING', 'CONFIRMED', 'ATTACHED')),
    expires_at          TIMESTAMPTZ NOT NULL,
    checksum_sha256     VARCHAR(64),
    capture_time        TIMESTAMPTZ,
    confirmed_at        TIMESTAMPTZ,
    attached_at         TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- Every bucket but avatars belongs to a task.
    CONSTRAINT uploads_task_scope_check CHECK ((bucket = 'avatars') = (task_id IS NULL)),
    -- Confirmed means measured and hashed.
    CONSTRAINT uploads_confirmed_check CHECK ((state = 'PENDING') = (confirmed_at IS NULL)
                                              AND (state = 'PENDING') = (checksum_sha256 IS NULL)),
    CONSTRAINT uploads_attached_check CHECK ((state = 'ATTACHED') = (attached_at IS NOT NULL))
);

CREATE INDEX uploads_user_idx ON uploads (user_id, created_at);
CREATE INDEX uploads_unattached_idx ON uploads (expires_at) WHERE state <> 'ATTACHED';
