"""consumer.schemas and schemas/*.avsc: the canonical schema, raw validation, and Avro
single-object encoding."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from consumer.errors import ConfigError, SchemaViolation
from consumer.providers import PROVIDER_NAMES, PROVIDERS
from consumer.records import Accepted
from consumer.schemas import (
    CANONICAL_SCHEMA_FILE,
    RawSchema,
    SchemaLibrary,
    SingleObjectCodec,
    load_schema,
    package_schemas,
    schema_text,
)
from tests.helpers import payloads
from tests.helpers.payloads import raw_record, set_path

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
RAW_SCHEMA_FILES = tuple(provider.raw_schema_file for provider in PROVIDERS)

# --- CRC-64-AVRO, written from the Avro specification ("Schema Fingerprints") -------------

_EMPTY64 = 0xC15D213AA4D7A795
_FP_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY64 & -(_fp & 1))
    _FP_TABLE.append(_fp & 0xFFFFFFFFFFFFFFFF)


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_avro_reproduces_the_specifications_test_vector():
    # From the Avro project's schema test data: the fingerprint of "null".
    assert crc64_avro(b'"null"') == 7195948357588979594


@pytest.fixture(scope="module")
def codec() -> SingleObjectCodec:
    return SingleObjectCodec()


@pytest.fixture(scope="module")
def canonical_schema() -> dict:
    return parse_schema(json.loads((SCHEMA_DIR / CANONICAL_SCHEMA_FILE).read_text()))


def accepted_records(pipeline) -> list[dict]:
    records = []
    for seed in map(payloads.seed_bytes, PROVIDER_NAMES):
        outcome = pipeline.process(raw_record(seed))
        assert isinstance(outcome, Accepted)
        records.append(outcome.record)
    return records


# --- the canonical schema matches the contract -------------------------------------------

CONTRACT_FIELDS = {
    "event_id": "string",
    "provider": "enum",
    "provider_event_type": "string",
    "provider_event_id": ["null", "string"],
    "shop": ["null", "string"],
    "occurred_at": "timestamp-millis",
    "source": "enum",
    "points_redeemed": "long",
    "credits_redeemed": ["null", "string"],
    "points_balance_after": ["null", "long"],
    "customer": "record",
    "reward": "record",
    "metadata": "record",
}
CONTRACT_CUSTOMER = {
    "shopify_customer_id": "string",
    "email": ["null", "string"],
    "email_sha256": ["null", "string"],
    "first_name": ["null", "string"],
    "last_name": ["null", "string"],
    "loyalty_status": ["null", "string"],
    "accepts_marketing": ["null", "boolean"],
}
CONTRACT_REWARD = {
    "id": ["null", "string"],
    "name": "string",
    "label": ["null", "string"],
    "type": ["null", "enum"],
    "discount_code": ["null", "string"],
    "expires_at": ["null", "timestamp-millis"],
    "used_at": ["null", "timestamp-millis"],
    "refunded_at": ["null", "timestamp-millis"],
}
CONTRACT_METADATA = {
    "source_topic": "string",
    "source_partition": "int",
    "source_offset": "long",
    "processed_at": "timestamp-millis",
    "signature_verified": ["null", "boolean"],
    "consumer_version": "string",
}


def _kind(avro_type):
    if isinstance(avro_type, list):
        return [_kind(branch) for branch in avro_type]
    if isinstance(avro_type, dict):
        return avro_type.get("logicalType") or avro_type["type"]
    return avro_type


def _fields(record: dict) -> dict:
    return {field["name"]: field for field in record["fields"]}


def _raw_canonical() -> dict:
    return json.loads((SCHEMA_DIR / CANONICAL_SCHEMA_FILE).read_text())


def test_canonical_schema_has_the_contracts_fields_and_types():
    schema = _raw_canonical()
    assert schema["name"] == "LoyaltyRedemption"
    top = _fields(schema)
    assert {name: _kind(field["type"]) for name, field in top.items()} == CONTRACT_FIELDS
    for name, expected in (
        ("customer", CONTRACT_CUSTOMER),
        ("reward", CONTRACT_REWARD),
        ("metadata", CONTRACT_METADATA),
    ):
        nested = _fields(top[name]["type"])
        assert {n: _kind(f["type"]) for n, f in nested.items()} == expected, name


def test_canonical_enums_have_the_contracts_symbols_and_a_default_for_later_ones():
    # 'other' is the one addition to the contract's symbols: the default an older
    # reader resolves a newer symbol to (Avro enum resolution). The service never
    # writes it.
    top = _fields(_raw_canonical())
    # The provider symbols are the registry's (test_provider_enum_lists_every_registered_provider).
    assert top["provider"]["type"]["symbols"][-1] == "other"
    assert top["source"]["type"]["symbols"] == ["points", "credits", "other"]
    reward_type = _fields(top["reward"]["type"])["type"]["type"][1]
    for enum in (top["provider"]["type"], top["source"]["type"], reward_type):
        assert enum["default"] == "other"
    assert reward_type["symbols"] == [
        "fixed_amount",
        "percentage",
        "free_shipping",
        "free_product",
        "other",
    ]


def test_provider_enum_lists_every_registered_provider():
    from consumer.providers import PROVIDER_NAMES

    assert [*PROVIDER_NAMES, "other"] == _fields(_raw_canonical())["provider"]["type"]["symbols"]


def test_nullable_fields_default_to_null():
    def walk(record):
        for field in record["fields"]:
            kind = field["type"]
            if isinstance(kind, list) and kind[0] == "null":
                assert "default" in field and field["default"] is None, field["name"]
            if isinstance(kind, dict) and kind.get("type") == "record":
                walk(kind)

    walk(_raw_canonical())


@pytest.mark.parametrize("filename", [CANONICAL_SCHEMA_FILE, *RAW_SCHEMA_FILES])
def test_every_record_and_field_has_a_doc(filename):
    def walk(node, where):
        if isinstance(node, list):
            for branch in node:
                walk(branch, where)
        elif isinstance(node, dict) and node.get("type") == "record":
            assert node.get("doc"), f"{filename}: record {where or node['name']} has no doc"
            for field in node["fields"]:
                assert field.get("doc"), f"{filename}: field {where}{field['name']} has no doc"
                walk(field["type"], f"{where}{field['name']}.")

    walk(json.loads((SCHEMA_DIR / filename).read_text()), "")


def test_accepted_records_validate_against_the_canonical_schema(pipeline, canonical_schema):
    for record in accepted_records(pipeline):
        assert validate(record, canonical_schema, raise_errors=True)


# --- single-object encoding ---------------------------------------------------------------


def test_fingerprint_is_crc64_avro_of_the_parsing_canonical_form_little_endian(codec):
    canonical_form = to_parsing_canonical_form(_raw_canonical())
    expected = crc64_avro(canonical_form.encode()).to_bytes(8, "little")
    assert codec.fingerprint == expected


def test_encoding_starts_with_the_single_object_header(codec, pipeline):
    for record in accepted_records(pipeline):
        encoded = codec.encode(record)
        assert encoded[:2] == b"\xc3\x01"
        assert encoded[2:10] == codec.fingerprint
        # What follows is the plain Avro binary body.
        body = schemaless_reader(io.BytesIO(encoded[10:]), codec.schema, None)
        assert body == record


def test_round_trip(codec, pipeline):
    for record in accepted_records(pipeline):
        assert codec.decode(codec.encode(record)) == record


def test_round_trip_with_every_optional_value_set(codec, pipeline):
    body = payloads.rivo_seed()
    set_path(body, "used_at", "2025-04-26T10:00:00.001Z")
    set_path(body, "refunded_at", "2025-04-27T10:00:00Z")
    set_path(body, "customer.accepts_marketing", True)
    outcome = pipeline.process(raw_record(body, [("X-Shop-Domain", b"s.myshopify.com")]))
    assert isinstance(outcome, Accepted)
    assert codec.decode(codec.encode(outcome.record)) == outcome.record


def test_round_trip_with_sub_millisecond_timestamps(codec, pipeline):
    body = set_path(payloads.rivo_seed(), "applied_at", "2025-04-25T15:08:36.223456Z")
    outcome = pipeline.process(raw_record(body))
    assert isinstance(outcome, Accepted)
    assert codec.decode(codec.encode(outcome.record)) == outcome.record


def test_decode_rejects_a_wrong_marker(codec, pipeline):
    encoded = codec.encode(accepted_records(pipeline)[0])
    for bad in (b"\x00" + encoded[1:], b"\xc3\x02" + encoded[2:], b"", b"\xc3"):
        with pytest.raises(ValueError, match="C3 01"):
            codec.decode(bad)


def test_decode_rejects_a_wrong_fingerprint(codec, pipeline):
    encoded = codec.encode(accepted_records(pipeline)[0])
    flipped = encoded[:2] + bytes([encoded[2] ^ 0xFF]) + encoded[3:]
    with pytest.raises(ValueError, match="fingerprint"):
        codec.decode(flipped)
    big_endian = encoded[:2] + encoded[2:10][::-1] + encoded[10:]
    with pytest.raises(ValueError, match="fingerprint"):
        codec.decode(big_endian)


def test_timestamps_are_stored_as_epoch_millis(codec, pipeline):
    record = dict(accepted_records(pipeline)[0])
    record["occurred_at"] = datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    encoded = codec.encode(record)
    decoded = codec.decode(encoded)
    assert decoded["occurred_at"] == record["occurred_at"]
    # A plain long reader sees 1500 ms.
    as_long = json.loads(json.dumps(_raw_canonical()))
    for field in as_long["fields"]:
        if field["name"] == "occurred_at":
            field["type"] = "long"
    assert (
        schemaless_reader(io.BytesIO(encoded[10:]), parse_schema(as_long), None)["occurred_at"]
        == 1500
    )


# --- loading ------------------------------------------------------------------------------


def test_load_schema_parses_once():
    assert load_schema(CANONICAL_SCHEMA_FILE) is load_schema(CANONICAL_SCHEMA_FILE)


def test_the_packaged_schemas_are_the_repository_copy():
    for path in SCHEMA_DIR.rglob("*.avsc"):
        name = str(path.relative_to(SCHEMA_DIR))
        assert schema_text(name) == path.read_text(), name


def test_the_environment_does_not_reach_the_schema_module(monkeypatch, tmp_path):
    # LOYALTY_SCHEMA_DIR is read once, by Settings; the library is handed the directory.
    monkeypatch.setenv("LOYALTY_SCHEMA_DIR", str(tmp_path))
    assert package_schemas().directory is None
    assert schema_text(CANONICAL_SCHEMA_FILE) == (SCHEMA_DIR / CANONICAL_SCHEMA_FILE).read_text()


def test_a_schema_directory_overrides_the_packaged_schemas(tmp_path):
    (tmp_path / "x.avsc").write_text('"string"')
    assert SchemaLibrary(tmp_path).text("x.avsc") == '"string"'


def test_missing_schema_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="LOYALTY_SCHEMA_DIR"):
        SchemaLibrary(tmp_path).text(CANONICAL_SCHEMA_FILE)


# --- raw schemas --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mage_raw() -> RawSchema:
    return RawSchema(load_schema("mage_loyalty.points_redeemed.avsc"))


@pytest.fixture(scope="module")
def rivo_raw() -> RawSchema:
    return RawSchema(load_schema("rivo.points_redemption_created.avsc"))


def test_raw_schemas_accept_the_seeds(mage_raw, rivo_raw):
    assert mage_raw.validate(payloads.mage_seed()) is None
    assert rivo_raw.validate(payloads.rivo_seed()) is None


def test_raw_schemas_accept_what_providers_really_send(mage_raw, rivo_raw):
    mage = payloads.mage_seed()
    set_path(mage, "data.points_redeemed", "500")
    set_path(mage, "data.shopify_customer_id", 6789012345)
    set_path(mage, "data.email", None)
    mage["unlisted"] = {"anything": [1, 2]}
    mage_raw.validate(mage)

    rivo = payloads.rivo_seed()
    set_path(rivo, "credits_amount", 25.5)
    set_path(rivo, "expires_at", None)
    set_path(rivo, "id", "1234567")
    set_path(rivo, "customer.id", "9876543210987")
    set_path(rivo, "customer.credits_tally", 0)
    set_path(rivo, "reward", None)
    rivo["referred_email"] = "friend@example.com"
    rivo_raw.validate(rivo)


def test_raw_violation_names_the_nested_path(mage_raw):
    body = set_path(payloads.mage_seed(), "data.points_redeemed", 1.5)
    with pytest.raises(SchemaViolation) as caught:
        mage_raw.validate(body)
    assert caught.value.field == "data.points_redeemed"
    assert caught.value.reason == "schema_violation"
    assert "loyalty.raw" not in caught.value.message


def test_raw_violation_never_quotes_the_value(rivo_raw):
    body = set_path(payloads.rivo_seed(), "customer.email", ["secret.person@example.com"])
    with pytest.raises(SchemaViolation) as caught:
        rivo_raw.validate(body)
    assert caught.value.field == "customer.email"
    assert "secret.person" not in caught.value.message


def test_raw_violation_of_a_missing_top_level_field(rivo_raw):
    with pytest.raises(SchemaViolation) as caught:
        rivo_raw.validate({"customer": {"id": 1}})
    assert caught.value.field == "id"
    assert caught.value.message == "id: required field is missing or null"
