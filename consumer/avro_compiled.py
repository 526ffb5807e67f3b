"""Avro schemas compiled into Python functions: a validity check for raw payloads and a
binary encoder for canonical records, each generated once from a parsed schema.

fastavro walks the schema generically for every datum: a dictionary lookup and a call
per field, and `validation.validate` even re-parses the schema on each call. Here the
walk happens once, at start-up, and writes out the source of one function that does
only the checks (or writes only the bytes) that this schema needs, in field order, as
fastjsonschema does for JSON Schema. The generated source is kept on the function
(`__source__`) so it can be read and tested.

Semantics are fastavro's, and fastavro stays the reference (tests/unit/
test_avro_compiled.py holds the property tests):
- `compile_validator(schema)(datum)` is `fastavro.validation.validate(datum, schema,
  raise_errors=False)` for JSON values (what orjson.loads returns). It only answers
  yes or no; the explanation of a failure (which field, what was expected) still comes
  from fastavro, which only failing payloads pay for (consumer/schemas.py).
- `compile_encoder(schema)(record)` is the bytes `fastavro.schemaless_writer` writes for
  a valid record: same union branch choice (the first branch the value validates
  against), same timestamp conversion (fastavro's own logical writer), same defaults
  for missing fields.

Schema features outside what the project's schemas use raise UnsupportedSchema, and
the caller keeps fastavro's generic path for that schema.
"""

from __future__ import annotations

import array
import functools
import numbers
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastavro.logical_writers import LOGICAL_WRITERS

from consumer.errors import UnsupportedSchema

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)

Validator = Callable[[Any], bool]
Encoder = Callable[[Any], bytes]


class _Source:
    """Generated source with its constants: values the code refers to by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "Mapping": Mapping,
            "Sequence": Sequence,
            "array": array.array,
            "Integral": numbers.Integral,
            "Real": numbers.Real,
            "datetime": datetime,
        }
        self._counter = 0

    def constant(self, value: Any, hint: str) -> str:
        self._counter += 1
        name = f"_{hint}_{self._counter}"
        self.namespace[name] = value
        return name

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}{self._counter}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, entry: str) -> Callable[[Any], Any]:
        text = "\n".join(self.lines) + "\n"
        exec(compile(text, f"<avro_compiled {entry}>", "exec"), self.namespace)
        function = self.namespace[entry]
        function.__source__ = text
        return function


def _type_of(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return schema["type"]
    return schema


def _named(schema: Any, named: dict[str, Any]) -> dict[str, Any]:
    """fastavro's parsed form writes a named type out once and refers to it by its full
    name afterwards; this collects every definition."""
    if isinstance(schema, list):
        for branch in schema:
            _named(branch, named)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "error", "enum", "fixed"):
            named[schema["name"]] = schema
        if kind in ("record", "error"):
            for field in schema["fields"]:
                _named(field["type"], named)
        elif kind == "array":
            _named(schema["items"], named)
        elif kind == "map":
            _named(schema["values"], named)
    return named


# -- validation ----------------------------------------------------------------------


class _ValidatorCompiler:
    def __init__(self, schema: Any) -> None:
        self.source = _Source()
        self.named = _named(schema, {})
        self.record_functions: dict[str, str] = {}
        self.pending: list[dict[str, Any]] = []

    def compile(self, schema: Any) -> Validator:
        self.source.emit(0, "def validate(datum):")
        self.source.emit(1, f"return {self.check(schema, 'datum')}")
        while self.pending:
            self._record_function(self.pending.pop())
        return self.source.build("validate")

    def check(self, schema: Any, value: str) -> str:
        """A Python expression, true when `value` (a name) is valid for `schema`."""
        if isinstance(schema, dict) and schema.get("logicalType"):
            return self._logical_check(schema, value)
        kind = _type_of(schema)
        if kind == "null":
            return f"{value} is None"
        if kind == "boolean":
            return f"isinstance({value}, bool)"
        if kind == "string":
            return f"isinstance({value}, str)"
        if kind in ("int", "long"):
            low, high = INT_RANGE if kind == "int" else LONG_RANGE
            # type() first: exact ints (every JSON integer) skip the abstract check.
            return (
                f"((type({value}) is int or (isinstance({value}, Integral) "
                f"and not isinstance({value}, bool))) and {low} <= {value} <= {high})"
            )
        if kind in ("float", "double"):
            return (
                f"(type({value}) is float or type({value}) is int or "
                f"(isinstance({value}, Real) and not isinstance({value}, bool)))"
            )
        if kind == "bytes":
            return f"isinstance({value}, (bytes, bytearray))"
        if kind == "fixed":
            return f"(isinstance({value}, bytes) and len({value}) == {int(schema['size'])})"
        if kind == "enum":
            symbols = self.source.constant(list(schema["symbols"]), "symbols")
            return f"({value} in {symbols})"
        if kind == "array":
            item = self.source.fresh("item")
            return (
                f"(isinstance({value}, (Sequence, array)) and not isinstance({value}, str) "
                f"and all({self.check(schema['items'], item)} for {item} in {value}))"
            )
        if kind == "map":
            key, item = self.source.fresh("key"), self.source.fresh("item")
            return (
                f"(isinstance({value}, Mapping) "
                f"and all(isinstance({key}, str) for {key} in {value}) "
                f"and all({self.check(schema['values'], item)} for {item} in {value}.values()))"
            )
        if kind == "union":
            # The first branch that passes wins; for JSON values (never tuples) fastavro's
            # union check is exactly this `or`.
            return "(" + " or ".join(self.check(branch, value) for branch in schema) + ")"
        if kind in ("record", "error"):
            return f"{self._record_function_name(schema)}({value})"
        if kind in self.named:
            return self.check(self.named[kind], value)
        raise UnsupportedSchema(f"cannot compile a validator for {kind!r}")

    def _logical_check(self, schema: dict[str, Any], value: str) -> str:
        if schema["logicalType"] == "timestamp-millis" and schema["type"] == "long":
            # fastavro converts a datetime to epoch millis before checking the long.
            return f"(isinstance({value}, datetime) or {self.check('long', value)})"
        raise UnsupportedSchema(f"logical type {schema['logicalType']!r}")

    def _record_function_name(self, schema: dict[str, Any]) -> str:
        name = schema["name"]
        if name not in self.record_functions:
            safe = "".join(c if c.isalnum() else "_" for c in name)
            self.record_functions[name] = f"_record_{safe}"
            self.pending.append(schema)
        return self.record_functions[name]

    def _record_function(self, schema: dict[str, Any]) -> None:
        emit = self.source.emit
        emit(0, "")
        emit(0, f"def {self.record_functions[schema['name']]}(record):")
        emit(1, "if not (type(record) is dict or isinstance(record, Mapping)):")
        emit(2, "return False")
        # fastavro reads a '-type' key as the record's type name.
        full_name = self.source.constant(schema["name"], "name")
        emit(1, f"if '-type' in record and record['-type'] != {full_name}:")
        emit(2, "return False")
        for field in schema["fields"]:
            emit(1, f"value = {_field_lookup(self.source, field)}")
            emit(1, f"if not {self.check(field['type'], 'value')}:")
            emit(2, "return False")
        emit(1, "return True")


def _field_lookup(source: _Source, field: dict[str, Any]) -> str:
    """A missing field reads as its default when it has one, else as None (fastavro)."""
    name = repr(field["name"])
    if "default" in field and field["default"] is not None:
        return f"record.get({name}, {source.constant(field['default'], 'default')})"
    return f"record.get({name})"


def compile_validator(schema: Any) -> Validator:
    """validate(datum) -> bool for a schema parsed by fastavro.parse_schema."""
    return _ValidatorCompiler(schema).compile(schema)


# -- encoding --------------------------------------------------------------------------


def _zigzag_varint(value: int) -> bytes:
    """Avro's zig-zag variable-length long, one 7-bit group at a time (the reference
    for the table-driven _long below, and how its tables are built)."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Most lengths, enum indexes and union branches are small: their encodings are looked up.
_SMALL_VARINTS = tuple(_zigzag_varint(n) for n in range(-64, 64))
# Non-negative longs below this have a one- or two-byte encoding, looked up rather than
# computed: every string length of a record (a SHA-256 hex and an event id are over 63
# bytes, the one-byte limit), counts and balances. 8,192 short byte strings, built once.
_TWO_BYTE_LIMIT = 1 << 13
_TWO_BYTE_LONGS = tuple(_zigzag_varint(n) for n in range(_TWO_BYTE_LIMIT))
# A union's branch index (always one byte here) and a string's length in one string, so
# an optional string is one append rather than two: [index][n] = index + length n.
_MAX_INLINE_BRANCH = 63
# Larger values (epoch-millisecond timestamps are six bytes) go 14 bits at a time: the two
# bytes of each 14-bit group, with the continuation bit on both (more follows) or on the
# first only (the last group). 2 x 16384 short byte strings, built once.
_GROUP_BITS = 14
_GROUP_MASK = (1 << _GROUP_BITS) - 1
_MORE_FOLLOWS = tuple(bytes(((g & 0x7F) | 0x80, (g >> 7) | 0x80)) for g in range(1 << 14))
_LAST_GROUP = tuple(
    bytes((g,)) if g < 0x80 else bytes(((g & 0x7F) | 0x80, g >> 7)) for g in range(1 << 14)
)


def _long(value: int) -> bytes:
    if 0 <= value < _TWO_BYTE_LIMIT:
        return _TWO_BYTE_LONGS[value]
    if -64 <= value < 64:
        return _SMALL_VARINTS[value + 64]
    if not LONG_RANGE[0] <= value <= LONG_RANGE[1]:
        raise ValueError(f"{value} is outside the range of an Avro long")
    value = (value << 1) ^ (value >> 63)
    out = b""
    while value > _GROUP_MASK:
        out += _MORE_FOLLOWS[value & _GROUP_MASK]
        value >>= _GROUP_BITS
    return out + _LAST_GROUP[value]


def _int(value: int) -> bytes:
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise ValueError(f"{value} is outside the range of an Avro int")
    return _long(value)


@functools.cache  # one table per branch index, shared by every field of the schema
def _branch_and_lengths(index: int) -> tuple[bytes, ...]:
    """Union branch `index` followed by each string length below _TWO_BYTE_LIMIT."""
    branch = _long(index)
    return tuple(branch + length for length in _TWO_BYTE_LONGS)


def _string(value: str) -> bytes:
    encoded = value.encode()
    return _long(len(encoded)) + encoded


def _bytes(value: bytes) -> bytes:
    return _long(len(value)) + bytes(value)


class _EncoderCompiler:
    def __init__(self, schema: Any, prefix: bytes) -> None:
        self.prefix = prefix
        self.source = _Source()
        self.source.namespace.update(
            _long=_long,
            _int=_int,
            _string=_string,
            _lengths=_TWO_BYTE_LONGS,
            _more_follows=_MORE_FOLLOWS,
            _last_group=_LAST_GROUP,
            # zig-zag doubles a non-negative value: these bound 2^28 <= 2v < 2^42.
            _three_groups_low=1 << (2 * _GROUP_BITS - 1),
            _three_groups_high=1 << (3 * _GROUP_BITS - 1),
            _length_limit=_TWO_BYTE_LIMIT,
            _epoch=datetime(1970, 1, 1, tzinfo=UTC),
            _one_millisecond=timedelta(milliseconds=1),
            _bytes=_bytes,
            _pack_float=struct.Struct("<f").pack,
            _pack_double=struct.Struct("<d").pack,
        )
        self.named = _named(schema, {})
        self.checks = _ValidatorCompiler(schema)
        self.checks.source = self.source  # union branch checks share the namespace
        self.active_records: set[str] = set()

    def compile(self, schema: Any) -> Encoder:
        emit = self.source.emit
        emit(0, "def encode(datum):")
        # bytearray +=: an in-place add, cheaper than a method call per part.
        emit(1, f"out = bytearray({self.source.constant(self.prefix, 'prefix')})")
        self.write(schema, "datum", 1)
        emit(1, "return bytes(out)")
        while self.checks.pending:  # record checks used by union branches
            self.checks._record_function(self.checks.pending.pop())
        return self.source.build("encode")

    def write(self, schema: Any, value: str, indent: int) -> None:
        """Statements appending the encoding of `value` (a name) to `out`."""
        emit = self.source.emit
        if isinstance(schema, dict) and schema.get("logicalType"):
            if schema["logicalType"] != "timestamp-millis" or schema["type"] != "long":
                raise UnsupportedSchema(f"logical type {schema['logicalType']!r}")
            prepare = self.source.constant(LOGICAL_WRITERS["long-timestamp-millis"], "millis")
            # An aware datetime in integer arithmetic (fastavro's formula, without its
            # float); a naive one through fastavro's own conversion (local time).
            emit(indent, f"if isinstance({value}, datetime):")
            emit(indent + 1, f"if {value}.tzinfo is not None:")
            emit(indent + 2, f"{value} = ({value} - _epoch) // _one_millisecond")
            emit(indent + 1, "else:")
            emit(indent + 2, f"{value} = {prepare}({value}, None)")
            # Today's epoch milliseconds (2^27 to 2^41, 1970-01-02 to 2039) zig-zag to
            # exactly three 14-bit groups: written inline, without a call and a loop.
            emit(
                indent,
                f"if type({value}) is int and _three_groups_low <= {value} < _three_groups_high:",
            )
            emit(indent + 1, f"{value} <<= 1")
            emit(indent + 1, f"out += _more_follows[{value} & {_GROUP_MASK}]")
            emit(indent + 1, f"out += _more_follows[({value} >> {_GROUP_BITS}) & {_GROUP_MASK}]")
            emit(indent + 1, f"out += _last_group[{value} >> {2 * _GROUP_BITS}]")
            emit(indent, "else:")
            emit(indent + 1, f"out += _long({value})")
            return
        kind = _type_of(schema)
        if kind == "null":
            return
        if kind == "boolean":
            emit(indent, f"out += b'\\x01' if {value} else b'\\x00'")
        elif kind == "string":
            self._string(value, indent, branch=None)
        elif kind == "bytes":
            emit(indent, f"out += _bytes({value})")
        elif kind == "long":
            # Counts and balances are mostly small and non-negative: looked up.
            emit(indent, f"if type({value}) is int and 0 <= {value} < _length_limit:")
            emit(indent + 1, f"out += _lengths[{value}]")
            emit(indent, "else:")
            emit(indent + 1, f"out += _long({value})")
        elif kind == "int":
            emit(indent, f"out += _int({value})")
        elif kind in ("float", "double"):
            emit(indent, f"out += _pack_{kind}({value})")
        elif kind == "enum":
            indexes = {symbol: _long(i) for i, symbol in enumerate(schema["symbols"])}
            emit(indent, f"out += {self.source.constant(indexes, 'enum')}[{value}]")
        elif kind == "union":
            self._union(schema, value, indent)
        elif kind in ("record", "error"):
            self._record(schema, value, indent)
        elif kind in self.named:
            self.write(self.named[kind], value, indent)
        else:
            raise UnsupportedSchema(f"cannot compile an encoder for {kind!r}")

    def _union(self, schema: list[Any], value: str, indent: int) -> None:
        kinds = [_type_of(self.named.get(_type_of(b), b)) for b in schema]
        if kinds.count("record") > 1 or "float" in kinds:
            # fastavro picks among several records by fields in common, and prefers a
            # later double to a float: not generated.
            raise UnsupportedSchema("union of several records, or with float")
        emit = self.source.emit
        for index, branch in enumerate(schema):
            keyword = "if" if index == 0 else "elif"
            if _type_of(branch) == "null":
                # `is None` first: the cheapest test, and the commonest branch.
                emit(indent, f"{keyword} {value} is None:")
                emit(indent + 1, f"out += {_long(index)!r}")
                continue
            emit(indent, f"{keyword} {self.checks.check(branch, value)}:")
            if _type_of(branch) == "string" and index <= _MAX_INLINE_BRANCH:
                self._string(value, indent + 1, branch=index)
                continue
            emit(indent + 1, f"out += {_long(index)!r}")
            self.write(branch, value, indent + 1)
        emit(indent, "else:")
        # The type, never the value: messages end up in logs.
        emit(indent + 1, f"raise ValueError('no union branch for a ' + type({value}).__name__)")

    def _string(self, value: str, indent: int, branch: int | None) -> None:
        """Inline rather than a call per string: a record has a dozen of them. With a
        union `branch`, its index goes out in the same append as the length."""
        emit = self.source.emit
        if branch is None:
            table, long_length = "_lengths", "_long({size})"
        else:
            table = self.source.constant(_branch_and_lengths(branch), f"branch{branch}")
            long_length = f"{_long(branch)!r} + _long({{size}})"
        size = self.source.fresh("size")
        emit(indent, f"{value} = {value}.encode()")
        emit(indent, f"{size} = len({value})")
        emit(indent, f"if {size} < _length_limit:")
        emit(indent + 1, f"out += {table}[{size}]")
        emit(indent, "else:")
        emit(indent + 1, f"out += {long_length.format(size=size)}")
        emit(indent, f"out += {value}")

    def _record(self, schema: dict[str, Any], value: str, indent: int) -> None:
        if schema["name"] in self.active_records:
            raise UnsupportedSchema(f"recursive record {schema['name']}")
        self.active_records.add(schema["name"])
        record = self.source.fresh("record")
        self.source.emit(indent, f"{record} = {value}")
        for field in schema["fields"]:
            item = self.source.fresh("value")
            if "default" not in field and not _nullable(field["type"]):
                # Required: a missing one is a KeyError (fastavro: "no value and no default").
                self.source.emit(indent, f"{item} = {record}[{field['name']!r}]")
            else:
                lookup = _field_lookup(self.source, field).replace("record.get", f"{record}.get")
                self.source.emit(indent, f"{item} = {lookup}")
            if field["type"] in ("float", "double"):
                self.source.emit(indent, f"{item} = float({item})")  # fastavro does too
            self.write(field["type"], item, indent)
        self.active_records.discard(schema["name"])


def _nullable(field_type: Any) -> bool:
    return field_type == "null" or (isinstance(field_type, list) and "null" in field_type)


def compile_encoder(schema: Any, prefix: bytes = b"") -> Encoder:
    """encode(record) -> `prefix` and the Avro binary body, as fastavro.schemaless_writer
    writes it, for a schema parsed by fastavro.parse_schema. (The prefix is for a
    header such as single-object encoding's, written in the same buffer.)"""
    return _EncoderCompiler(schema, prefix).compile(schema)
