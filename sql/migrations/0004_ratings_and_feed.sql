-- 1.4.0: two-way ratings after completion (RATE-1..8, HX807-HX812) and the feed's indexes.

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

-- RATE-4: a rating never changes and is never removed (HX809).
CREATE TRIGGER task_ratings_no_update BEFORE UPDATE ON task_ratings
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX809');
CREATE TRIGGER task_ratings_no_delete BEFORE DELETE ON task_ratings
    FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change('HX809');
CREATE TRIGGER task_ratings_no_truncate BEFORE TRUNCATE ON task_ratings
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change('HX809');

-- The feed (1.4.0): full-text search over what a worker reads, and the bounding box of a
-- position; both only over OPEN tasks, the only ones the feed shows.
CREATE INDEX tasks_open_search_idx ON tasks USING gin (to_tsvector('english', title || ' ' || description))
    WHERE state = 'OPEN';
-- It also carries what ranking reads, so scoring a neighbourhood never visits the table.
CREATE INDEX tasks_open_location_idx ON tasks (location_lat, location_lng)
    INCLUDE (id, poster_id, price, category, deadline, created_at, risk_level, required_trust_tier, state)
    WHERE state = 'OPEN' AND location_lat IS NOT NULL;
-- The feed's eligibility joins each candidate to its escrow only to see it FUNDED.
CREATE INDEX escrows_funded_task_idx ON escrows (task_id) WHERE state = 'FUNDED';
