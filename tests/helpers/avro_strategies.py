"""Hypothesis strategies for arbitrary valid values of a parsed Avro schema.

Timestamps are whole milliseconds in UTC, so a value survives an Avro round trip
unchanged and can be compared with what a reader decodes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# Within datetime's range, so a decoded timestamp-millis is a datetime again.
MILLIS = (-62_135_596_800_000, 253_402_300_799_999)


def avro_values(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy:
    named = {} if named is None else named
    if isinstance(schema, list):
        return st.one_of([avro_values(branch, named) for branch in schema])
    if isinstance(schema, str):
        if schema in named:
            return st.deferred(lambda: avro_values(named[schema], named))
        return _primitive(schema)
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-millis" and kind == "long":
        return st.integers(*MILLIS).map(lambda ms: EPOCH + timedelta(milliseconds=ms))
    if kind == "record":
        named[schema["name"]] = schema
        return st.fixed_dictionaries(
            {field["name"]: avro_values(field["type"], named) for field in schema["fields"]}
        )
    if kind == "enum":
        named[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(avro_values(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=5), avro_values(schema["values"], named), max_size=3
        )
    if kind == "fixed":
        named[schema["name"]] = schema
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    return _primitive(kind)


def _primitive(kind: str) -> st.SearchStrategy:
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(*INT32),
        "long": st.integers(*INT64),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=20),
    }[kind]
