"""Avro schemas from schemas/: loaded and parsed once, then used to validate raw
payloads and to encode canonical records.

The .avsc files live at the top of the repository (schemas/), the one copy that the
service, the tests and downstream readers share. A deployment that installs the package
elsewhere points LOYALTY_SCHEMA_DIR at its copy (the container image does).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from consumer.errors import ConfigError, SchemaViolation

CANONICAL_SCHEMA_FILE = "loyalty_redemption.avsc"

# Avro single-object encoding: marker C3 01, then the schema's CRC-64-AVRO fingerprint
# in little-endian order, then the binary body (Avro specification, "Single-object
# encoding"). fastavro's fingerprint hex is already in that byte order.
SINGLE_OBJECT_MARKER = b"\xc3\x01"


def schema_dir() -> Path:
    configured = os.environ.get("LOYALTY_SCHEMA_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / "schemas"


def schema_text(filename: str) -> str:
    path = schema_dir() / filename
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"schema file {path} not found; set LOYALTY_SCHEMA_DIR to the schemas/ directory"
        ) from None


@cache
def load_schema(filename: str) -> dict[str, Any]:
    """The parsed schema; parsed once per process, whatever the number of callers."""
    return parse_schema(orjson.loads(schema_text(filename)))


class RawSchema:
    """Validates a provider's raw payload and names the failing field by its path.

    fastavro reports a failing field as '<full name of its record type>.<field>'. The
    walk below maps each named record type to where it sits in the payload once, so a
    violation can say 'data.points_redeemed' rather than 'loyalty.raw...Data.points_redeemed'.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._schema = load_schema(filename)
        self._path_of_type = dict(_record_paths(self._schema, ""))

    def validate(self, payload: Mapping[str, Any]) -> None:
        # The boolean check first: with raise_errors=True fastavro builds (and encodes
        # to JSON) an exception for every union branch it tries, even on valid data,
        # which made validation most of a record's cost. Errors are asked for only once
        # the payload is known to be invalid.
        if validate(payload, self._schema, raise_errors=False):
            return
        try:
            validate(payload, self._schema, raise_errors=True)
            return  # unreachable: the boolean check said invalid
        except ValidationError as exc:
            # fastavro reads a '-type' key as a record-type tag. For us it is just an
            # unknown field, which must never reject: drop such keys and look again.
            # Only failures pay for the walk.
            cleaned = _without_type_tags(payload)
            if cleaned != payload:
                self.validate(cleaned)
                return
            raise self._violation(exc) from exc

    def _violation(self, exc: ValidationError) -> SchemaViolation:
        """One message for the deepest failing field, naming every type its union allows.
        fastavro lists each union branch it tried, and an optional record fails both at
        its own level ('reward: expected null') and at the field inside it."""
        located = [(self._path(error.field), error) for error in exc.errors]
        path = max((path for path, _ in located), key=lambda p: (p.count("."), len(p)))
        errors = [error for error_path, error in located if error_path == path]
        datum = errors[0].datum
        if datum is None:
            message = f"{path}: required field is missing or null"
        else:
            expected = " or ".join(dict.fromkeys(_describe(e.schema) for e in errors))
            message = f"{path}: expected {expected}, got {json_type(datum)}"
        return SchemaViolation(message, field=path or None)

    def _path(self, fastavro_field: str | None) -> str:
        type_name, _, field_name = (fastavro_field or "").rpartition(".")
        parent = self._path_of_type.get(type_name, "")
        return f"{parent}.{field_name}" if parent else field_name


def _without_type_tags(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_type_tags(v) for k, v in value.items() if k != "-type"}
    if isinstance(value, list):
        return [_without_type_tags(item) for item in value]
    return value


def _record_paths(schema: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(schema, list):
        for branch in schema:
            yield from _record_paths(branch, path)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            yield schema["name"], path
            for field in schema["fields"]:
                child = f"{path}.{field['name']}" if path else field["name"]
                yield from _record_paths(field["type"], child)
        elif kind == "array":
            yield from _record_paths(schema["items"], f"{path}[]")
        elif kind == "map":
            yield from _record_paths(schema["values"], f"{path}{{}}")


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_describe(branch) for branch in schema)
    if isinstance(schema, dict):
        return "object" if schema.get("type") == "record" else str(schema.get("type"))
    return str(schema)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type. Messages name the type, never the value:
    they end up in DLQ headers and logs."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class SingleObjectCodec:
    """Avro single-object encoding of one schema, for when no registry is configured."""

    def __init__(self, filename: str = CANONICAL_SCHEMA_FILE) -> None:
        self.schema = load_schema(filename)
        self.fingerprint = bytes.fromhex(
            fingerprint(to_parsing_canonical_form(self.schema), "CRC-64-AVRO")
        )
        self._header = SINGLE_OBJECT_MARKER + self.fingerprint

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        schemaless_writer(buffer, self.schema, record)
        return buffer.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        header_length = len(self._header)
        if data[:2] != SINGLE_OBJECT_MARKER:
            raise ValueError("not Avro single-object encoded (no C3 01 marker)")
        if data[2:header_length] != self.fingerprint:
            raise ValueError(
                f"schema fingerprint {data[2:header_length].hex()} is not {self.fingerprint.hex()}"
            )
        return schemaless_reader(io.BytesIO(data[header_length:]), self.schema, None)
