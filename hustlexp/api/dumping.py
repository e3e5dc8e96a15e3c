"""Schema dumps without marshmallow's per-value machinery (issue 11: dumping a 20-task page was
a fifth of the request's CPU).

``plan(schema)`` turns a schema instance into a list of steps, once; ``dump_with(plan, obj)``
runs it. The result is what ``marshmallow.Schema.dump`` returns, value for value: each step
reads the value the way marshmallow does (a key, else an attribute), skips missing ones, and
writes the plain cases itself (None; a str, int, float or bool for String, Integer, Float and
Boolean; a UUID; a datetime in ISO format; lists and nested schemas of those). Every other
case is handed to the field's own ``_serialize``, and a field or schema that changes how
values are read or written (dump defaults, custom fields, pre/post-dump hooks) is dumped by
marshmallow altogether. tests/api/test_dumping.py compares the two on every kind of value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from marshmallow import fields as mf
from marshmallow.utils import get_value, missing

# (value, attribute name, parent object) -> dumped value; value is never missing here.
Convert = Callable[[Any, str, Any], Any]
# (data key, attribute name, source key, convert or None to let the field serialize itself, field)
Step = tuple[str, str, str, Convert | None, mf.Field]

_ISO = (None, "iso", "iso8601")


def _same(field: mf.Field, base: type[mf.Field], *methods: str) -> bool:
    """The field's class writes values exactly as `base` does."""
    return all(getattr(type(field), m) is getattr(base, m) for m in methods)


def _typed(exact: type, field: mf.Field) -> Convert:
    """Values of exactly `exact` pass as they are (what the field would return); others go to it."""
    slow = field._serialize

    def convert(value: Any, attr: str, obj: Any) -> Any:
        if value is None or type(value) is exact:
            return value
        return slow(value, attr, obj)

    return convert


def _uuid(value: Any, attr: str, obj: Any) -> Any:
    return None if value is None else str(value)


def _datetime(field: mf.Field) -> Convert:
    slow = field._serialize

    def convert(value: Any, attr: str, obj: Any) -> Any:
        if value is None:
            return None
        if type(value) is dt.datetime:
            return value.isoformat()
        return slow(value, attr, obj)

    return convert


def _list(inner: Convert) -> Convert:
    def convert(value: Any, attr: str, obj: Any) -> Any:
        if value is None:
            return None
        return [inner(each, attr, obj) for each in value]

    return convert


def _converter(field: mf.Field) -> Convert:
    """How to write one present value of `field`: fast for the plain field types, else the
    field's own _serialize."""
    if _same(field, mf.String, "_serialize"):
        return _typed(str, field)
    if isinstance(field, mf.Integer) and not field.as_string and _same(field, mf.Integer, "_serialize", "_format_num"):
        return _typed(int, field)
    if isinstance(field, mf.Float) and not field.as_string and _same(field, mf.Float, "_serialize", "_format_num"):
        return _typed(float, field)
    if _same(field, mf.Boolean, "_serialize"):
        return _typed(bool, field)
    if _same(field, mf.UUID, "_serialize"):
        return _uuid
    if isinstance(field, mf.DateTime) and field.format in _ISO and _same(field, mf.DateTime, "_serialize"):
        return _datetime(field)
    if type(field) is mf.List:
        return _list(_converter(field.inner))
    return field._serialize  # Nested among them: its schema's dump is planned in turn


def plan(schema: ma.Schema) -> list[Step] | None:
    """The steps dumping one object with `schema`, or None when marshmallow must do it."""
    if schema._hooks[ma.decorators.PRE_DUMP] or schema._hooks[ma.decorators.POST_DUMP]:
        return None
    if type(schema).get_attribute is not ma.Schema.get_attribute or schema.dict_class is not dict:
        return None
    steps: list[Step] = []
    for name, field in schema.dump_fields.items():
        key = field.data_key if field.data_key is not None else name
        source = field.attribute if field.attribute is not None else name
        plain = (field._CHECK_ATTRIBUTE and field.dump_default is missing and "." not in source
                 and _same(field, mf.Field, "serialize", "get_value"))
        steps.append((key, name, source, _converter(field) if plain else None, field))
    return steps


def dump_with(steps: list[Step], obj: Any, accessor: Callable[[Any, str, Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keyed = type(obj) is dict
    for key, name, source, convert, field in steps:
        if convert is None:
            value = field.serialize(name, obj, accessor=accessor)
            if value is not missing:
                out[key] = value
            continue
        if keyed:
            # marshmallow reads obj[key], falling back to an attribute of that name
            value = obj[source] if source in obj else getattr(obj, source, missing)
        else:
            value = get_value(obj, source, missing)
        if value is not missing:
            out[key] = convert(value, name, obj)
    return out

