"""Canonical schema evolution: every released version is archived, and records written
with any version are read by a reader built on any other (FULL_TRANSITIVE), checked
with fastavro's schema resolution on arbitrary records of each writer schema.

What a schema change must do (CONTRIBUTING.md, "Changing the canonical schema"): add the new
version under schemas/history/ and keep this module green.
"""

from __future__ import annotations

import copy
import io

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.reader import RedemptionReader
from consumer.schemas import (
    CANONICAL_SCHEMA_FILE,
    SingleObjectCodec,
    package_schemas,
    schema_fingerprint,
    schema_text,
)
from tests.helpers.avro_strategies import avro_values
from tests.helpers.properties import examples

LIBRARY = package_schemas()
HISTORY = LIBRARY.canonical_history()
CURRENT_TEXT = schema_text(CANONICAL_SCHEMA_FILE)


def round_trip(record: dict, writer: dict, reader: dict) -> dict:
    buffer = io.BytesIO()
    schemaless_writer(buffer, writer, record)
    buffer.seek(0)
    return schemaless_reader(buffer, writer, reader)


def incompatibility(writer: dict, reader: dict, data: st.DataObject) -> str:
    """'' when `reader` reads a drawn record of `writer`, else what went wrong."""
    record = data.draw(avro_values(writer))
    try:
        round_trip(record, writer, reader)
    except Exception as exc:  # fastavro raises several types for resolution failures
        return f"{type(exc).__name__}: {exc}"
    return ""


# A canonical record is large by nature (some 30 fields); each example is one record.
records = settings(
    max_examples=examples(40), suppress_health_check=[HealthCheck.large_base_example]
)


def test_there_is_a_released_version():
    assert HISTORY, "schemas/history/ holds no loyalty_redemption.v<N>.avsc"
    assert sorted(HISTORY) == list(range(1, len(HISTORY) + 1)), "versions must be 1..N"


def test_the_current_schema_is_the_latest_released_version():
    # A change to the canonical schema is a new version: archive it before release.
    latest = HISTORY[max(HISTORY)]
    assert schema_fingerprint(LIBRARY.canonical()) == schema_fingerprint(latest), (
        "schemas/loyalty_redemption.avsc differs from the latest archived version; "
        "add it to schemas/history/ as the next version"
    )


def test_archived_versions_are_never_rewritten():
    # Each archived file is a distinct schema: rewriting v1 into v2 would hide a change.
    fingerprints = [schema_fingerprint(schema) for schema in HISTORY.values()]
    assert len(set(fingerprints)) == len(fingerprints)


@pytest.mark.parametrize("version", sorted(HISTORY))
@records
@given(data=st.data())
def test_full_transitive_compatibility_with_every_released_version(version, data):
    archived, current = HISTORY[version], LIBRARY.canonical()
    assert incompatibility(current, archived, data) == "", "forward: old reader, new data"
    assert incompatibility(archived, current, data) == "", "backward: new reader, old data"


# --- the check itself catches what it must -------------------------------------------


def edited(change) -> dict:
    raw = orjson.loads(CURRENT_TEXT)
    change(raw)
    return parse_schema(raw)


def field(raw: dict, name: str) -> dict:
    return next(f for f in raw["fields"] if f["name"] == name)


# A provider no version has: the symbol a later release adds (never a registered name,
# which tests/unit/test_adding_a_provider.py may be adding in a copy of the tree).
def new_provider_symbol(raw: dict) -> None:
    field(raw, "provider")["type"]["symbols"].insert(-1, "a_later_provider")


def new_optional_field(raw: dict) -> None:
    raw["fields"].append(
        {"name": "channel", "type": ["null", "string"], "default": None, "doc": "new"}
    )


def new_required_field(raw: dict) -> None:
    raw["fields"].append({"name": "channel", "type": "string", "doc": "no default"})


def enum_without_default(raw: dict) -> None:
    provider = field(raw, "provider")["type"]
    provider["symbols"].insert(-1, "a_later_provider")
    del provider["default"]


@records
@given(data=st.data())
def test_adding_a_provider_symbol_or_an_optional_field_stays_compatible(data):
    current = LIBRARY.canonical()
    for change in (new_provider_symbol, new_optional_field):
        future = edited(change)
        assert incompatibility(future, current, data) == "", change.__name__
        assert incompatibility(current, future, data) == "", change.__name__


@settings(max_examples=1, suppress_health_check=[HealthCheck.large_base_example])
@given(data=st.data())
def test_a_required_field_without_default_is_caught(data):
    # Old data has no 'channel' and the new reader has no default for it: any record.
    assert incompatibility(LIBRARY.canonical(), edited(new_required_field), data)


def test_a_new_symbol_without_a_reader_default_is_caught():
    # Deterministic: the one record that carries the new symbol.
    future = edited(new_provider_symbol)
    strict_reader = edited(lambda raw: field(raw, "provider")["type"].pop("default"))
    record = copy.deepcopy(_LATER_RECORD)
    with pytest.raises(Exception, match="a_later_provider"):
        round_trip(record, future, strict_reader)


# --- the reader resolves writer schemas by fingerprint -------------------------------

_LATER_RECORD = {
    "event_id": "a_later_provider:1",
    "provider": "a_later_provider",
    "provider_event_type": "reward.claimed",
    "provider_event_id": "1",
    "shop": None,
    "occurred_at": 1_700_000_000_000,
    "source": "points",
    "points_redeemed": 10,
    "credits_redeemed": None,
    "points_balance_after": None,
    "customer": {
        "shopify_customer_id": "1",
        "email": None,
        "email_sha256": None,
        "first_name": None,
        "last_name": None,
        "loyalty_status": None,
        "accepts_marketing": None,
    },
    "reward": {
        "id": None,
        "name": "x",
        "label": None,
        "type": None,
        "discount_code": None,
        "expires_at": None,
        "used_at": None,
        "refunded_at": None,
    },
    "metadata": {
        "source_topic": "raw",
        "source_partition": 0,
        "source_offset": 0,
        "processed_at": 1_700_000_000_000,
        "signature_verified": None,
        "consumer_version": "9.9.9",
    },
    "channel": "app",
}


def test_a_reader_on_the_released_version_reads_a_future_writers_record():
    future = edited(lambda raw: (new_provider_symbol(raw), new_optional_field(raw)))
    written = SingleObjectCodec(future).encode(_LATER_RECORD)
    # The reader knows the future schema's fingerprint only if it is archived; here it
    # is told about it, as a newer package release would be.
    reader = SingleObjectCodec(
        HISTORY[1], writers={**LIBRARY.canonical_writers(), schema_fingerprint(future): future}
    )
    record = reader.decode(written)
    assert record["provider"] == "other"  # the enum's default: the reader survives
    assert "channel" not in record  # a field the reader does not know is skipped
    assert record["event_id"] == "a_later_provider:1"


def test_a_future_reader_reads_a_released_record_with_defaults():
    released = {k: v for k, v in _LATER_RECORD.items() if k != "channel"}
    released["provider"] = "rivo"
    written = SingleObjectCodec(HISTORY[1]).encode(released)
    future = edited(new_optional_field)
    record = SingleObjectCodec(future).decode(written)
    assert record["channel"] is None
    assert record["provider"] == "rivo"


def test_an_unknown_fingerprint_names_itself_and_says_what_to_do():
    future = edited(new_required_field)
    written = SingleObjectCodec(future).encode(_LATER_RECORD | {"provider": "rivo"})
    with pytest.raises(ValueError, match=r"not a known canonical schema") as refused:
        SingleObjectCodec().decode(written)
    assert "upgrade readers before writers" in str(refused.value)
    assert "schema registry" in str(refused.value)


def test_a_released_reader_refuses_a_newer_single_object_record_saying_upgrade_first():
    """What a 0.2.0 reader meets when a provider symbol is added and no registry is used:
    every record written with the new schema, an existing provider's included."""
    added_provider = edited(new_provider_symbol)
    rivo_record = {k: v for k, v in _LATER_RECORD.items() if k != "channel"} | {"provider": "rivo"}
    written = SingleObjectCodec(added_provider).encode(rivo_record)
    released_reader = RedemptionReader(reader_schema_file="history/loyalty_redemption.v1.avsc")
    with pytest.raises(ValueError, match="upgrade readers before writers"):
        released_reader.decode(written)
