-- 1.3.0: indexes that keep a request's cost flat however much history the database holds (issue 11).

-- The board's keyset pages (GET /api/tasks, newest first, id breaking ties) are read in index
-- order and stop at the page size.
CREATE INDEX tasks_created_id_idx ON tasks (created_at, id);

-- notify()'s duplicate and grouping checks read one recipient's latest notifications of one
-- category and task; without this index they scanned everything the recipient got in the last
-- five minutes, so a busy poster's requests slowed down as notifications piled up.
CREATE INDEX notifications_recent_idx ON notifications (user_id, category, task_id, created_at DESC);
