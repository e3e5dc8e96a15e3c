"""The marshmallow fields every API schema uses (import them as ``from hustlexp.api.base import fields``).

Identical to marshmallow's except ``String``: text that PostgreSQL cannot store or UTF-8 cannot
encode is refused here, at the edge, as a 400 VALIDATION_ERROR naming the field, instead of
failing deep in a query as a 500. That means a NUL character (PostgreSQL text cannot hold one)
and a lone surrogate such as JSON's ``"\\ud800"`` (not encodable as UTF-8). The OpenAPI document
states the NUL rule as the field's ``pattern``, so generated clients and contract tests know it."""

from __future__ import annotations

from typing import Any

from marshmallow import fields as _ma
from marshmallow import validate
from marshmallow.fields import (
    UUID,
    AwareDateTime,
    Boolean,
    DateTime,
    Decimal,
    Dict,
    Field,
    Float,
    Integer,
    List,
    Nested,
    Raw,
)

__all__ = ["NOT_BLANK", "NO_NUL", "UUID", "AwareDateTime", "Boolean", "DateTime", "Decimal", "Dict", "Field", "Float",
           "Integer", "List", "Nested", "Raw", "Str", "String"]

# JSON Schema (ECMA) and Python read \u0000 alike. A field with its own Regexp validator documents
# that one instead (OpenAPI allows one pattern per field): such patterns must exclude NUL themselves.
NO_NUL = r"^[^\u0000]*$"
# For text the services refuse when it is only whitespace (str.strip() is empty): documented and
# checked here too. Python's \s in a str pattern is str.isspace(), the same set strip() removes.
NOT_BLANK = validate.Regexp(r"^\s*[^\s\u0000][^\u0000]*$", error="Must not be blank.")


class String(_ma.String):
    default_error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "nul": "Must not contain a NUL character.",
        "surrogate": "Must be valid Unicode text (no lone surrogates).",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        has_pattern = any(hasattr(v, "regex") for v in self.validators) or "pattern" in self.metadata
        if not has_pattern:
            self.metadata = {**self.metadata, "pattern": NO_NUL}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("nul")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("surrogate") from None
        return text


Str = String
