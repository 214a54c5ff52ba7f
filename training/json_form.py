"""The JSON form of what training writes: frozen dataclasses as JSON-safe dicts, instants as text.

`to_json(record)` walks a dataclass (and the dicts, tuples and lists in it) in field order and
answers with plain types only: numpy scalars become Python numbers and a non-finite float
becomes `null`, so `json.dumps(..., allow_nan=False)` always succeeds. Two kinds of field
metadata shape the object without a second schema:

- `INLINE`: the field's own object (a dataclass or a dict) is merged into its parent's (a
  `None` adds nothing), so a report can reuse one dataclass for figures that appear flat beside
  other keys;
- `OMIT_IF_NONE`: the key is left out while the value is `None`.

`iso_utc(seconds)` is the one ISO 8601 form of an instant in training's output: UTC, written
with a "Z" ("2025-01-20T00:00:00Z"); `datetime.fromisoformat` reads it back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]

_HOW = "json"
_INLINE = "inline"
_OMIT_IF_NONE = "omit_if_none"
# Field metadata: `field(metadata=INLINE)`, `field(default=None, metadata=OMIT_IF_NONE)`.
INLINE: Mapping[str, str] = MappingProxyType({_HOW: _INLINE})
OMIT_IF_NONE: Mapping[str, str] = MappingProxyType({_HOW: _OMIT_IF_NONE})


def to_json(value: object) -> JsonValue:
    """`value` (a dataclass instance, dict, tuple, list or scalar) in JSON-safe types.

    Raises TypeError for anything JSON cannot hold (a class, an array, a set)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return record_json(value)
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    raise TypeError(f"{type(value).__name__} has no JSON form")


def record_json(record: DataclassInstance) -> JsonObject:
    """One dataclass instance as a JSON object, its fields in order (see the markers above)."""
    answer: JsonObject = {}
    for spec in dataclasses.fields(record):
        value = getattr(record, spec.name)
        how = spec.metadata.get(_HOW)
        if value is None and how in (_INLINE, _OMIT_IF_NONE):
            continue
        if how == _INLINE:
            nested = to_json(value)
            if not isinstance(nested, dict):
                raise TypeError(f"{spec.name} is inlined but has no JSON object form")
            answer.update(nested)
        else:
            answer[spec.name] = to_json(value)
    return answer


class JsonRecord:
    """A mixin for report dataclasses: `to_json()` gives the JSON-safe dict of the record."""

    __slots__ = ()

    def to_json(self) -> JsonObject:
        """The record as JSON-safe types (see `record_json`)."""
        answer = to_json(self)
        if not isinstance(answer, dict):
            raise TypeError(f"{type(self).__name__} is not a dataclass")
        return answer
