"""Planned dumps (hustlexp.api.dumping, used by every hustlexp.api.base.Schema) return what
marshmallow's own dump returns, types included, for every kind of value and field; the API
tests check the same on every answer (tests/api/conftest.py dumps_match_marshmallow)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import marshmallow as ma
import pytest

from hustlexp.api import dumping
from hustlexp.api.base import Schema, fields
from tests.api.conftest import strictly


class Colour(str, enum.Enum):  # noqa: UP042 (deliberately: str() of it is "Colour.RED", which String writes)
    RED = "red"


class Tier(enum.StrEnum):
    GOLD = "gold"


class Inner(Schema):
    id = fields.UUID(required=True)
    name = fields.String(allow_none=True)


class Outer(Schema):
    id = fields.UUID()
    text = fields.String(allow_none=True)
    count = fields.Integer(allow_none=True)
    ratio = fields.Float(allow_none=True)
    flag = fields.Boolean(allow_none=True)
    at = fields.DateTime(allow_none=True)
    money = fields.Decimal(allow_none=True)
    extra = fields.Dict(allow_none=True)
    anything = fields.Raw(allow_none=True)
    renamed = fields.String(attribute="source_name", allow_none=True)
    keyed = fields.String(data_key="Keyed-Out", allow_none=True)
    defaulted = fields.String(dump_default="fallback")
    when = fields.DateTime(format="%Y", allow_none=True)
    inner = fields.Nested(Inner, allow_none=True)
    inners = fields.List(fields.Nested(Inner), allow_none=True)
    many_inner = fields.Nested(Inner, many=True, allow_none=True)
    ids = fields.List(fields.UUID(), allow_none=True)
    counts = fields.List(fields.Integer(), allow_none=True)
    items = fields.String(allow_none=True)  # a dict method's name: absent, marshmallow reads the attribute


class Hooked(Schema):
    n = fields.Integer()

    @ma.post_dump
    def doubled(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {"n": data["n"] * 2}


@dataclasses.dataclass
class Row:
    id: Any
    text: Any
    count: Any = 1
    source_name: Any = "from attribute"


NOW = dt.datetime(2026, 11, 30, 19, 30, 1, 123456, tzinfo=dt.UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

VALUES: list[Any] = [
    {"id": ID, "text": "plain", "count": 3, "ratio": 0.5, "flag": True, "at": NOW, "money": decimal.Decimal("1.50"),
     "extra": {"a": 1}, "anything": [1, "x"], "source_name": "renamed", "keyed": "k", "when": NOW,
     "inner": {"id": ID, "name": "n", "ignored": 1}, "inners": [{"id": ID, "name": None}],
     "many_inner": [{"id": str(ID)}], "ids": [ID, str(ID)], "counts": [1, True, 2.7, "4"], "items": "i"},
    {"id": str(ID), "text": Colour.RED, "count": True, "ratio": 2, "flag": 1, "at": NOW.replace(tzinfo=None),
     "keyed": b"bytes", "inner": None, "inners": None, "many_inner": None, "ids": None, "counts": None},
    {"text": Tier.GOLD, "count": 7.9, "ratio": decimal.Decimal("0.25"), "flag": "no", "at": NOW.replace(microsecond=0),
     "counts": (1, 2)},
    {key: None for key in ("id", "text", "count", "ratio", "flag", "at", "money", "extra", "anything",
                           "source_name", "keyed", "when", "inner", "inners", "many_inner", "ids", "counts")},
    {},
    Row(ID, "from a dataclass"),
]


def reference(schema: ma.Schema, obj: Any, many: bool | None = None) -> Any:
    """marshmallow's dump all the way down (nested schemas included)."""
    planned = Schema.dump
    try:
        Schema.dump = ma.Schema.dump  # type: ignore[method-assign]
        return ma.Schema.dump(schema, obj, many=many)
    finally:
        Schema.dump = planned  # type: ignore[method-assign]


@pytest.mark.parametrize("value", VALUES)
def test_planned_dump_equals_marshmallow(value: Any) -> None:
    schema = Outer()
    assert strictly(schema.dump(value)) == strictly(reference(schema, value))


def test_many_and_none() -> None:
    schema = Outer(many=True)
    assert strictly(schema.dump(VALUES)) == strictly(reference(schema, VALUES))
    assert strictly(Outer().dump(VALUES[:2], many=True)) == strictly(reference(Outer(), VALUES[:2], many=True))
    assert Outer().dump(None) == reference(Outer(), None)


def test_only_and_exclude_are_honoured() -> None:
    for schema in (Outer(only=("id", "inner")), Outer(exclude=("text",))):
        assert strictly(schema.dump(VALUES[0])) == strictly(reference(schema, VALUES[0]))


def test_what_the_plan_leaves_to_marshmallow() -> None:
    assert dumping.plan(Hooked()) is None
    assert Hooked().dump({"n": 2}) == {"n": 4}
    steps = {name: convert for _, name, _, convert, _ in dumping.plan(Outer()) or []}
    assert steps["defaulted"] is None  # a dump default: the field serializes itself
    assert steps["text"] is not None and steps["count"] is not None
