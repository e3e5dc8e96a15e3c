"""The yardstick for bench_throughput: a bare Flask + psycopg app with one state transition per
request (lock a row, check it, update it, insert a ledger row; one transaction, 4 statements).
Served by gunicorn with the same settings as `hustlexp serve`; every HustleXP endpoint is
reported as a fraction of what this does on the same machine in the same run.

    BARE_DATABASE_URL=... gunicorn benchmarks.bare_app:app"""

from __future__ import annotations

import os
import random
from typing import Any

from flask import Flask, jsonify
from psycopg_pool import ConnectionPool

ITEMS = 1000
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS bare_items (id int PRIMARY KEY, state text NOT NULL, moves int NOT NULL);
CREATE TABLE IF NOT EXISTS bare_ledger (id bigserial PRIMARY KEY, item_id int NOT NULL, moves int NOT NULL,
                                        created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bare_items SELECT g, 'OPEN', 0 FROM generate_series(1, {ITEMS}) g ON CONFLICT DO NOTHING;
"""

app = Flask("bare")
_pool: ConnectionPool[Any] | None = None


def pool() -> ConnectionPool[Any]:
    global _pool
    if _pool is None:  # built after gunicorn forks, never shared across processes
        _pool = ConnectionPool(os.environ["BARE_DATABASE_URL"], min_size=1,
                               max_size=int(os.environ.get("HUSTLEXP_DB_POOL_MAX") or 10), open=True)
    return _pool


@app.post("/transition")
def transition() -> Any:
    item = random.randint(1, ITEMS)
    with pool().connection() as conn, conn.transaction():
        row = conn.execute("SELECT state, moves FROM bare_items WHERE id = %s FOR UPDATE", (item,)).fetchone()
        if row is None or row[0] != "OPEN":
            return jsonify({"success": False}), 409
        conn.execute("UPDATE bare_items SET moves = moves + 1 WHERE id = %s", (item,))
        conn.execute("INSERT INTO bare_ledger (item_id, moves) VALUES (%s, %s)", (item, row[1] + 1))
    return jsonify({"success": True, "data": {"id": item, "moves": row[1] + 1}})


@app.get("/health")
def health() -> Any:
    return jsonify({"status": "ok", "pid": os.getpid()})  # the bench waits until every worker answered
