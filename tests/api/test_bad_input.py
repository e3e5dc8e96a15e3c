"""Bad input is a 400 VALIDATION_ERROR naming the field, never a 500, never a row: text that
PostgreSQL or UTF-8 cannot hold, and JSON nested deeper than the parser's stack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import data, error
from tests.api.world import task_body

# Raw JSON text: json.dumps would escape a lone surrogate the same way, but spelling the
# escape out keeps the test honest about what goes over the wire.
NUL = "\\u0000"
SURROGATE = "\\ud800"


def post_raw(client: Any, method: str, path: str, body: str, headers: dict[str, str]) -> Any:
    return getattr(client, method)(path, data=body.encode(), headers={**headers, "Content-Type": "application/json"})


def count(conn: Any, table: str) -> int:
    return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]  # table names from this file


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize("field", ["title", "description", "location", "requirements"])
def test_task_text_with_nul_or_lone_surrogate_is_400_naming_the_field(world: Any, conn: Any, field: str,
                                                                        bad: str) -> None:
    body = json.dumps(task_body(requirements="none")).replace(f'"{field}": "', f'"{field}": "x{bad}', 1)
    response = post_raw(world.client, "post", "/api/tasks", body, world.ph)
    assert response.status_code == 400, response.get_json()
    assert error(response)["code"] == "VALIDATION_ERROR"
    assert field in error(response)["details"]
    assert count(conn, "tasks") == 0


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_user_text_with_nul_or_lone_surrogate_is_400(client: Any, auth: Any, register: Any, conn: Any,
                                                      bad: str) -> None:
    headers = auth("uid-nul")
    response = post_raw(client, "post", "/api/users", f'{{"full_name": "Pat{bad}"}}', headers)
    assert response.status_code == 400 and "full_name" in error(response)["details"]
    assert count(conn, "users") == 0
    _, headers = register(client, "uid-ok")
    for field in ("full_name", "avatar_url"):
        value = f"http://x/{bad}" if field == "avatar_url" else f"Pat{bad}"
        patched = post_raw(client, "patch", "/api/users/me", f'{{"{field}": "{value}"}}', headers)
        assert patched.status_code == 400 and field in error(patched)["details"], field
    assert data(client.get("/api/users/me", headers=headers))["full_name"] == "Test uid-ok"


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_cancel_dispute_and_message_text_with_bad_characters_is_400(world: Any, conn: Any, bad: str) -> None:
    task, _proof = world.submitted()
    tid = task["id"]
    cancel = post_raw(world.client, "post", f"/api/tasks/{tid}/cancel", f'{{"reason": "no{bad}"}}', world.ph)
    assert cancel.status_code == 400 and "reason" in error(cancel)["details"]
    dispute = post_raw(world.client, "post", f"/api/tasks/{tid}/dispute",
                       f'{{"reason": "quality_issue", "description": "bad{bad}"}}', world.ph)
    assert dispute.status_code == 400 and "description" in error(dispute)["details"]
    message = post_raw(world.client, "post", f"/api/tasks/{tid}/messages",
                       f'{{"message_type": "TEXT", "content": "hi{bad}"}}', world.wh)
    assert message.status_code == 400 and "content" in error(message)["details"]
    assert count(conn, "disputes") == 0 and count(conn, "task_messages") == 0
    assert conn.execute("SELECT state FROM tasks WHERE id = %s", (tid,)).fetchone()["state"] == "PROOF_SUBMITTED"


def test_every_documented_text_field_states_the_nul_rule(client: Any) -> None:
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert schemas["TaskCreate"]["properties"]["requirements"]["pattern"] == "^[^\\u0000]*$"
    # A field with its own pattern keeps it, and that pattern must exclude NUL too.
    for schema, field in (("ProfilePatch", "full_name"), ("TaskCreate", "title")):
        assert "\\u0000" in schemas[schema]["properties"][field]["pattern"]


@pytest.mark.parametrize("path", ["/api/tasks", "/api/users"])
def test_json_nested_a_thousand_deep_is_400(client: Any, register: Any, path: str) -> None:
    _, headers = register(client)
    body = "[" * 1000 + "]" * 1000
    response = post_raw(client, "post", path, body, headers)
    assert response.status_code == 400
    assert error(response)["code"] == "VALIDATION_ERROR"


def test_documented_rules_match_what_the_server_checks(client: Any, register: Any) -> None:
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    zones = schemas["QuietHoursPatch"]["properties"]["timezone"]["enum"]
    assert "America/New_York" in zones and "Mars/Olympus_Mons" not in zones
    assert "future" in schemas["TaskCreate"]["properties"]["deadline"]["description"]
    assert {"properties": {"price": {"minimum": 1500}}} in schemas["TaskCreate"]["anyOf"]
    _, headers = register(client)
    refused = client.patch("/api/notifications/preferences", headers=headers,
                           json={"quiet_hours": {"timezone": "Mars/Olympus_Mons"}})
    assert refused.status_code == 400 and "quiet_hours" in error(refused)["details"]
    accepted = client.patch("/api/notifications/preferences", headers=headers,
                            json={"quiet_hours": {"timezone": "America/New_York"}})
    assert accepted.status_code == 200
