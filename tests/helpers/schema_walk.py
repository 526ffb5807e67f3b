"""Facts read off the raw schemas themselves, so tests that need them follow the
registry instead of listing each provider's fields by hand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from consumer.providers import PROVIDERS
from consumer.schemas import load_schema


def field_names(schema: Any) -> Iterator[str]:
    """Every field name of every record type in a schema, at any depth."""
    if isinstance(schema, list):
        for branch in schema:
            yield from field_names(branch)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            for field in schema["fields"]:
                yield field["name"]
                yield from field_names(field["type"])
        elif kind == "array":
            yield from field_names(schema["items"])
        elif kind == "map":
            yield from field_names(schema["values"])


def raw_schema_keys() -> frozenset[str]:
    """Every field name any registered provider's raw schema lists."""
    return frozenset(
        name
        for provider in PROVIDERS
        for name in field_names(load_schema(provider.raw_schema_file))
    )
