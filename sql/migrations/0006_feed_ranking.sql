-- 1.6.0: the feed ranks 100,000 OPEN tasks within its latency budget (issue 13): a maintained
-- per-poster rating total instead of aggregating every rating per request, and a GiST point
-- index (core PostgreSQL, no extension) for the bounding box and nearest-first reads.

CREATE TABLE poster_rating_totals (
    poster_id   UUID PRIMARY KEY REFERENCES users(id),
    ratings     INTEGER NOT NULL
        CONSTRAINT poster_rating_totals_ratings_check CHECK (ratings > 0),
    stars       INTEGER NOT NULL,
    CONSTRAINT poster_rating_totals_stars_check CHECK (stars BETWEEN ratings AND 5 * ratings)
);

CREATE INDEX poster_rating_totals_average_idx ON poster_rating_totals ((stars::float8 / ratings));

-- What workers rated each poster on tasks whose pair of ratings is already complete.
INSERT INTO poster_rating_totals (poster_id, ratings, stars)
SELECT w.ratee_id, count(*), sum(w.stars)
  FROM task_ratings w JOIN tasks t ON t.id = w.task_id
 WHERE w.rater_id = t.worker_id AND w.ratee_id = t.poster_id
   AND EXISTS (SELECT 1 FROM task_ratings p WHERE p.task_id = t.id AND p.rater_id = t.poster_id)
 GROUP BY w.ratee_id;

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

DROP INDEX tasks_open_location_idx;
CREATE INDEX tasks_open_point_idx ON tasks USING gist (point(location_lng::float8, location_lat::float8))
    INCLUDE (id, poster_id, price, category, deadline, created_at, risk_level, required_trust_tier, state,
             location_lat, location_lng)
    WHERE state = 'OPEN' AND location_lat IS NOT NULL AND location_lng IS NOT NULL;
