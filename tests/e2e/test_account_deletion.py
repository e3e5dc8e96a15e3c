"""GDPR over real HTTP: a worker who was paid exports everything we hold, deletes the account,
and once the grace period is over (the closing time is moved back by the operator's SQL, as
if a week had passed) the anonymisation job leaves no personal field of theirs anywhere in the
database, while every cent and every XP point stays where it was."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from psycopg import sql

from tests.e2e.system import World, data, error

TEXT_TYPES = ("character varying", "text", "jsonb", "ARRAY", "character")


def _places_holding(world: World, needle: str) -> list[str]:
    """Every public table.column whose text holds `needle` (case-insensitive)."""
    columns = world.sql("""SELECT c.table_name, c.column_name FROM information_schema.columns c
                             JOIN information_schema.tables t ON t.table_name = c.table_name
                              AND t.table_schema = c.table_schema AND t.table_type = 'BASE TABLE'
                            WHERE c.table_schema = 'public' AND c.data_type = ANY(%s)""", (list(TEXT_TYPES),))
    found = []
    for col in columns:
        query = sql.SQL("SELECT count(*) AS n FROM {} WHERE {}::text ILIKE %s").format(
            sql.Identifier(col["table_name"]), sql.Identifier(col["column_name"]))
        if world.one(query.as_string(world.conn), (f"%{needle}%",))["n"]:
            found.append(f"{col['table_name']}.{col['column_name']}")
    return found


def _money_and_xp(world: World, user_id: str) -> dict[str, object]:
    return {
        "escrows": world.sql("SELECT e.id, e.state, e.amount, e.release_amount, e.refund_amount FROM escrows e "
                             "JOIN tasks t ON t.id = e.task_id WHERE t.worker_id = %s ORDER BY e.id", (user_id,)),
        "outbox": world.sql("SELECT id, kind, amount, status FROM money_outbox WHERE recipient_id = %s ORDER BY id",
                            (user_id,)),
        "xp": world.sql("SELECT * FROM xp_ledger WHERE user_id = %s ORDER BY id", (user_id,)),
        "totals": world.one("SELECT xp_total, current_level, trust_tier FROM users WHERE id = %s", (user_id,)),
    }


def test_export_then_delete_leaves_no_personal_field_and_keeps_money_and_xp(world: World) -> None:
    tag = uuid.uuid4().hex[:10]
    poster = world.register("poster")
    phone = f"+1 555 {str(uuid.uuid4().int)[:7]}"
    leaver = world.register("leaver", full_name=f"Lee Leaver {tag}", phone=phone)
    account = f"acct_{tag}leaver"
    data(leaver.put("/api/users/me/payout-account", json={"stripe_connect_id": account}))
    task = world.post_task(poster, price=6000)
    world.fund(task)
    world.accept(task, leaver)
    data(leaver.post(f"/api/tasks/{task['id']}/messages",
                     json={"message_type": "TEXT", "content": f"On my way, ring {tag} at the gate"}), 201)
    error(leaver.request("DELETE", "/api/users/me"), 409, "CONFLICT")  # a task of theirs is live
    proof = world.submit_proof(task, leaver, description=f"Done by Lee {tag}")
    data(poster.post(f"/api/proofs/{proof['id']}/accept"))
    world.check_money()

    exported = leaver.get("/api/users/me/export")
    assert exported.status_code == 200
    doc = json.loads(exported.content)
    assert doc["profile"]["email"] == f"{leaver.uid}@example.test" and doc["profile"]["phone"]
    assert [t["id"] for t in doc["tasks"]] == [task["id"]]
    assert [x["effective_xp"] for x in doc["xp_ledger"]] == [60]
    assert [p["amount"] for p in doc["payouts"]] == [5100]
    assert any(tag in (m["content"] or "") for m in doc["messages"])

    personal = [f"{leaver.uid}@example.test", leaver.uid, f"Lee Leaver {tag}", phone,
                account, f"ring {tag}", f"Done by Lee {tag}"]
    assert all(_places_holding(world, p) for p in personal)  # the sweep finds them while they exist
    before = _money_and_xp(world, leaver.id)

    closed = data(leaver.request("DELETE", "/api/users/me"))
    assert closed["account_status"] == "CLOSED"
    error(leaver.get("/api/users/me"), 403, "ACCOUNT_CLOSED")
    assert world.run_job("anonymize-accounts")["anonymized"] == 0  # the grace period runs

    world.sql("UPDATE users SET closed_at = %s WHERE id = %s", (datetime.now(UTC) - timedelta(days=8), leaver.id))
    assert world.run_job("anonymize-accounts")["anonymized"] == 1

    assert {p: _places_holding(world, p) for p in personal} == {p: [] for p in personal}
    assert _money_and_xp(world, leaver.id) == before
    error(leaver.get("/api/users/me"), 404, "HX504")
    error(leaver.post("/api/users/me/resume"), 404, "HX504")
    assert data(poster.get(f"/api/tasks/{task['id']}"))["state"] == "COMPLETED"
