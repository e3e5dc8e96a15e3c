-- HustleXP schema: the whole current schema, for a fresh install.
--
-- Layer 0 of HustleXP. The triggers below make the chain
--   task funded -> work accepted -> proof accepted -> escrow released -> XP awarded
-- impossible to break, whatever the code above does. Error codes are raised as the
-- SQLSTATE itself (HX001 ...), so drivers expose them as exc.sqlstate.
--
-- PostgreSQL 14+. `hustlexp db init` runs this file in one transaction and records every
-- version (sql/versions/1.0.0.sql, then each sql/migrations/NNNN_*.sql) in schema_versions.
-- A change to this file is also a new migration that brings an existing database to the
-- same result (DESIGN.md §7.15); tests/migrations proves the two agree.


-- ---------------------------------------------------------------------------
-- Shared trigger functions
-- ---------------------------------------------------------------------------

CREATE FUNCTION stamp_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- Append-only tables: one function, the code comes from the trigger's argument.
CREATE FUNCTION refuse_append_only_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = TG_ARGV[0];
END $$;

-- ---------------------------------------------------------------------------
-- users
-- ---------------------------------------------------------------------------

CREATE TABLE users (
    id                              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    firebase_uid                    VARCHAR(128) UNIQUE,
    email                           VARCHAR(255) NOT NULL UNIQUE,
    phone                           VARCHAR(20) UNIQUE,
    full_name                       VARCHAR(255) NOT NULL,
    avatar_url                      VARCHAR(500),
    default_mode                    VARCHAR(20) NOT NULL DEFAULT 'worker'
        CONSTRAINT users_default_mode_check CHECK (default_mode IN ('worker', 'poster')),

    onboarding_version              VARCHAR(20),
    onboarding_completed_at         TIMESTAMPTZ,
    role_confidence_worker          NUMERIC(5,4),
    role_confidence_poster          NUMERIC(5,4),
    role_certainty_tier             VARCHAR(20)
        CONSTRAINT users_role_certainty_tier_check CHECK (role_certainty_tier IN ('STRONG', 'MODERATE', 'WEAK')),
    role_was_overridden             BOOLEAN NOT NULL DEFAULT false,
    inconsistency_flags             TEXT[],
    risk_tolerance                  NUMERIC(4,3),
    urgency_bias                    NUMERIC(4,3),
    authority_expectation           NUMERIC(4,3),
    price_sensitivity               NUMERIC(4,3),

    trust_tier                      INTEGER NOT NULL DEFAULT 1
        CONSTRAINT users_trust_tier_check CHECK (trust_tier BETWEEN 1 AND 4),
    xp_total                        INTEGER NOT NULL DEFAULT 0
        CONSTRAINT users_xp_total_check CHECK (xp_total >= 0),
    current_level                   INTEGER NOT NULL DEFAULT 1
        CONSTRAINT users_current_level_check CHECK (current_level BETWEEN 1 AND 10),
    current_streak                  INTEGER NOT NULL DEFAULT 0
        CONSTRAINT users_current_streak_check CHECK (current_streak >= 0),
    last_task_completed_at          TIMESTAMPTZ,
    streak_grace_expires_at         TIMESTAMPTZ,

    is_verified                     BOOLEAN NOT NULL DEFAULT false,
    verified_at                     TIMESTAMPTZ,
    student_id_verified             BOOLEAN NOT NULL DEFAULT false,
    stripe_customer_id              VARCHAR(255),
    stripe_connect_id               VARCHAR(255),

    xp_visibility_rules             VARCHAR(20) NOT NULL DEFAULT 'ledger',
    trust_ui_density                VARCHAR(20) NOT NULL DEFAULT 'normal',
    copy_tone_variant               VARCHAR(20) NOT NULL DEFAULT 'neutral',
    xp_first_celebration_shown_at   TIMESTAMPTZ,

    account_status                  VARCHAR(20) NOT NULL DEFAULT 'ACTIVE'
        CONSTRAINT users_account_status_check CHECK (account_status IN ('ACTIVE', 'PAUSED', 'SUSPENDED', 'CLOSED')),
    paused_at                       TIMESTAMPTZ,
    pause_streak_snapshot           INTEGER,
    pause_trust_tier_snapshot       INTEGER,

    created_at                      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                      TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- 1.5.0: an admin suspended the account (admin_actions says who and why).
    suspended_at                    TIMESTAMPTZ,
    pause_reason                    VARCHAR(200),
    -- 1.5.0: the owner deleted the account (CLOSED); its identity is scrubbed from this row,
    -- the only place it lives, once the grace period is over (anonymized_at).
    closed_at                       TIMESTAMPTZ,
    anonymized_at                   TIMESTAMPTZ
);

-- ---------------------------------------------------------------------------
-- tasks
-- ---------------------------------------------------------------------------

CREATE TABLE tasks (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    poster_id               UUID NOT NULL REFERENCES users(id),
    worker_id               UUID REFERENCES users(id),
    title                   VARCHAR(255) NOT NULL,
    description             TEXT NOT NULL,
    requirements            TEXT,
    location                VARCHAR(255),
    location_lat            NUMERIC(10,7),
    location_lng            NUMERIC(10,7),
    category                VARCHAR(50),
    scope_hash              VARCHAR(64),
    price                   INTEGER NOT NULL
        CONSTRAINT tasks_price_check CHECK (price >= 500),
    mode                    VARCHAR(20) NOT NULL DEFAULT 'STANDARD'
        CONSTRAINT tasks_mode_check CHECK (mode IN ('STANDARD', 'LIVE')),
    state                   VARCHAR(20) NOT NULL DEFAULT 'OPEN'
        CONSTRAINT tasks_state_check CHECK (state IN
            ('OPEN', 'ACCEPTED', 'PROOF_SUBMITTED', 'DISPUTED', 'COMPLETED', 'CANCELLED', 'EXPIRED')),
    deadline                TIMESTAMPTZ,
    accepted_at             TIMESTAMPTZ,
    proof_submitted_at      TIMESTAMPTZ,
    completed_at            TIMESTAMPTZ,
    cancelled_at            TIMESTAMPTZ,
    expired_at              TIMESTAMPTZ,
    requires_proof          BOOLEAN NOT NULL DEFAULT true,
    proof_instructions      TEXT,
    required_trust_tier     INTEGER
        CONSTRAINT tasks_required_trust_tier_check CHECK (required_trust_tier BETWEEN 0 AND 4),
    risk_level              VARCHAR(20) NOT NULL DEFAULT 'low'
        CONSTRAINT tasks_risk_level_check CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    -- The client's Idempotency-Key: a retried POST /api/tasks finds its first task.
    idempotency_key         VARCHAR(100),
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- 1.5.0: an admin must look at this task (e.g. a party was suspended mid-task).
    review_requested_at     TIMESTAMPTZ,
    review_reason           VARCHAR(100),

    -- Nobody works their own task; every state past OPEN has a worker.
    CONSTRAINT tasks_worker_not_poster CHECK (worker_id IS NULL OR worker_id <> poster_id),
    CONSTRAINT tasks_worker_assigned CHECK (
        state IN ('OPEN', 'CANCELLED', 'EXPIRED') OR worker_id IS NOT NULL)
);

CREATE INDEX tasks_state_created_idx ON tasks (state, created_at DESC);
CREATE INDEX tasks_poster_idx ON tasks (poster_id, created_at DESC);
CREATE INDEX tasks_worker_idx ON tasks (worker_id, created_at DESC) WHERE worker_id IS NOT NULL;
-- The completion's perfect-week test reads one worker's completions of one week (1.12.0).
CREATE INDEX tasks_worker_completed_idx ON tasks (worker_id, completed_at) WHERE state = 'COMPLETED';
CREATE INDEX tasks_category_idx ON tasks (category);
CREATE INDEX tasks_open_deadline_idx ON tasks (deadline) WHERE state = 'OPEN';
-- The board's keyset pages (newest first, id breaking ties): read in index order and stop at
-- the page size, so a page costs the same at 100 or 100,000 OPEN tasks.
CREATE INDEX tasks_created_id_idx ON tasks (created_at, id);
CREATE UNIQUE INDEX tasks_poster_idempotency_key ON tasks (poster_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The feed (1.4.0): full-text search over what a worker reads, and the bounding box of a
-- position; both only over OPEN tasks, the only ones the feed shows.
CREATE INDEX tasks_open_search_idx ON tasks USING gin (to_tsvector('english', title || ' ' || description))
    WHERE state = 'OPEN';
-- The position as a point (x = lng, y = lat; core GiST, no extension): answers the bounding
-- box and streams tasks nearest first (ORDER BY <->), which the feed's first stage reads. It
-- also carries what ranking reads, so scoring a neighbourhood never visits the table.
CREATE INDEX tasks_open_point_idx ON tasks USING gist (point(location_lng::float8, location_lat::float8))
    INCLUDE (id, poster_id, price, category, deadline, created_at, risk_level, required_trust_tier, state,
             location_lat, location_lng)
    WHERE state = 'OPEN' AND location_lat IS NOT NULL AND location_lng IS NOT NULL;
-- The feed's newest and price orders (1.11.0), ties broken by id as its cursor does: a dense
-- board is read in order until the page is full, whatever the radius.
CREATE INDEX tasks_open_created_idx ON tasks (created_at DESC, id DESC) WHERE state = 'OPEN';
CREATE INDEX tasks_open_price_idx ON tasks (price DESC, id DESC) WHERE state = 'OPEN';

-- ---------------------------------------------------------------------------
-- escrows (exactly one per task; amount = task price, frozen from creation)
-- ---------------------------------------------------------------------------

CREATE TABLE escrows (
    id                          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id                     UUID NOT NULL UNIQUE REFERENCES tasks(id),
    amount                      INTEGER NOT NULL
        CONSTRAINT escrows_amount_check CHECK (amount > 0),
    state                       VARCHAR(20) NOT NULL DEFAULT 'PENDING'
        CONSTRAINT escrows_state_check CHECK (state IN
            ('PENDING', 'FUNDED', 'LOCKED_DISPUTE', 'RELEASED', 'REFUNDED', 'REFUND_PARTIAL')),
    refund_amount               INTEGER
        CONSTRAINT escrows_refund_amount_check CHECK (refund_amount >= 0),
    release_amount              INTEGER
        CONSTRAINT escrows_release_amount_check CHECK (release_amount >= 0),
    stripe_payment_intent_id    VARCHAR(255) UNIQUE,
    stripe_transfer_id          VARCHAR(255),
    stripe_refund_id            VARCHAR(255),
    funded_at                   TIMESTAMPTZ,
    released_at                 TIMESTAMPTZ,
    refunded_at                 TIMESTAMPTZ,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- 1.9.0: a chargeback holds the money (CHARGEBACK) or, lost, took it for good
    -- (CHARGEBACK_LOST): neither is ever released nor refunded (escrow_chargeback_guard, HX204).
    chargeback_hold             VARCHAR(20)
        CONSTRAINT escrows_chargeback_hold_check CHECK (chargeback_hold IN ('CHARGEBACK', 'CHARGEBACK_LOST')),
    -- 1.9.0: Stripe Radar's risk level of the funding charge; 'elevated' and 'highest' are
    -- flagged for an admin, and 'highest' blocks acceptance until one clears it.
    payment_risk_level          VARCHAR(20),
    risk_cleared_at             TIMESTAMPTZ,
    risk_cleared_by             UUID CONSTRAINT escrows_risk_cleared_by_fkey REFERENCES users(id),

    CONSTRAINT escrow_partial_sum_check CHECK (
        state <> 'REFUND_PARTIAL'
        OR (refund_amount IS NOT NULL AND release_amount IS NOT NULL
            AND refund_amount + release_amount = amount))
);

-- No index on state alone (dropped in 1.13.0): nothing looks escrows up by state, and on a table
-- without statistics the planner picked it for `id = $1 AND state = 'PENDING'` and read every
-- PENDING escrow instead of one primary-key row.
-- The feed's eligibility joins each candidate to its escrow only to see it FUNDED.
CREATE INDEX escrows_funded_task_idx ON escrows (task_id) WHERE state = 'FUNDED';

-- ---------------------------------------------------------------------------
-- proofs and their photos
-- ---------------------------------------------------------------------------

CREATE TABLE proofs (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id             UUID NOT NULL REFERENCES tasks(id),
    submitter_id        UUID NOT NULL REFERENCES users(id),
    state               VARCHAR(20) NOT NULL DEFAULT 'PENDING'
        CONSTRAINT proofs_state_check CHECK (state IN ('PENDING', 'SUBMITTED', 'ACCEPTED', 'REJECTED', 'EXPIRED')),
    description         TEXT,
    reviewed_by         UUID REFERENCES users(id),
    reviewed_at         TIMESTAMPTZ,
    rejection_reason    TEXT,
    submitted_at        TIMESTAMPTZ,
    review_deadline     TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT proofs_rejection_reason_check CHECK (
        state <> 'REJECTED' OR char_length(rejection_reason) BETWEEN 1 AND 1000)
);

CREATE INDEX proofs_task_idx ON proofs (task_id, created_at DESC);
CREATE INDEX proofs_review_deadline_idx ON proofs (review_deadline) WHERE state = 'SUBMITTED';
-- One user's rejected proofs: the repeated-rejection penalty and perfect-week (1.12.0).
CREATE INDEX proofs_submitter_rejected_idx ON proofs (submitter_id, reviewed_at) WHERE state = 'REJECTED';
-- A task has at most one proof in flight (PENDING or SUBMITTED) and at most one accepted.
CREATE UNIQUE INDEX proofs_one_open_per_task ON proofs (task_id) WHERE state IN ('PENDING', 'SUBMITTED');
CREATE UNIQUE INDEX proofs_one_accepted_per_task ON proofs (task_id) WHERE state = 'ACCEPTED';

CREATE TABLE proof_photos (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    proof_id            UUID NOT NULL REFERENCES proofs(id) ON DELETE CASCADE,
    storage_key         VARCHAR(500) NOT NULL,
    content_type        VARCHAR(100) NOT NULL,
    file_size_bytes     BIGINT NOT NULL
        CONSTRAINT proof_photos_file_size_check CHECK (file_size_bytes > 0),
    checksum_sha256     VARCHAR(64) NOT NULL,
    capture_time        TIMESTAMPTZ,
    sequence_number     INTEGER NOT NULL DEFAULT 1
        CONSTRAINT proof_photos_sequence_check CHECK (sequence_number BETWEEN 1 AND 5),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- From the image's EXIF, read by the server (DESIGN 7.13); NULL when the photo has none.
    location_lat        NUMERIC(10,7)
        CONSTRAINT proof_photos_location_lat_check CHECK (location_lat BETWEEN -90 AND 90),
    location_lng        NUMERIC(10,7)
        CONSTRAINT proof_photos_location_lng_check CHECK (location_lng BETWEEN -180 AND 180),
    camera_make         VARCHAR(100),
    camera_model        VARCHAR(100),
    -- Retention soft-deletes a photo 90 days after its task ended (STORAGE_SPEC §7; 1.5.0).
    deleted_at          TIMESTAMPTZ,

    CONSTRAINT proof_photos_sequence_unique UNIQUE (proof_id, sequence_number),
    CONSTRAINT proof_photos_location_pair_check CHECK ((location_lat IS NULL) = (location_lng IS NULL))
);

-- ---------------------------------------------------------------------------
-- xp_ledger (append-only; the truth for XP)
-- ---------------------------------------------------------------------------

CREATE TABLE xp_ledger (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 UUID NOT NULL REFERENCES users(id),
    task_id                 UUID NOT NULL REFERENCES tasks(id),
    escrow_id               UUID NOT NULL REFERENCES escrows(id),
    base_xp                 INTEGER NOT NULL
        CONSTRAINT xp_ledger_base_xp_check CHECK (base_xp > 0),
    streak_multiplier       NUMERIC(3,2) NOT NULL DEFAULT 1.00,
    trust_multiplier        NUMERIC(3,2) NOT NULL DEFAULT 1.00,
    decay_factor            NUMERIC(6,4) NOT NULL DEFAULT 1.0000,
    effective_xp            INTEGER NOT NULL
        CONSTRAINT xp_ledger_effective_xp_check CHECK (effective_xp > 0),
    reason                  VARCHAR(50) NOT NULL DEFAULT 'task_completion',
    user_xp_before          INTEGER NOT NULL,
    user_xp_after           INTEGER NOT NULL,
    user_level_before       INTEGER NOT NULL,
    user_level_after        INTEGER NOT NULL,
    user_streak_at_award    INTEGER NOT NULL,
    awarded_at              TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT xp_ledger_escrow_unique UNIQUE (escrow_id),
    CONSTRAINT xp_ledger_balance_check CHECK (user_xp_after = user_xp_before + effective_xp)
);

CREATE INDEX xp_ledger_user_idx ON xp_ledger (user_id, awarded_at DESC);

-- ---------------------------------------------------------------------------
-- trust_ledger (append-only; written by trust_tier_audit alone)
-- ---------------------------------------------------------------------------

CREATE TABLE trust_ledger (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             UUID NOT NULL REFERENCES users(id),
    old_tier            INTEGER NOT NULL
        CONSTRAINT trust_ledger_old_tier_check CHECK (old_tier BETWEEN 1 AND 4),
    new_tier            INTEGER NOT NULL
        CONSTRAINT trust_ledger_new_tier_check CHECK (new_tier BETWEEN 1 AND 4),
    reason              VARCHAR(100) NOT NULL,
    reason_details      JSONB,
    task_id             UUID REFERENCES tasks(id),
    dispute_id          UUID,
    changed_by          VARCHAR(100) NOT NULL,
    changed_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX trust_ledger_user_idx ON trust_ledger (user_id, changed_at DESC);

-- ---------------------------------------------------------------------------
-- badges (append-only; animation_shown_at may be set once)
-- ---------------------------------------------------------------------------

CREATE TABLE badges (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             UUID NOT NULL REFERENCES users(id),
    badge_type          VARCHAR(50) NOT NULL,
    badge_tier          INTEGER NOT NULL
        CONSTRAINT badges_badge_tier_check CHECK (badge_tier BETWEEN 1 AND 4),
    animation_shown_at  TIMESTAMPTZ,
    awarded_for         VARCHAR(100),
    task_id             UUID REFERENCES tasks(id),
    awarded_at          TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT badges_user_type_unique UNIQUE (user_id, badge_type)
);

-- ---------------------------------------------------------------------------
-- disputes
-- ---------------------------------------------------------------------------

CREATE TABLE disputes (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id                 UUID NOT NULL REFERENCES tasks(id),
    escrow_id               UUID NOT NULL REFERENCES escrows(id),
    initiated_by            UUID NOT NULL REFERENCES users(id),
    poster_id               UUID NOT NULL REFERENCES users(id),
    worker_id               UUID NOT NULL REFERENCES users(id),
    state                   VARCHAR(20) NOT NULL DEFAULT 'OPEN'
        CONSTRAINT disputes_state_check CHECK (state IN ('OPEN', 'EVIDENCE_REQUESTED', 'RESOLVED', 'ESCALATED')),
    reason                  VARCHAR(100) NOT NULL,
    description             TEXT NOT NULL
        CONSTRAINT disputes_description_check CHECK (char_length(description) BETWEEN 1 AND 2000),
    resolution              VARCHAR(50)
        CONSTRAINT disputes_resolution_check CHECK (resolution IN ('HUSTLER_WINS', 'CLIENT_WINS', 'SPLIT')),
    resolution_notes        TEXT,
    resolved_by             UUID REFERENCES users(id),
    resolved_at             TIMESTAMPTZ,
    outcome_escrow_action   VARCHAR(20)
        CONSTRAINT disputes_outcome_escrow_action_check CHECK (outcome_escrow_action IN ('RELEASE', 'REFUND', 'SPLIT')),
    outcome_worker_penalty  BOOLEAN NOT NULL DEFAULT false,
    outcome_poster_penalty  BOOLEAN NOT NULL DEFAULT false,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- 1.5.0: EVIDENCE_REQUESTED names the party asked and when.
    evidence_requested_from UUID CONSTRAINT disputes_evidence_requested_from_fkey REFERENCES users(id),
    evidence_requested_at   TIMESTAMPTZ,

    CONSTRAINT disputes_initiator_is_participant CHECK (initiated_by IN (poster_id, worker_id)),
    CONSTRAINT disputes_resolved_complete CHECK (
        state <> 'RESOLVED'
        OR (resolution IS NOT NULL AND resolved_by IS NOT NULL AND resolved_at IS NOT NULL
            AND outcome_escrow_action IS NOT NULL))
);

-- One unresolved dispute per task.
CREATE UNIQUE INDEX disputes_one_open_per_task ON disputes (task_id) WHERE state <> 'RESOLVED';

-- ---------------------------------------------------------------------------
-- processed_stripe_events (webhook idempotency)
-- ---------------------------------------------------------------------------

CREATE TABLE processed_stripe_events (
    event_id        VARCHAR(255) PRIMARY KEY,
    event_type      VARCHAR(100) NOT NULL,
    processed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    result          VARCHAR(50) NOT NULL,
    error_message   TEXT
);

-- Retention purges processed events by age (1.1.0).
CREATE INDEX processed_stripe_events_processed_at_idx ON processed_stripe_events (processed_at);

-- ---------------------------------------------------------------------------
-- money_outbox: money leaves through here (DESIGN 7.8). The escrow state change and
-- its row commit together; the Stripe call happens after commit, keyed by
-- idempotency_key. One movement of each kind per escrow, ever.
-- ---------------------------------------------------------------------------

CREATE TABLE money_outbox (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    escrow_id           UUID NOT NULL REFERENCES escrows(id),
    kind                VARCHAR(20) NOT NULL
        CONSTRAINT money_outbox_kind_check CHECK (kind IN ('TRANSFER', 'REFUND', 'CANCEL_INTENT')),
    amount              INTEGER NOT NULL
        CONSTRAINT money_outbox_amount_check CHECK (amount >= 0),
    recipient_id        UUID REFERENCES users(id),
    idempotency_key     VARCHAR(255) NOT NULL UNIQUE,
    status              VARCHAR(20) NOT NULL DEFAULT 'PENDING'
        CONSTRAINT money_outbox_status_check CHECK (status IN
            ('PENDING', 'PROCESSING', 'SUCCEEDED', 'FAILED_PERMANENT', 'CANCELLED')),
    attempt_count       INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_attempt_at     TIMESTAMPTZ,
    last_error          TEXT,
    stripe_object_id    VARCHAR(255),
    completed_at        TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- 1.5.0: the request that queued it (X-Request-ID), carried into job logs and Stripe metadata.
    request_id          VARCHAR(100),

    CONSTRAINT money_outbox_one_per_kind UNIQUE (escrow_id, kind),
    CONSTRAINT money_outbox_succeeded_has_id CHECK (status <> 'SUCCEEDED' OR stripe_object_id IS NOT NULL)
);

CREATE INDEX money_outbox_due_idx ON money_outbox (next_attempt_at) WHERE status = 'PENDING';
-- 1.10.0: a worker's payouts, newest first (the wallet), and their waiting transfers.
CREATE INDEX money_outbox_recipient_idx ON money_outbox (recipient_id, created_at DESC, id DESC)
    WHERE kind = 'TRANSFER';

-- ---------------------------------------------------------------------------
-- chargebacks (1.9.0): Stripe disputes of the poster's charge, one row per dispute.
-- money_held: the escrow still held the money when it opened (so the escrow was held);
-- otherwise the money had left and loss_amount records what the platform is out.
-- ---------------------------------------------------------------------------

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

-- payout_incidents (1.9.0): a worker's money that went back (transfer.reversed) or did not
-- reach the bank (payout.failed on the connected account). One row per Stripe object.
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

-- ---------------------------------------------------------------------------
-- AI tables (gate only: no service writes them in v1)
-- ---------------------------------------------------------------------------

CREATE TABLE ai_events (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         UUID REFERENCES users(id),
    task_id         UUID REFERENCES tasks(id),
    event_type      VARCHAR(100) NOT NULL,
    payload         JSONB NOT NULL,
    payload_hash    VARCHAR(64) NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ai_jobs (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        UUID NOT NULL REFERENCES ai_events(id),
    status          VARCHAR(20) NOT NULL DEFAULT 'PENDING'
        CONSTRAINT ai_jobs_status_check CHECK (status IN
            ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'TIMED_OUT', 'KILLED')),
    timeout_ms      INTEGER NOT NULL DEFAULT 30000,
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 3,
    started_at      TIMESTAMPTZ,
    completed_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ai_proposals (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id          UUID NOT NULL REFERENCES ai_jobs(id),
    proposal        JSONB NOT NULL,
    confidence      NUMERIC(5,4)
        CONSTRAINT ai_proposals_confidence_check CHECK (confidence BETWEEN 0 AND 1),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ai_decisions (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    proposal_id     UUID NOT NULL REFERENCES ai_proposals(id),
    accepted        BOOLEAN NOT NULL,
    reason_codes    TEXT[] NOT NULL,
    final_author    VARCHAR(100) NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE evidence (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id             UUID REFERENCES tasks(id),
    dispute_id          UUID REFERENCES disputes(id),
    submitted_by        UUID REFERENCES users(id),
    evidence_type       VARCHAR(20) NOT NULL DEFAULT 'PHOTO'
        CONSTRAINT evidence_type_check CHECK (evidence_type IN ('PHOTO', 'MESSAGE', 'LOCATION', 'DOCUMENT')),
    description         TEXT,
    storage_key         VARCHAR(500) NOT NULL,
    content_type        VARCHAR(100) NOT NULL,
    file_size_bytes     BIGINT NOT NULL,
    checksum_sha256     VARCHAR(64) NOT NULL,
    capture_time        TIMESTAMPTZ,
    requested_by        VARCHAR(20) NOT NULL DEFAULT 'system'
        CONSTRAINT evidence_requested_by_check CHECK (requested_by IN ('system', 'poster', 'admin')),
    access_scope        VARCHAR(20) NOT NULL DEFAULT 'restricted',
    retention_deadline  TIMESTAMPTZ NOT NULL DEFAULT now() + interval '30 days',
    legal_hold          BOOLEAN NOT NULL DEFAULT false,
    moderation_status   VARCHAR(20) NOT NULL DEFAULT 'pending'
        CONSTRAINT evidence_moderation_status_check CHECK (moderation_status IN
            ('pending', 'approved', 'flagged', 'quarantined')),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- uploads (1.7.0): direct uploads to object storage (STORAGE_SPEC §4). A row is the intent
-- (PENDING: a presigned PUT was handed out), then CONFIRMED once the server fetched, measured,
-- decoded and hashed the object, then ATTACHED once a proof, a message, a dispute or the
-- profile uses it. expires_at is when a row not yet ATTACHED stops waiting for its next step:
-- retention then removes it and its object.
-- ---------------------------------------------------------------------------

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

-- ---------------------------------------------------------------------------
-- admin_roles, admin_actions (append-only)
-- ---------------------------------------------------------------------------

CREATE TABLE admin_roles (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 UUID NOT NULL UNIQUE REFERENCES users(id),
    role                    VARCHAR(20) NOT NULL
        CONSTRAINT admin_roles_role_check CHECK (role IN ('support', 'moderator', 'admin', 'founder')),
    can_resolve_disputes    BOOLEAN NOT NULL DEFAULT false,
    can_override_escrow     BOOLEAN NOT NULL DEFAULT false,
    can_modify_trust        BOOLEAN NOT NULL DEFAULT false,
    can_ban_users           BOOLEAN NOT NULL DEFAULT false,
    can_access_financials   BOOLEAN NOT NULL DEFAULT false,
    granted_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    granted_by              UUID REFERENCES users(id)
);

CREATE TABLE admin_actions (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    admin_user_id       UUID NOT NULL REFERENCES users(id),
    admin_role          VARCHAR(20) NOT NULL,
    action_type         VARCHAR(50) NOT NULL,
    action_details      JSONB NOT NULL,
    target_user_id      UUID REFERENCES users(id),
    target_task_id      UUID REFERENCES tasks(id),
    target_escrow_id    UUID REFERENCES escrows(id),
    target_dispute_id   UUID REFERENCES disputes(id),
    result              VARCHAR(50) NOT NULL,
    result_details      JSONB,
    performed_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX admin_actions_admin_idx ON admin_actions (admin_user_id, performed_at DESC);

-- ---------------------------------------------------------------------------
-- Messaging and notifications
-- ---------------------------------------------------------------------------

CREATE TABLE task_messages (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id                 UUID NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    sender_id               UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    receiver_id             UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message_type            VARCHAR(20) NOT NULL
        CONSTRAINT task_messages_message_type_check CHECK (message_type IN ('TEXT', 'AUTO', 'PHOTO', 'LOCATION')),
    content                 TEXT
        CONSTRAINT task_messages_content_length_check CHECK (char_length(content) <= 500),
    auto_message_template   VARCHAR(50),
    photo_urls              TEXT[],
    photo_count             INTEGER NOT NULL DEFAULT 0
        CONSTRAINT task_messages_photo_count_check CHECK (photo_count BETWEEN 0 AND 3),
    location_latitude       DECIMAL(10,8),
    location_longitude      DECIMAL(11,8),
    location_expires_at     TIMESTAMPTZ,
    read_at                 TIMESTAMPTZ,
    deleted_at              TIMESTAMPTZ,
    moderation_status       VARCHAR(20) NOT NULL DEFAULT 'pending'
        CONSTRAINT task_messages_moderation_status_check CHECK (moderation_status IN
            ('pending', 'approved', 'flagged', 'quarantined')),
    moderation_flags        TEXT[],
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT task_messages_text_has_content CHECK (
        message_type NOT IN ('TEXT', 'AUTO') OR coalesce(char_length(content), 0) >= 1),
    CONSTRAINT task_messages_not_to_self CHECK (sender_id <> receiver_id)
);

CREATE INDEX task_messages_thread_idx ON task_messages (task_id, created_at DESC, id DESC);
CREATE INDEX task_messages_sender_day_idx ON task_messages (sender_id, created_at);
-- Retention clears shared locations once they expire (1.5.0).
CREATE INDEX task_messages_location_expiry_idx ON task_messages (location_expires_at)
    WHERE location_latitude IS NOT NULL;

CREATE TABLE notifications (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    category        VARCHAR(50) NOT NULL,
    title           VARCHAR(200) NOT NULL,
    body            TEXT NOT NULL,
    deep_link       TEXT NOT NULL,
    task_id         UUID REFERENCES tasks(id) ON DELETE SET NULL,
    metadata        JSONB NOT NULL DEFAULT '{}',
    channels        TEXT[] NOT NULL DEFAULT '{push}'
        CONSTRAINT notifications_channels_check CHECK (channels <@ ARRAY['push', 'email', 'sms', 'in_app']::TEXT[]),
    priority        VARCHAR(20) NOT NULL
        CONSTRAINT notifications_priority_check CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    sent_at         TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    read_at         TIMESTAMPTZ,
    clicked_at      TIMESTAMPTZ,
    group_id        UUID,
    group_position  INTEGER,
    expires_at      TIMESTAMPTZ NOT NULL DEFAULT now() + interval '30 days',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Push delivery (1.8.0): when the push is due (now, or when a quiet-hours / cap hold ends,
    -- or a retry's back-off); NULL once sent, given up, or when nothing is to be pushed.
    push_due_at     TIMESTAMPTZ,
    push_attempts   INTEGER NOT NULL DEFAULT 0
        CONSTRAINT notifications_push_attempts_check CHECK (push_attempts >= 0),
    push_error      VARCHAR(200),

    CONSTRAINT notifications_sent_after_created CHECK (sent_at >= created_at),
    CONSTRAINT notifications_delivered_after_sent CHECK (delivered_at >= sent_at),
    CONSTRAINT notifications_read_after_delivered CHECK (read_at >= delivered_at)
);

CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_user_unread_idx ON notifications (user_id) WHERE read_at IS NULL;
-- NOTIF-5 purges by age across all users (1.1.0). A BRIN index (1.12.0): rows arrive in time
-- order, so block ranges find the old ones, and no plan can read it for the duplicate and
-- grouping checks, which a B-tree on created_at drew into walking every user's last five minutes.
CREATE INDEX notifications_created_idx ON notifications USING brin (created_at);
-- notify()'s duplicate and grouping checks: one recipient's latest rows of one category and task,
-- read straight from the index whatever the recipient's history holds.
CREATE INDEX notifications_recent_idx ON notifications (user_id, category, task_id, created_at DESC);
-- The push sender's queue: only rows still waiting for a push are in it.
CREATE INDEX notifications_push_due_idx ON notifications (push_due_at) WHERE push_due_at IS NOT NULL;

CREATE TABLE notification_preferences (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 UUID NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    quiet_hours_enabled     BOOLEAN NOT NULL DEFAULT true,
    quiet_hours_start       TIME NOT NULL DEFAULT '22:00',
    quiet_hours_end         TIME NOT NULL DEFAULT '07:00',
    push_enabled            BOOLEAN NOT NULL DEFAULT true,
    email_enabled           BOOLEAN NOT NULL DEFAULT false,
    sms_enabled             BOOLEAN NOT NULL DEFAULT false,
    category_preferences    JSONB NOT NULL DEFAULT '{}',
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- push_devices: where a user's pushes go (FCM registration tokens, 1.8.0). A token belongs to
-- one user at a time: the newest to register it (a shared phone changes hands).
-- ---------------------------------------------------------------------------

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

-- ---------------------------------------------------------------------------
-- rate_limit_counters: request limits shared by every API host (DESIGN §7.17, 1.8.0). One row
-- per limited key (rule + user or IP), a sliding window over the current and previous fixed
-- window. UNLOGGED: no WAL, so counting costs little; a crash empties it, which only forgives.
-- ---------------------------------------------------------------------------

CREATE UNLOGGED TABLE rate_limit_counters (
    key             VARCHAR(200) PRIMARY KEY,
    window_start    TIMESTAMPTZ NOT NULL,
    window_seconds  INTEGER NOT NULL
        CONSTRAINT rate_limit_counters_window_check CHECK (window_seconds > 0),
    hits            INTEGER NOT NULL,
    previous_hits   INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX rate_limit_counters_window_idx ON rate_limit_counters (window_start);

-- ---------------------------------------------------------------------------
-- task_ratings: poster and worker rate each other after completion (RATE-1..8).
-- Append-only. A rating is blind until the other party rated too or the 7-day window
-- closed; that is computed when read, so nothing here ever changes after insert.
-- ---------------------------------------------------------------------------

CREATE TABLE task_ratings (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id         UUID NOT NULL REFERENCES tasks(id),
    rater_id        UUID NOT NULL REFERENCES users(id),
    ratee_id        UUID NOT NULL REFERENCES users(id),
    stars           INTEGER NOT NULL
        CONSTRAINT task_ratings_stars_check CHECK (stars BETWEEN 1 AND 5),
    comment         TEXT
        CONSTRAINT task_ratings_comment_check CHECK (char_length(comment) <= 500),
    tags            TEXT[] NOT NULL DEFAULT '{}'
        CONSTRAINT task_ratings_tags_check CHECK (cardinality(tags) <= 11),
    is_auto_rated   BOOLEAN NOT NULL DEFAULT false,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- RATE-5: one rating per rater per task (the pair is fixed by the task).
    CONSTRAINT task_ratings_one_per_rater UNIQUE (task_id, rater_id),
    -- An auto-rating is the spec's default (5 stars, nothing said), so the flag that lets it
    -- in after the window can never carry a real opinion.
    CONSTRAINT task_ratings_auto_is_default CHECK (
        NOT is_auto_rated OR (stars = 5 AND comment IS NULL AND cardinality(tags) = 0))
);

CREATE INDEX task_ratings_ratee_idx ON task_ratings (ratee_id, created_at DESC, id DESC);
CREATE INDEX task_ratings_rater_idx ON task_ratings (rater_id, created_at DESC, id DESC);

-- poster_rating_totals (1.6.0): what workers rated each poster, counted when the task's pair of
-- ratings is complete (both rated, or the auto-rating closed the window), kept by a trigger
-- on task_ratings. The feed ranks by it without aggregating rating history per request.
CREATE TABLE poster_rating_totals (
    poster_id   UUID PRIMARY KEY REFERENCES users(id),
    ratings     INTEGER NOT NULL
        CONSTRAINT poster_rating_totals_ratings_check CHECK (ratings > 0),
    stars       INTEGER NOT NULL,
    CONSTRAINT poster_rating_totals_stars_check CHECK (stars BETWEEN ratings AND 5 * ratings)
);

-- The best average, read in one index step: the feed's bound on what a poster adds to a score.
CREATE INDEX poster_rating_totals_average_idx ON poster_rating_totals ((stars::float8 / ratings));

-- ---------------------------------------------------------------------------
-- payout_accounts (1.10.0): our copy of each worker's Stripe Connect account
-- ---------------------------------------------------------------------------

-- What Stripe last told us about a connected account (account.updated, or a refresh). The
-- destination of a worker's payouts stays users.stripe_connect_id; this row says whether Stripe
-- lets it take them. An account id set by hand (PUT, no onboarding) has no row until Stripe
-- tells us about it, and is paid as given.
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
    -- When what we hold was Stripe's truth (the event's `created`, or when we retrieved it):
    -- an older event delivered late never overwrites a newer state.
    stripe_state_at     TIMESTAMPTZ,
    synced_at           TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX payout_accounts_user_idx ON payout_accounts (user_id);

-- ---------------------------------------------------------------------------
-- schema_versions
-- ---------------------------------------------------------------------------

CREATE TABLE schema_versions (
    version     VARCHAR(20) PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_by  VARCHAR(100) NOT NULL,
    checksum    VARCHAR(64) NOT NULL,
    notes       TEXT
);

-- ===========================================================================
-- Triggers: the invariants
-- ===========================================================================

-- updated_at stamping -------------------------------------------------------
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER tasks_updated_at BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER escrows_updated_at BEFORE UPDATE ON escrows
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER proofs_updated_at BEFORE UPDATE ON proofs
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER disputes_updated_at BEFORE UPDATE ON disputes
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER money_outbox_updated_at BEFORE UPDATE ON money_outbox
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER ai_jobs_updated_at BEFORE UPDATE ON ai_jobs
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER notification_preferences_updated_at BEFORE UPDATE ON notification_preferences
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER push_devices_updated_at BEFORE UPDATE ON push_devices
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();
CREATE TRIGGER payout_accounts_updated_at BEFORE UPDATE ON payout_accounts
    FOR EACH ROW EXECUTE FUNCTION stamp_updated_at();

-- Terminal task: state, price, poster, worker, title, description frozen (HX001).
CREATE FUNCTION guard_terminal_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('COMPLETED', 'CANCELLED', 'EXPIRED') AND (
           NEW.state IS DISTINCT FROM OLD.state
        OR NEW.price IS DISTINCT FROM OLD.price
        OR NEW.poster_id IS DISTINCT FROM OLD.poster_id
        OR NEW.worker_id IS DISTINCT FROM OLD.worker_id
        OR NEW.title IS DISTINCT FROM OLD.title
        OR NEW.description IS DISTINCT FROM OLD.description) THEN
        RAISE EXCEPTION 'task % is % and can no longer change', OLD.id, OLD.state
            USING ERRCODE = 'HX001';
    END IF;
    RETURN NEW;
END $$;

-- The guards' WHEN (1.13.0) is a condition every row the function refuses meets: rows that cannot
-- break the rule skip a PL/pgSQL call (the function still checks everything itself).
CREATE TRIGGER task_terminal_guard BEFORE UPDATE ON tasks
    FOR EACH ROW WHEN (OLD.state IN ('COMPLETED', 'CANCELLED', 'EXPIRED')) EXECUTE FUNCTION guard_terminal_task();

-- INV-3: a task that requires proof completes only with an ACCEPTED proof (HX301).
-- Also on INSERT, so a task cannot be born COMPLETED; and turning requires_proof off in the
-- same UPDATE does not dodge it.
CREATE FUNCTION require_accepted_proof() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'COMPLETED'
       AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'COMPLETED')
       AND (NEW.requires_proof OR (TG_OP = 'UPDATE' AND OLD.requires_proof))
       AND NOT EXISTS (SELECT 1 FROM proofs WHERE task_id = NEW.id AND state = 'ACCEPTED') THEN
        RAISE EXCEPTION 'task % cannot complete without an accepted proof', NEW.id
            USING ERRCODE = 'HX301';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER task_completed_requires_accepted_proof BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW WHEN (NEW.state = 'COMPLETED') EXECUTE FUNCTION require_accepted_proof();

-- The price is what the escrow holds: once the escrow exists it cannot change (HX004).
CREATE FUNCTION guard_task_price() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Terminal tasks are task_terminal_guard's (HX001).
    IF NEW.price IS DISTINCT FROM OLD.price AND OLD.state NOT IN ('COMPLETED', 'CANCELLED', 'EXPIRED')
       AND EXISTS (SELECT 1 FROM escrows WHERE task_id = OLD.id) THEN
        RAISE EXCEPTION 'task % price is held in escrow and cannot change', OLD.id USING ERRCODE = 'HX004';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER task_price_immutable BEFORE UPDATE OF price ON tasks
    FOR EACH ROW EXECUTE FUNCTION guard_task_price();

-- An accepted proof is the evidence money moved on: it stays accepted (HX301).
CREATE FUNCTION guard_accepted_proof() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'ACCEPTED' AND NEW.state IS DISTINCT FROM OLD.state THEN
        RAISE EXCEPTION 'proof % is accepted and stays accepted', OLD.id USING ERRCODE = 'HX301';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER proof_accepted_immutable BEFORE UPDATE ON proofs
    FOR EACH ROW EXECUTE FUNCTION guard_accepted_proof();

-- Escrow amount equals the task price at creation (HX003) ...
CREATE FUNCTION check_escrow_amount_matches_price() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.amount IS DISTINCT FROM (SELECT price FROM tasks WHERE id = NEW.task_id) THEN
        RAISE EXCEPTION 'escrow amount % must equal the price of task %', NEW.amount, NEW.task_id
            USING ERRCODE = 'HX003';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER escrow_amount_matches_price BEFORE INSERT ON escrows
    FOR EACH ROW EXECUTE FUNCTION check_escrow_amount_matches_price();

-- ... and never changes afterwards (INV-4, HX004).
CREATE FUNCTION guard_escrow_amount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.amount IS DISTINCT FROM OLD.amount THEN
        RAISE EXCEPTION 'escrow % amount is immutable', OLD.id USING ERRCODE = 'HX004';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER escrow_amount_immutable BEFORE UPDATE ON escrows
    FOR EACH ROW WHEN (NEW.amount IS DISTINCT FROM OLD.amount) EXECUTE FUNCTION guard_escrow_amount();

-- Terminal escrow: state, amount, task_id frozen (HX002). Stripe ids and timestamps stay writable.
CREATE FUNCTION guard_terminal_escrow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('RELEASED', 'REFUNDED', 'REFUND_PARTIAL') AND (
           NEW.state IS DISTINCT FROM OLD.state
        OR NEW.amount IS DISTINCT FROM OLD.amount
        OR NEW.task_id IS DISTINCT FROM OLD.task_id
        OR NEW.refund_amount IS DISTINCT FROM OLD.refund_amount
        OR NEW.release_amount IS DISTINCT FROM OLD.release_amount) THEN
        RAISE EXCEPTION 'escrow % is % and can no longer change', OLD.id, OLD.state
            USING ERRCODE = 'HX002';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER escrow_terminal_guard BEFORE UPDATE ON escrows
    FOR EACH ROW WHEN (OLD.state IN ('RELEASED', 'REFUNDED', 'REFUND_PARTIAL'))
    EXECUTE FUNCTION guard_terminal_escrow();

-- A chargeback hold (1.9.0): while an escrow is held its money neither leaves for the worker
-- nor goes back to the poster, and a lost chargeback's hold is for good (HX204).
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
    FOR EACH ROW WHEN (OLD.chargeback_hold IS NOT NULL OR NEW.chargeback_hold IS NOT NULL)
    EXECUTE FUNCTION guard_chargeback_hold();

-- INV-2: an escrow is RELEASED only when its task is COMPLETED (HX201).
CREATE FUNCTION require_completed_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'RELEASED'
       AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'RELEASED')
       AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = NEW.task_id AND state = 'COMPLETED') THEN
        RAISE EXCEPTION 'escrow % cannot be released before task % is completed', NEW.id, NEW.task_id
            USING ERRCODE = 'HX201';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER escrow_released_requires_completed_task BEFORE INSERT OR UPDATE ON escrows
    FOR EACH ROW WHEN (NEW.state = 'RELEASED') EXECUTE FUNCTION require_completed_task();

-- Money goes back to the poster only once the task has ended without completion: cancelled
-- (by the poster, an admin or a ruling) or expired (HX203).
CREATE FUNCTION require_ended_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('REFUNDED', 'REFUND_PARTIAL')
       -- A settled escrow changing state is escrow_terminal_guard's (HX002).
       AND (TG_OP = 'INSERT' OR (OLD.state IS DISTINCT FROM NEW.state
                                 AND OLD.state NOT IN ('RELEASED', 'REFUNDED', 'REFUND_PARTIAL')))
       AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = NEW.task_id AND state IN ('CANCELLED', 'EXPIRED')) THEN
        RAISE EXCEPTION 'escrow % cannot be refunded while task % is live or completed', NEW.id, NEW.task_id
            USING ERRCODE = 'HX203';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER escrow_refund_requires_ended_task BEFORE INSERT OR UPDATE ON escrows
    FOR EACH ROW WHEN (NEW.state IN ('REFUNDED', 'REFUND_PARTIAL')) EXECUTE FUNCTION require_ended_task();

-- INV-1: XP only for a RELEASED escrow, paid to that task's worker (HX101).
CREATE FUNCTION require_released_escrow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM escrows e JOIN tasks t ON t.id = e.task_id
         WHERE e.id = NEW.escrow_id AND e.state = 'RELEASED'
           AND e.task_id = NEW.task_id AND t.worker_id = NEW.user_id) THEN
        RAISE EXCEPTION 'XP requires a RELEASED escrow for the worker of task %', NEW.task_id
            USING ERRCODE = 'HX101';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER xp_requires_released_escrow BEFORE INSERT ON xp_ledger
    FOR EACH ROW EXECUTE FUNCTION require_released_escrow();

-- Append-only ledgers.
CREATE TRIGGER xp_ledger_no_delete BEFORE DELETE ON xp_ledger
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX102');
CREATE TRIGGER xp_ledger_no_update BEFORE UPDATE ON xp_ledger
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX102');
CREATE TRIGGER xp_ledger_no_truncate BEFORE TRUNCATE ON xp_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change('HX102');

CREATE TRIGGER badge_no_delete BEFORE DELETE ON badges
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX401');
CREATE TRIGGER badge_no_truncate BEFORE TRUNCATE ON badges
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change('HX401');

-- Badges: the only change allowed is the client confirming the animation, once.
CREATE FUNCTION guard_badge_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) - 'animation_shown_at') IS DISTINCT FROM (to_jsonb(OLD) - 'animation_shown_at')
       OR OLD.animation_shown_at IS NOT NULL THEN
        RAISE EXCEPTION 'badges are append-only' USING ERRCODE = 'HX401';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER badge_no_update BEFORE UPDATE ON badges
    FOR EACH ROW EXECUTE FUNCTION guard_badge_update();

CREATE TRIGGER trust_ledger_no_delete BEFORE DELETE ON trust_ledger
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX801');
CREATE TRIGGER trust_ledger_no_update BEFORE UPDATE ON trust_ledger
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX801');
CREATE TRIGGER trust_ledger_no_truncate BEFORE TRUNCATE ON trust_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change('HX801');

CREATE TRIGGER admin_actions_no_delete BEFORE DELETE ON admin_actions
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX801');
CREATE TRIGGER admin_actions_no_update BEFORE UPDATE ON admin_actions
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX801');
CREATE TRIGGER admin_actions_no_truncate BEFORE TRUNCATE ON admin_actions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change('HX801');

-- Trust tier changes are logged here and only here. Callers describe the change in
-- transaction-local settings (hustlexp.trust_reason, .trust_actor, .trust_task_id,
-- .trust_dispute_id, .trust_details); unset, they read as a direct system update.
CREATE FUNCTION audit_trust_tier() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.trust_tier IS DISTINCT FROM OLD.trust_tier THEN
        INSERT INTO trust_ledger (user_id, old_tier, new_tier, reason, reason_details,
                                  task_id, dispute_id, changed_by)
        VALUES (NEW.id, OLD.trust_tier, NEW.trust_tier,
                coalesce(nullif(current_setting('hustlexp.trust_reason', true), ''), 'direct_update'),
                nullif(current_setting('hustlexp.trust_details', true), '')::jsonb,
                nullif(current_setting('hustlexp.trust_task_id', true), '')::uuid,
                nullif(current_setting('hustlexp.trust_dispute_id', true), '')::uuid,
                coalesce(nullif(current_setting('hustlexp.trust_actor', true), ''), 'system'));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER trust_tier_audit AFTER UPDATE OF trust_tier ON users
    FOR EACH ROW EXECUTE FUNCTION audit_trust_tier();

-- Proof photos: at most five per proof; a proof is submitted with at least one.
CREATE FUNCTION limit_proof_photos() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM proof_photos WHERE proof_id = NEW.proof_id) >= 5 THEN
        RAISE EXCEPTION 'a proof holds at most 5 photos';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER trigger_proof_photo_limit BEFORE INSERT ON proof_photos
    FOR EACH ROW EXECUTE FUNCTION limit_proof_photos();

CREATE FUNCTION require_proof_photo() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'PENDING' AND NEW.state = 'SUBMITTED'
       AND NOT EXISTS (SELECT 1 FROM proof_photos WHERE proof_id = NEW.id) THEN
        RAISE EXCEPTION 'a proof needs at least one photo to be submitted';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER trigger_proof_photo_minimum BEFORE UPDATE ON proofs
    FOR EACH ROW EXECUTE FUNCTION require_proof_photo();

-- Messaging: only while the task is active (HX801), only between its poster and worker (HX802).
CREATE FUNCTION require_active_task_for_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tasks WHERE id = NEW.task_id
                      AND state IN ('ACCEPTED', 'PROOF_SUBMITTED', 'DISPUTED')) THEN
        RAISE EXCEPTION 'task % is not open for messages', NEW.task_id USING ERRCODE = 'HX801';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER message_requires_active_task BEFORE INSERT ON task_messages
    FOR EACH ROW EXECUTE FUNCTION require_active_task_for_message();

CREATE FUNCTION require_message_participants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tasks WHERE id = NEW.task_id
                      AND ((poster_id = NEW.sender_id AND worker_id = NEW.receiver_id)
                        OR (worker_id = NEW.sender_id AND poster_id = NEW.receiver_id))) THEN
        RAISE EXCEPTION 'only the poster and the worker of task % exchange messages', NEW.task_id
            USING ERRCODE = 'HX802';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER message_sender_is_participant BEFORE INSERT ON task_messages
    FOR EACH ROW EXECUTE FUNCTION require_message_participants();

-- Money movements must match their escrow to the cent (HX202): a transfer only from a
-- RELEASED (85 % of the amount) or REFUND_PARTIAL escrow (85 % of release_amount); a
-- refund only from a terminal escrow that was paid, for the amount it gives back.
CREATE FUNCTION require_matching_escrow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    e escrows%ROWTYPE;
    expected INTEGER;
BEGIN
    SELECT * INTO e FROM escrows WHERE id = NEW.escrow_id;
    expected := CASE
        WHEN NEW.kind = 'TRANSFER' AND e.state = 'RELEASED' THEN (e.amount * 85) / 100
        WHEN NEW.kind = 'TRANSFER' AND e.state = 'REFUND_PARTIAL' THEN (e.release_amount * 85) / 100
        WHEN NEW.kind = 'REFUND' AND e.state = 'REFUNDED' AND e.funded_at IS NOT NULL THEN e.amount
        WHEN NEW.kind = 'REFUND' AND e.state = 'REFUND_PARTIAL' THEN e.refund_amount
        WHEN NEW.kind = 'CANCEL_INTENT' AND e.state = 'REFUNDED' THEN 0
    END;
    IF expected IS NULL OR NEW.amount <> expected THEN
        RAISE EXCEPTION '% of % does not match escrow % in state %', NEW.kind, NEW.amount, e.id, e.state
            USING ERRCODE = 'HX202';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER money_outbox_requires_matching_escrow BEFORE INSERT ON money_outbox
    FOR EACH ROW EXECUTE FUNCTION require_matching_escrow();

CREATE FUNCTION guard_money_outbox_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.escrow_id IS DISTINCT FROM OLD.escrow_id OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.amount IS DISTINCT FROM OLD.amount
       OR NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key
       OR (OLD.status = 'SUCCEEDED' AND NEW.status IS DISTINCT FROM OLD.status) THEN
        RAISE EXCEPTION 'money movement % is fixed once written', OLD.id USING ERRCODE = 'HX202';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER money_outbox_immutable BEFORE UPDATE ON money_outbox
    FOR EACH ROW EXECUTE FUNCTION guard_money_outbox_update();

-- Nor through the outbox (1.9.0): no transfer or refund of a held escrow is written or
-- claimed for sending (HX204). An attempt already at Stripe may still record its outcome.
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

CREATE TRIGGER money_outbox_no_delete BEFORE DELETE ON money_outbox
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX202');
CREATE TRIGGER money_outbox_no_truncate BEFORE TRUNCATE ON money_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change('HX202');

-- Ratings (HX807-HX812): stars 1-5 (HX810) and a comment of at most 500 characters (HX811)
-- raise their own codes before the CHECKs would; only for a COMPLETED task (HX807), between its
-- poster and its worker (HX812), within 7 days of completion unless it is the auto-rating
-- that closes the window (HX808).
CREATE FUNCTION check_task_rating() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    IF NEW.stars IS NULL OR NEW.stars NOT BETWEEN 1 AND 5 THEN
        RAISE EXCEPTION 'a rating is 1 to 5 stars, not %', NEW.stars USING ERRCODE = 'HX810';
    END IF;
    IF char_length(NEW.comment) > 500 THEN
        RAISE EXCEPTION 'a rating comment holds at most 500 characters' USING ERRCODE = 'HX811';
    END IF;
    SELECT * INTO t FROM tasks WHERE id = NEW.task_id;
    IF NOT FOUND OR t.state <> 'COMPLETED' THEN
        RAISE EXCEPTION 'task % is not COMPLETED and cannot be rated', NEW.task_id USING ERRCODE = 'HX807';
    END IF;
    IF NOT ((NEW.rater_id = t.poster_id AND NEW.ratee_id = t.worker_id)
         OR (NEW.rater_id = t.worker_id AND NEW.ratee_id = t.poster_id)) THEN
        RAISE EXCEPTION 'only the poster and the worker of task % rate each other', NEW.task_id
            USING ERRCODE = 'HX812';
    END IF;
    IF NOT NEW.is_auto_rated AND now() > t.completed_at + interval '7 days' THEN
        RAISE EXCEPTION 'the rating window of task % closed 7 days after completion', NEW.task_id
            USING ERRCODE = 'HX808';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER task_rating_requires_completed_task BEFORE INSERT ON task_ratings
    FOR EACH ROW EXECUTE FUNCTION check_task_rating();

-- A task's pair of ratings completes in exactly one statement: the one inserting the second
-- rating (or both, as the auto-rating may). Statement level, so a statement inserting both counts
-- the task once; the task row lock orders two parties rating at the same moment, so the later
-- one sees the earlier and counts.
CREATE FUNCTION count_poster_rating() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tasks WHERE id IN (SELECT task_id FROM inserted_ratings) ORDER BY id FOR UPDATE;
    INSERT INTO poster_rating_totals AS totals (poster_id, ratings, stars)
    SELECT w.ratee_id, count(*), sum(w.stars)
      FROM (SELECT DISTINCT task_id FROM inserted_ratings) i
      JOIN tasks t ON t.id = i.task_id
      JOIN task_ratings w ON w.task_id = t.id AND w.rater_id = t.worker_id AND w.ratee_id = t.poster_id
     WHERE EXISTS (SELECT 1 FROM task_ratings p WHERE p.task_id = t.id AND p.rater_id = t.poster_id)
     GROUP BY w.ratee_id
    ON CONFLICT (poster_id) DO UPDATE
       SET ratings = totals.ratings + EXCLUDED.ratings, stars = totals.stars + EXCLUDED.stars;
    RETURN NULL;
END $$;

CREATE TRIGGER task_ratings_count_poster_rating AFTER INSERT ON task_ratings
    REFERENCING NEW TABLE AS inserted_ratings
    FOR EACH STATEMENT EXECUTE FUNCTION count_poster_rating();

-- RATE-4: a rating never changes and is never removed (HX809).
CREATE TRIGGER task_ratings_no_update BEFORE UPDATE ON task_ratings
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX809');
CREATE TRIGGER task_ratings_no_delete BEFORE DELETE ON task_ratings
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX809');
CREATE TRIGGER task_ratings_no_truncate BEFORE TRUNCATE ON task_ratings
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change('HX809');

-- ---------------------------------------------------------------------------
-- user_counters (1.12.0): what trust tiers and badges count of a user's history, kept by the
-- triggers below in the transaction that changes the history, so a completion reads one row
-- instead of counting every task, proof and dispute the worker ever had (issue 11). Only those
-- triggers write it (HX103): a direct write would let a counter drift from what it counts.
-- ---------------------------------------------------------------------------

CREATE TABLE user_counters (
    user_id             UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    -- tasks with this user as worker, in any state
    tasks_taken         INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_tasks_taken_check CHECK (tasks_taken >= 0),
    -- of those, COMPLETED: all, by badge category (lower(category)), and before 09:00 UTC
    tasks_completed     INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_tasks_completed_check CHECK (tasks_completed BETWEEN 0 AND tasks_taken),
    completed_cleaning  INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_completed_cleaning_check CHECK (completed_cleaning BETWEEN 0 AND tasks_completed),
    completed_delivery  INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_completed_delivery_check CHECK (completed_delivery BETWEEN 0 AND tasks_completed),
    completed_moving    INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_completed_moving_check CHECK (completed_moving BETWEEN 0 AND tasks_completed),
    completed_early     INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_completed_early_check CHECK (completed_early BETWEEN 0 AND tasks_completed),
    -- proofs this user submitted, as reviewed
    proofs_accepted     INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_proofs_accepted_check CHECK (proofs_accepted >= 0),
    proofs_rejected     INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_proofs_rejected_check CHECK (proofs_rejected >= 0),
    -- disputes over tasks this user worked
    disputes            INTEGER NOT NULL DEFAULT 0
        CONSTRAINT user_counters_disputes_check CHECK (disputes >= 0)
);

-- Adds a change to one user's counters (a missing row counts from zero). Called only by the
-- counting triggers; user_counters_guard refuses it from anywhere else. An UPDATE first: the
-- CHECKs hold for the sums, not for a change (a completion adds no task taken).
CREATE FUNCTION add_user_counts(who UUID, taken INTEGER DEFAULT 0, completed INTEGER DEFAULT 0,
                                cleaning INTEGER DEFAULT 0, delivery INTEGER DEFAULT 0,
                                moving INTEGER DEFAULT 0, early INTEGER DEFAULT 0,
                                accepted INTEGER DEFAULT 0, rejected INTEGER DEFAULT 0,
                                disputed INTEGER DEFAULT 0) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_counters
       SET tasks_taken = tasks_taken + taken, tasks_completed = tasks_completed + completed,
           completed_cleaning = completed_cleaning + cleaning, completed_delivery = completed_delivery + delivery,
           completed_moving = completed_moving + moving, completed_early = completed_early + early,
           proofs_accepted = proofs_accepted + accepted, proofs_rejected = proofs_rejected + rejected,
           disputes = user_counters.disputes + disputed
     WHERE user_id = who;
    IF NOT FOUND THEN
        -- The user's first counted event; a concurrent first one makes the INSERT an update.
        INSERT INTO user_counters AS c (user_id, tasks_taken, tasks_completed, completed_cleaning,
                                        completed_delivery, completed_moving, completed_early,
                                        proofs_accepted, proofs_rejected, disputes)
        VALUES (who, taken, completed, cleaning, delivery, moving, early, accepted, rejected, disputed)
        ON CONFLICT (user_id) DO UPDATE
           SET tasks_taken = c.tasks_taken + EXCLUDED.tasks_taken,
               tasks_completed = c.tasks_completed + EXCLUDED.tasks_completed,
               completed_cleaning = c.completed_cleaning + EXCLUDED.completed_cleaning,
               completed_delivery = c.completed_delivery + EXCLUDED.completed_delivery,
               completed_moving = c.completed_moving + EXCLUDED.completed_moving,
               completed_early = c.completed_early + EXCLUDED.completed_early,
               proofs_accepted = c.proofs_accepted + EXCLUDED.proofs_accepted,
               proofs_rejected = c.proofs_rejected + EXCLUDED.proofs_rejected,
               disputes = c.disputes + EXCLUDED.disputes;
    END IF;
END $$;

-- A task counts for its worker: taken in any state; when COMPLETED, also completed, its badge
-- category and whether it finished before 09:00 UTC. The row before the change is taken away
-- and the row after added, in one call when the worker stays the same.
CREATE FUNCTION count_worker_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_done INTEGER := 0; was_cat TEXT := ''; was_early INTEGER := 0;
    now_done INTEGER := 0; now_cat TEXT := ''; now_early INTEGER := 0;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.state = 'COMPLETED' THEN
        was_done := 1;
        was_cat := coalesce(lower(OLD.category), '');
        was_early := coalesce((OLD.completed_at AT TIME ZONE 'UTC')::time < time '09:00', false)::int;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state = 'COMPLETED' THEN
        now_done := 1;
        now_cat := coalesce(lower(NEW.category), '');
        now_early := coalesce((NEW.completed_at AT TIME ZONE 'UTC')::time < time '09:00', false)::int;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.worker_id IS NOT DISTINCT FROM NEW.worker_id THEN
        IF NEW.worker_id IS NOT NULL THEN
            PERFORM add_user_counts(NEW.worker_id, completed => now_done - was_done,
                cleaning => now_done * (now_cat = 'cleaning')::int - was_done * (was_cat = 'cleaning')::int,
                delivery => now_done * (now_cat = 'delivery')::int - was_done * (was_cat = 'delivery')::int,
                moving => now_done * (now_cat = 'moving')::int - was_done * (was_cat = 'moving')::int,
                early => now_early - was_early);
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.worker_id IS NOT NULL THEN
        PERFORM add_user_counts(OLD.worker_id, taken => -1, completed => -was_done,
            cleaning => -was_done * (was_cat = 'cleaning')::int, delivery => -was_done * (was_cat = 'delivery')::int,
            moving => -was_done * (was_cat = 'moving')::int, early => -was_early);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.worker_id IS NOT NULL THEN
        PERFORM add_user_counts(NEW.worker_id, taken => 1, completed => now_done,
            cleaning => now_done * (now_cat = 'cleaning')::int, delivery => now_done * (now_cat = 'delivery')::int,
            moving => now_done * (now_cat = 'moving')::int, early => now_early);
    END IF;
    RETURN NULL;
END $$;

-- A reviewed proof counts for its submitter: ACCEPTED or REJECTED.
CREATE FUNCTION count_submitter_proof() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.submitter_id = NEW.submitter_id THEN
        PERFORM add_user_counts(NEW.submitter_id,
            accepted => (NEW.state = 'ACCEPTED')::int - (OLD.state = 'ACCEPTED')::int,
            rejected => (NEW.state = 'REJECTED')::int - (OLD.state = 'REJECTED')::int);
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM add_user_counts(OLD.submitter_id, accepted => -(OLD.state = 'ACCEPTED')::int,
                                rejected => -(OLD.state = 'REJECTED')::int);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM add_user_counts(NEW.submitter_id, accepted => (NEW.state = 'ACCEPTED')::int,
                                rejected => (NEW.state = 'REJECTED')::int);
    END IF;
    RETURN NULL;
END $$;

-- A dispute counts for the task's worker.
CREATE FUNCTION count_worker_dispute() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM add_user_counts(OLD.worker_id, disputed => -1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM add_user_counts(NEW.worker_id, disputed => 1);
    END IF;
    RETURN NULL;
END $$;

-- Only the counting triggers write user_counters (HX103). They run one trigger level down from
-- the statement that changed a task, proof or dispute (a cascade from a deleted user likewise
-- runs inside the foreign key's trigger); a statement naming user_counters, or calling
-- add_user_counts, reaches this guard at the top level.
CREATE FUNCTION guard_user_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION '% on user_counters: the counters are kept by triggers only', TG_OP
            USING ERRCODE = 'HX103';
    END IF;
    RETURN NULL;
END $$;

-- Per statement, so a write that matches no row is refused too.
CREATE TRIGGER user_counters_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_counters
    FOR EACH STATEMENT EXECUTE FUNCTION guard_user_counters();

-- Each fires only when what it counts may have changed.
CREATE TRIGGER tasks_count_worker_insert AFTER INSERT ON tasks
    FOR EACH ROW WHEN (NEW.worker_id IS NOT NULL) EXECUTE FUNCTION count_worker_task();
CREATE TRIGGER tasks_count_worker_update AFTER UPDATE OF worker_id, state, category, completed_at ON tasks
    FOR EACH ROW WHEN (OLD.worker_id IS DISTINCT FROM NEW.worker_id
                       OR ((OLD.state = 'COMPLETED' OR NEW.state = 'COMPLETED')
                           AND (OLD.state IS DISTINCT FROM NEW.state
                                OR OLD.category IS DISTINCT FROM NEW.category
                                OR OLD.completed_at IS DISTINCT FROM NEW.completed_at)))
    EXECUTE FUNCTION count_worker_task();
CREATE TRIGGER tasks_count_worker_delete AFTER DELETE ON tasks
    FOR EACH ROW WHEN (OLD.worker_id IS NOT NULL) EXECUTE FUNCTION count_worker_task();

CREATE TRIGGER proofs_count_submitter_insert AFTER INSERT ON proofs
    FOR EACH ROW WHEN (NEW.state IN ('ACCEPTED', 'REJECTED')) EXECUTE FUNCTION count_submitter_proof();
CREATE TRIGGER proofs_count_submitter_update AFTER UPDATE OF state, submitter_id ON proofs
    FOR EACH ROW WHEN ((OLD.state IN ('ACCEPTED', 'REJECTED') OR NEW.state IN ('ACCEPTED', 'REJECTED'))
                       AND (OLD.state IS DISTINCT FROM NEW.state OR OLD.submitter_id IS DISTINCT FROM NEW.submitter_id))
    EXECUTE FUNCTION count_submitter_proof();
CREATE TRIGGER proofs_count_submitter_delete AFTER DELETE ON proofs
    FOR EACH ROW WHEN (OLD.state IN ('ACCEPTED', 'REJECTED')) EXECUTE FUNCTION count_submitter_proof();

CREATE TRIGGER disputes_count_worker AFTER INSERT OR DELETE ON disputes
    FOR EACH ROW EXECUTE FUNCTION count_worker_dispute();
CREATE TRIGGER disputes_count_worker_update AFTER UPDATE OF worker_id ON disputes
    FOR EACH ROW WHEN (OLD.worker_id IS DISTINCT FROM NEW.worker_id) EXECUTE FUNCTION count_worker_dispute();
