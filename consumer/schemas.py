"""Avro schemas: loaded and parsed once, then used to validate raw payloads and to
encode and decode canonical records.

The .avsc files ship inside the package (`consumer.schema_files`, the repository's
top-level schemas/ folder) and are read with importlib.resources, so an installed wheel
needs nothing else. A deployment may point LOYALTY_SCHEMA_DIR at a copy of its own;
Settings reads that variable and hands the directory to SchemaLibrary.

Every released version of the canonical schema is archived under schemas/history/ as
loyalty_redemption.v<N>.avsc. Readers resolve a record's writer schema by its
fingerprint among those versions and read it with Avro schema resolution, so a reader
built on any released version decodes what any other one wrote.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from consumer.avro_compiled import UnsupportedSchema, compile_encoder, compile_validator
from consumer.errors import ConfigError, SchemaViolation

SCHEMA_PACKAGE = "consumer.schema_files"
CANONICAL_SCHEMA_FILE = "loyalty_redemption.avsc"
HISTORY_FOLDER = "history"
_ARCHIVED_CANONICAL = re.compile(r"loyalty_redemption\.v(\d+)\.avsc")

# Avro single-object encoding: marker C3 01, then the schema's CRC-64-AVRO fingerprint
# in little-endian order, then the binary body (Avro specification, "Single-object
# encoding"). fastavro's fingerprint hex is already in that byte order.
SINGLE_OBJECT_MARKER = b"\xc3\x01"


class SchemaLibrary:
    """Where the .avsc files are read from: the package's own, or `directory`. Each
    file is parsed once per library, whatever the number of callers."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._parsed: dict[str, dict[str, Any]] = {}

    def _root(self) -> Traversable:
        return self.directory if self.directory else resources.files(SCHEMA_PACKAGE)

    def text(self, filename: str) -> str:
        path = self._root() / filename
        try:
            return path.read_text("utf-8")
        except FileNotFoundError:
            where = f"in LOYALTY_SCHEMA_DIR={self.directory}" if self.directory else "installed"
            raise ConfigError(f"schema file {filename} not found ({where})") from None

    def load(self, filename: str) -> dict[str, Any]:
        if filename not in self._parsed:
            self._parsed[filename] = parse_schema(orjson.loads(self.text(filename)))
        return self._parsed[filename]

    def canonical(self) -> dict[str, Any]:
        return self.load(CANONICAL_SCHEMA_FILE)

    def canonical_history(self) -> dict[int, dict[str, Any]]:
        """Every archived (released) canonical schema, by version number."""
        history = self._root() / HISTORY_FOLDER
        versions = {}
        for item in history.iterdir() if history.is_dir() else ():
            match = _ARCHIVED_CANONICAL.fullmatch(item.name)
            if match:
                versions[int(match[1])] = self.load(f"{HISTORY_FOLDER}/{item.name}")
        return dict(sorted(versions.items()))

    def canonical_writers(self) -> dict[bytes, dict[str, Any]]:
        """Writer schemas a clean-topic record may carry, by fingerprint: every archived
        version and the current one."""
        schemas = [*self.canonical_history().values(), self.canonical()]
        return {schema_fingerprint(schema): schema for schema in schemas}


_PACKAGE_LIBRARY = SchemaLibrary()


def load_schema(filename: str) -> dict[str, Any]:
    """A schema shipped with the package, parsed once per process."""
    return _PACKAGE_LIBRARY.load(filename)


def schema_text(filename: str) -> str:
    return _PACKAGE_LIBRARY.text(filename)


def package_schemas() -> SchemaLibrary:
    """The package's own schemas (shared, so each file is parsed once per process)."""
    return _PACKAGE_LIBRARY


def schema_library(directory: Path | None) -> SchemaLibrary:
    """The schemas in `directory` (Settings.schema_dir), else the package's own."""
    return SchemaLibrary(directory) if directory else _PACKAGE_LIBRARY


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """CRC-64-AVRO of the schema's parsing canonical form, as single-object encoding
    writes it."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


class RawSchema:
    """Validates a provider's raw payload and names the failing field by its path.

    fastavro reports a failing field as '<full name of its record type>.<field>'. The
    walk below maps each named record type to where it sits in the payload once, so a
    violation can say 'data.points_redeemed' rather than 'loyalty.raw...Data.points_redeemed'.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema
        self._path_of_type = dict(_record_paths(self._schema, ""))
        self._is_valid = _validator(self._schema)

    def validate(self, payload: Mapping[str, Any]) -> None:
        # The compiled yes/no check first (consumer/avro_compiled.py): fastavro's
        # generic walk, and its exceptions for every union branch it tries, were most of
        # a record's cost. fastavro explains a failure once the payload is known to be
        # invalid, so messages and field paths stay fastavro's.
        if self._is_valid(payload):
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


def _validator(schema: Any) -> Callable[[Any], bool]:
    try:
        return compile_validator(schema)
    except UnsupportedSchema:
        return lambda payload: validate(payload, schema, raise_errors=False)


def _encoder(schema: Any, prefix: bytes) -> Callable[[Any], bytes]:
    try:
        return compile_encoder(schema, prefix)
    except UnsupportedSchema:

        def encode(record: Any) -> bytes:
            buffer = io.BytesIO()
            buffer.write(prefix)
            schemaless_writer(buffer, schema, record)
            return buffer.getvalue()

        return encode


def _without_type_tags(value: Any) -> Any:
    """A copy of a parsed JSON value without '-type' keys at any depth. Iterative, with
    an explicit stack: the value is attacker-shaped, and recursion would fail on it."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root)]
    while stack:
        source, copy = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(source, dict) and key == "-type":
                continue
            if isinstance(item, dict | list):
                child: Any = {} if isinstance(item, dict) else []
                stack.append((item, child))
                item = child
            if isinstance(copy, dict):
                copy[key] = item
            else:
                copy.append(item)
    return root


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


# Python types of parsed JSON and their JSON names; bool before int, as a bool is an int.
_JSON_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type. Messages name the type, never the value:
    they end up in DLQ headers and logs."""
    for python_type, name in _JSON_TYPE_NAMES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


# Single-object encoding names the writer schema only by fingerprint, so a reader can
# resolve only the versions it ships with: readers must be upgraded before writers. The
# message says so, and names the way out that needs no such order (the registry).
UNKNOWN_WRITER_MESSAGE = (
    "schema fingerprint {fingerprint} is not a known canonical schema (known: {known}): "
    "the record was written with a newer schema than this reader has. In single-object "
    "mode, upgrade readers before writers: upgrade this reader to the package version "
    "that wrote the record (or give it that schema), or read through the schema registry, "
    "where any released reader reads newer records"
)


class SingleObjectCodec:
    """Avro single-object encoding, for when no registry is configured.

    Encodes with `schema` (default: the current canonical schema). Decodes a record
    written with any schema in `writers` (fingerprint -> schema; default: every
    released canonical version and the current one) into `schema`'s shape, with Avro
    schema resolution: fields the reader does not know are skipped, fields the writer
    did not know take their defaults, enum symbols the reader does not know take the
    enum's default.
    """

    def __init__(
        self,
        schema: dict[str, Any] | None = None,
        writers: Mapping[bytes, dict[str, Any]] | None = None,
    ) -> None:
        library = package_schemas()
        self.schema = schema if schema is not None else library.canonical()
        self.fingerprint = schema_fingerprint(self.schema)
        self._header = SINGLE_OBJECT_MARKER + self.fingerprint
        self._writers = dict(writers if writers is not None else library.canonical_writers())
        self._writers[self.fingerprint] = self.schema
        self._encode = _encoder(self.schema, prefix=self._header)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        return self._encode(record)

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[:2] != SINGLE_OBJECT_MARKER:
            raise ValueError("not Avro single-object encoded (no C3 01 marker)")
        written_with = data[2:10]
        writer = self._writers.get(written_with)
        if writer is None:
            known = ", ".join(sorted(fp.hex() for fp in self._writers))
            raise ValueError(
                UNKNOWN_WRITER_MESSAGE.format(fingerprint=written_with.hex(), known=known)
            )
        reader = None if writer is self.schema else self.schema
        return schemaless_reader(io.BytesIO(data[10:]), writer, reader)
