-- 1.11.0: the feed's newest and price orders read from an index of OPEN tasks (issue 13), so a
-- page with a position over a dense board, or with no position, stops when it is full.

CREATE INDEX tasks_open_created_idx ON tasks (created_at DESC, id DESC) WHERE state = 'OPEN';
CREATE INDEX tasks_open_price_idx ON tasks (price DESC, id DESC) WHERE state = 'OPEN';
