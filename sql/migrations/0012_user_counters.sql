-- 1.12.0: user_counters, what trust tiers and badges count of a user's history, kept by triggers
-- on tasks, proofs and disputes (issue 11): a completion reads one row instead of counting the
-- worker's whole history. The counters are filled from the history before the triggers that keep
-- them (and the guard that refuses any other write) exist. Two indexes let the completion's
-- perfect-week test and the rejection penalty read one user's rows only; notifications_created_idx
-- becomes a BRIN index, so the duplicate and grouping checks of a notification can no longer be
-- planned on it (a B-tree there drew them into reading every user's last five minutes).

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

INSERT INTO user_counters (user_id, tasks_taken, tasks_completed, completed_cleaning, completed_delivery,
                           completed_moving, completed_early, proofs_accepted, proofs_rejected, disputes)
SELECT u.id, coalesce(t.taken, 0), coalesce(t.completed, 0), coalesce(t.cleaning, 0), coalesce(t.delivery, 0),
       coalesce(t.moving, 0), coalesce(t.early, 0), coalesce(p.accepted, 0), coalesce(p.rejected, 0),
       coalesce(d.disputes, 0)
  FROM users u
  LEFT JOIN (SELECT worker_id, count(*) AS taken,
                    count(*) FILTER (WHERE state = 'COMPLETED') AS completed,
                    count(*) FILTER (WHERE state = 'COMPLETED' AND lower(category) = 'cleaning') AS cleaning,
                    count(*) FILTER (WHERE state = 'COMPLETED' AND lower(category) = 'delivery') AS delivery,
                    count(*) FILTER (WHERE state = 'COMPLETED' AND lower(category) = 'moving') AS moving,
                    count(*) FILTER (WHERE state = 'COMPLETED'
                                       AND (completed_at AT TIME ZONE 'UTC')::time < time '09:00') AS early
               FROM tasks WHERE worker_id IS NOT NULL GROUP BY worker_id) t ON t.worker_id = u.id
  LEFT JOIN (SELECT submitter_id, count(*) FILTER (WHERE state = 'ACCEPTED') AS accepted,
                    count(*) FILTER (WHERE state = 'REJECTED') AS rejected
               FROM proofs WHERE state IN ('ACCEPTED', 'REJECTED') GROUP BY submitter_id) p
         ON p.submitter_id = u.id
  LEFT JOIN (SELECT worker_id, count(*) AS disputes FROM disputes GROUP BY worker_id) d ON d.worker_id = u.id
 WHERE t.worker_id IS NOT NULL OR p.submitter_id IS NOT NULL OR d.worker_id IS NOT NULL;

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

-- The completion's perfect-week test reads one worker's completions of one week (1.12.0).
CREATE INDEX tasks_worker_completed_idx ON tasks (worker_id, completed_at) WHERE state = 'COMPLETED';
-- One user's rejected proofs: the repeated-rejection penalty and perfect-week (1.12.0).
CREATE INDEX proofs_submitter_rejected_idx ON proofs (submitter_id, reviewed_at) WHERE state = 'REJECTED';

-- NOTIF-5 purges by age across all users: rows arrive in time order, block ranges find the old ones.
DROP INDEX notifications_created_idx;
CREATE INDEX notifications_created_idx ON notifications USING brin (created_at);
