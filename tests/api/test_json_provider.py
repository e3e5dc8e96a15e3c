"""The answers' JSON writer (hustlexp.api.json_provider): the same JSON as Flask's default
provider for every kind of value the API can hand it, including those orjson would write
differently or not at all (they take the stdlib path)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest
from flask import Flask

from hustlexp.api.json_provider import OrjsonProvider


@dataclasses.dataclass
class _Row:
    n: int
    label: str


VALUES: list[Any] = [
    {"b": 1, "a": [1, 2.5, -0.1, 1e16, None, True, "x"], "nested": {"z": 1, "a": {"k": "v"}}},
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "amount": decimal.Decimal("12.50")},
    {"at": dt.datetime(2026, 1, 1, 12, 30, tzinfo=dt.UTC), "day": dt.date(2026, 1, 2)},
    {"row": _Row(1, "z")},
    {"huge": 2**70},
    {2: "int keys", 1: "become strings"},
    {"lone": "caf\u00e9 \ud800"},
    "plain", None, [1, [2, {"c": 3}]],
]


def _flask_default(value: Any) -> bytes:
    app = Flask("reference")
    with app.app_context():
        return app.json.response(value).get_data()


@pytest.mark.parametrize("value", VALUES)
def test_same_json_as_flask(value: Any) -> None:
    app = Flask("ours")
    app.json = OrjsonProvider(app)
    with app.app_context():
        response = app.json.response(value)
    body = response.get_data()
    assert response.mimetype == "application/json"
    assert body.endswith(b"\n") and b"\n" not in body[:-1]
    assert json.loads(body) == json.loads(_flask_default(value))
    # Keys sorted, compact: byte for byte Flask's answer whenever the text is ASCII.
    if body.isascii():
        assert body == _flask_default(value)


def test_non_ascii_is_utf8() -> None:
    app = Flask("ours")
    app.json = OrjsonProvider(app)
    with app.app_context():
        body = app.json.response({"name": "Zoë"}).get_data()
    assert body == '{"name":"Zoë"}\n'.encode()


def test_app_answers_with_it(app: Flask) -> None:
    assert isinstance(app.json, OrjsonProvider)
