"""consumer.avro_compiled agrees with fastavro, the reference: the compiled validator
gives fastavro.validation's verdict for any JSON value, RawSchema reports the same
violation (field and message) as with fastavro alone, and the compiled encoder writes
the bytes fastavro.schemaless_writer writes for any valid record."""

from __future__ import annotations

import functools
import io
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.avro_compiled import (
    UnsupportedSchema,
    _long,
    _zigzag_varint,
    compile_encoder,
    compile_validator,
)
from consumer.errors import SchemaViolation
from consumer.providers import PROVIDERS, mage_loyalty, rivo
from consumer.schemas import CANONICAL_SCHEMA_FILE, RawSchema, load_schema
from tests.helpers.properties import examples

RAW_SCHEMA_FILES = tuple(provider.raw_schema_file for provider in PROVIDERS)
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

EXAMPLES = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def parsed(filename: str) -> dict:
    return load_schema(filename)


@functools.cache
def compiled_validator(filename: str):
    return compile_validator(parsed(filename))


@functools.cache
def compiled_encoder(filename: str):
    return compile_encoder(parsed(filename))


# -- strategies ---------------------------------------------------------------------------

# Any JSON value as orjson.loads returns it: integers beyond 64 bits included.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(LONG_MIN - 2, LONG_MIN + 2)
    | st.integers(LONG_MAX - 2, LONG_MAX + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def near_valid(schema: Any, named: dict[str, Any]) -> st.SearchStrategy:
    """Values shaped by the schema with a few mutations at every level (a field dropped,
    replaced by any JSON value, added, or a '-type' tag), or any JSON value at all, so
    that both verdicts, and failures at every depth, come up often."""
    return st.one_of(_shaped(schema, named), json_values)


def _shaped(schema: Any, named: dict[str, Any]) -> st.SearchStrategy:
    if isinstance(schema, list):
        return st.one_of([_shaped(branch, named) for branch in schema])
    if isinstance(schema, str) and schema in named:
        return _shaped(named[schema], named)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "record":
        named[schema["name"]] = schema
        return _mutated_record(schema, named)
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "string": st.text(max_size=8),
        "long": st.integers(LONG_MIN, LONG_MAX),
        "int": st.integers(INT_MIN, INT_MAX),
        "double": st.floats(allow_nan=False) | st.integers(),
    }[kind]


@st.composite
def _mutated_record(draw: st.DrawFn, schema: dict, named: dict[str, Any]) -> dict:
    record = {f["name"]: draw(_shaped(f["type"], named)) for f in schema["fields"]}
    names = [f["name"] for f in schema["fields"]]
    for _ in range(draw(st.integers(0, 2))):
        mutation = draw(st.sampled_from(["drop", "replace", "add", "tag"]))
        name = draw(st.sampled_from(names))
        if mutation == "drop":
            record.pop(name, None)
        elif mutation == "replace":
            record[name] = draw(json_values)
        elif mutation == "add":
            record[draw(st.text(max_size=5))] = draw(json_values)
        else:
            record["-type"] = draw(st.sampled_from([schema["name"], "Other", None]))
    return record


@st.composite
def valid_records(draw: st.DrawFn, schema: Any, named: dict[str, Any]) -> Any:
    """Valid data for the schema, as the pipeline builds it (datetimes for timestamps),
    with fields that have a default sometimes left out."""
    if isinstance(schema, list):
        return draw(valid_records(draw(st.sampled_from(schema)), named))
    if isinstance(schema, str) and schema in named:
        return draw(valid_records(named[schema], named))
    if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
        return draw(
            st.datetimes(
                min_value=datetime(1900, 1, 1),
                max_value=datetime(2200, 1, 1),
                timezones=st.just(UTC)
                | st.builds(timezone, st.timedeltas(-timedelta(hours=23), timedelta(hours=23))),
            )
            | st.integers(LONG_MIN, LONG_MAX)
        )
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "record":
        named[schema["name"]] = schema
        record = {}
        for field in schema["fields"]:
            if "default" in field and draw(st.booleans()):
                continue
            record[field["name"]] = draw(valid_records(field["type"], named))
        return record
    if kind == "enum":
        named[schema["name"]] = schema
        return draw(st.sampled_from(schema["symbols"]))
    return draw(
        {
            "null": st.none(),
            "boolean": st.booleans(),
            "string": st.text(),
            "long": st.integers(LONG_MIN, LONG_MAX),
            "int": st.integers(INT_MIN, INT_MAX),
            "double": st.floats() | st.integers(LONG_MIN, LONG_MAX),
        }[kind]
    )


def fastavro_bytes(schema: dict, record: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


# -- the validator --------------------------------------------------------------------------


@pytest.mark.parametrize("filename", RAW_SCHEMA_FILES)
@EXAMPLES
@given(data=st.data())
def test_validator_gives_fastavros_verdict(filename, data):
    schema = parsed(filename)
    datum = data.draw(near_valid(schema, {}))
    expected = validate(datum, schema, raise_errors=False)
    assert compiled_validator(filename)(datum) is expected


@EXAMPLES
@given(datum=json_values)
def test_validator_gives_fastavros_verdict_for_any_json_value(datum):
    for filename in RAW_SCHEMA_FILES:
        schema = parsed(filename)
        expected = validate(datum, schema, raise_errors=False)
        assert compiled_validator(filename)(datum) is expected


def fastavro_only(filename: str) -> RawSchema:
    """RawSchema as it was before compilation: fastavro's generic check."""
    raw = RawSchema(parsed(filename))
    raw._is_valid = lambda payload: validate(payload, raw._schema, raise_errors=False)
    return raw


def violation(raw: RawSchema, payload: Any) -> tuple[str | None, str] | None:
    try:
        raw.validate(payload)
    except SchemaViolation as exc:
        return exc.field, exc.message
    return None


@pytest.mark.parametrize("filename", RAW_SCHEMA_FILES)
@EXAMPLES
@given(data=st.data())
def test_raw_schema_reports_the_same_violation_as_fastavro_alone(filename, data):
    compiled, reference = RawSchema(parsed(filename)), fastavro_only(filename)
    payload = data.draw(near_valid(parsed(filename), {}).filter(lambda v: isinstance(v, dict)))
    assert violation(compiled, payload) == violation(reference, payload)


def test_the_seeds_are_valid_and_a_wrong_type_is_not():
    from tests.helpers import payloads

    for provider in PROVIDERS:
        assert compile_validator(parsed(provider.raw_schema_file))(payloads.seed(provider.name))
    mage = compile_validator(parsed(mage_loyalty.PROVIDER.raw_schema_file))
    body = payloads.mage_seed()
    body["data"]["points_redeemed"] = 1.5
    assert not mage(body)


def test_the_generated_source_is_kept_for_reading():
    source = compile_validator(parsed(rivo.PROVIDER.raw_schema_file)).__source__
    assert "def _record_loyalty_raw_rivo_Customer(record):" in source


# -- the encoder ----------------------------------------------------------------------------


@pytest.mark.parametrize("filename", [CANONICAL_SCHEMA_FILE, *RAW_SCHEMA_FILES])
@EXAMPLES
@given(data=st.data())
def test_encoder_writes_fastavros_bytes(filename, data):
    schema = parsed(filename)
    record = data.draw(valid_records(schema, {}))
    assert compiled_encoder(filename)(record) == fastavro_bytes(schema, record)


# Sizes and values around the encoder's lookup tables and its inline timestamp path:
# one- and two-byte lengths and counts, and epoch milliseconds of three 14-bit groups.
_TABLE_EDGES = (63, 64, 8191, 8192, 8193)
_THREE_GROUP_EDGES = (2**27, 2**41)


def _near(edges: tuple[int, ...]) -> st.SearchStrategy:
    return st.sampled_from(edges).flatmap(lambda edge: st.integers(edge - 2, edge + 2))


@EXAMPLES
@given(data=st.data())
def test_encoder_writes_fastavros_bytes_at_the_edges_of_its_tables(data):
    schema = parsed(CANONICAL_SCHEMA_FILE)
    record = data.draw(valid_records(schema, {}))
    edge_strings = _near(_TABLE_EDGES).flatmap(
        lambda size: st.sampled_from(["x" * size, "é" * (size // 2), "x" + "€" * (size // 3)])
    )
    record["event_id"] = data.draw(edge_strings)
    record["customer"]["shopify_customer_id"] = data.draw(edge_strings)
    record["customer"]["email"] = data.draw(st.none() | edge_strings)
    record["points_redeemed"] = data.draw(_near((0, *_TABLE_EDGES)) | st.integers(0, 2**14))
    record["occurred_at"] = data.draw(_near(_THREE_GROUP_EDGES) | _near((-(2**27), -(2**41))))
    assert compile_encoder(schema)(record) == fastavro_bytes(schema, record)


def test_encoder_writes_fastavros_bytes_for_the_pipelines_records(pipeline):
    from consumer.records import Accepted
    from tests.helpers import payloads
    from tests.helpers.payloads import raw_record

    schema = parsed(CANONICAL_SCHEMA_FILE)
    encode = compile_encoder(schema)
    for seed in (payloads.mage_seed_bytes(), payloads.rivo_seed_bytes()):
        outcome = pipeline.process(raw_record(seed))
        assert isinstance(outcome, Accepted)
        assert encode(outcome.record) == fastavro_bytes(schema, outcome.record)


@pytest.mark.parametrize(
    ("field", "value"),
    [("points_redeemed", "12"), ("points_redeemed", 2**63), ("source", "gold")],
)
def test_encoder_refuses_what_fastavro_refuses(pipeline, field, value):
    from consumer.records import Accepted
    from tests.helpers import payloads
    from tests.helpers.payloads import raw_record

    schema = parsed(CANONICAL_SCHEMA_FILE)
    outcome = pipeline.process(raw_record(payloads.rivo_seed_bytes()))
    assert isinstance(outcome, Accepted)
    record = {**outcome.record, field: value}
    with pytest.raises((ValueError, TypeError, KeyError, OverflowError)):
        fastavro_bytes(schema, record)
    with pytest.raises((ValueError, TypeError, KeyError)):
        compile_encoder(schema)(record)


def test_a_union_error_names_the_type_never_the_value():
    encode = compile_encoder(
        parse_schema(
            {
                "type": "record",
                "name": "R",
                "fields": [
                    {"name": "email", "type": ["null", "string"]},
                ],
            }
        )
    )
    with pytest.raises(ValueError) as caught:
        encode({"email": ["someone@example.com"]})
    assert "someone" not in str(caught.value)
    assert "list" in str(caught.value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": "string"},
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": ["null", "float"]}]},
        {"type": "long", "logicalType": "timestamp-micros"},
    ],
)
def test_encoder_says_what_it_does_not_compile(schema):
    with pytest.raises(UnsupportedSchema):
        compile_encoder(parse_schema(schema))


def test_validator_handles_every_type_fastavro_validates():
    schema = parse_schema(
        {
            "type": "record",
            "name": "All",
            "fields": [
                {"name": "b", "type": "bytes"},
                {"name": "f", "type": {"type": "fixed", "name": "Two", "size": 2}},
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}},
                {"name": "a", "type": {"type": "array", "items": "int"}},
                {"name": "m", "type": {"type": "map", "values": "float"}},
                {"name": "again", "type": ["null", "Two"]},
            ],
        }
    )
    check = compile_validator(schema)
    good = {"b": b"x", "f": b"ab", "e": "a", "a": [1, 2], "m": {"k": 1.5}, "again": None}
    assert check(good) and validate(good, schema, raise_errors=False)
    for field, bad in [
        ("b", "x"),
        ("f", b"abc"),
        ("e", "c"),
        ("a", [1, 2**40]),
        ("a", "12"),
        ("m", {"k": "v"}),
        ("again", b"a"),
    ]:
        datum = {**good, field: bad}
        assert check(datum) is validate(datum, schema, raise_errors=False) is False, field


def test_identifiers_in_generated_code_are_safe():
    allowed = set(string.ascii_letters + string.digits + "_")
    schema = parse_schema(
        {
            "type": "record",
            "name": "weird.name_space.Rec0",
            "fields": [{"name": "x", "type": "int"}],
        }
    )
    source = compile_validator(schema).__source__
    for line in source.splitlines():
        if line.startswith("def "):
            assert set(line[4 : line.index("(")]) <= allowed


@given(value=st.integers(LONG_MIN, LONG_MAX))
def test_table_driven_longs_equal_the_group_by_group_encoding(value):
    assert _long(value) == _zigzag_varint(value)
