"""Pipeline.process: every outcome and rejection reason, the order of checks, lineage
metadata, and property-based tests that it never raises."""

from __future__ import annotations

import copy
import json
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastavro import parse_schema
from fastavro.validation import validate
from hypothesis import event, given, settings
from hypothesis import strategies as st

import consumer
from consumer.config import Settings
from consumer.errors import (
    LOOP_REJECTION_REASONS,
    PIPELINE_REJECTION_REASONS,
    REJECTION_REASONS,
)
from consumer.pipeline import DEFAULT_MAX_PAYLOAD_BYTES, Pipeline
from consumer.providers import PROVIDER_NAMES, PROVIDERS
from consumer.records import Accepted, Ignored, RawRecord, Rejected
from consumer.schemas import CANONICAL_SCHEMA_FILE, SingleObjectCodec, schema_text
from tests.helpers import payloads
from tests.helpers.payloads import dumps, raw_record
from tests.helpers.properties import examples
from tests.helpers.schema_walk import raw_schema_keys
from tests.helpers.signing import (
    REDEMPTION_SIGNERS,
    mage_headers,
    rivo_documented_headers,
    rivo_wire_headers,
)

REDEMPTION_EVENTS = {provider.name: provider.redemption_event for provider in PROVIDERS}
CANONICAL = parse_schema(json.loads(schema_text(CANONICAL_SCHEMA_FILE)))
CODEC = SingleObjectCodec()

PLAIN = Pipeline()
# For comparing two outcomes: processed_at must not differ between them.
STILL = Pipeline(clock=lambda: 1771416000.0)
# A secret for every registered provider, so every one of them is signature-checked.
SECRETS = {name: f"{name}-secret" for name in PROVIDER_NAMES}
MAGE_SECRET = SECRETS["mage_loyalty"]
RIVO_SECRET = SECRETS["rivo"]
SIGNED = Pipeline(secrets={name: (secret,) for name, secret in SECRETS.items()})


def reject(pipeline: Pipeline, record: RawRecord) -> Rejected:
    outcome = pipeline.process(record)
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason in PIPELINE_REJECTION_REASONS
    return outcome


# --- the contract's reasons -------------------------------------------------------------


def test_rejection_reasons_are_the_contracts():
    assert set(REJECTION_REASONS) == {
        "invalid_json",
        "payload_too_large",
        "unknown_provider",
        "unknown_event_type",
        "schema_violation",
        "signature_missing",
        "signature_invalid",
        "normalization_error",
        "output_too_large",
        "undecodable_record",
        "internal_error",
    }
    assert len(REJECTION_REASONS) == len(set(REJECTION_REASONS))
    # The loop's reasons describe what went wrong around a record, never its content.
    assert set(LOOP_REJECTION_REASONS) == {
        "output_too_large",
        "undecodable_record",
        "internal_error",
    }
    assert set(PIPELINE_REJECTION_REASONS) | set(LOOP_REJECTION_REASONS) == set(REJECTION_REASONS)


def _one_input_per_reason() -> dict[str, tuple[Pipeline, RawRecord]]:
    seed = payloads.rivo_seed_bytes()
    return {
        "invalid_json": (PLAIN, raw_record(b"{not json")),
        "payload_too_large": (Pipeline(max_payload_bytes=16), raw_record(seed)),
        "unknown_provider": (PLAIN, raw_record({"hello": "world"})),
        "unknown_event_type": (PLAIN, raw_record({}, [("rivo-webhook-id", b"msg_1")])),
        "schema_violation": (PLAIN, raw_record(seed.replace(b'"applied_at"', b'"applied"'))),
        "signature_missing": (SIGNED, raw_record(seed)),
        "signature_invalid": (SIGNED, raw_record(seed, [("Rivo-Signature", b"AAAA")])),
        "normalization_error": (PLAIN, raw_record(seed.replace(b'"points"', b'"gems"', 1))),
    }


@pytest.mark.parametrize("reason", PIPELINE_REJECTION_REASONS)
def test_every_reason_is_reachable(reason):
    pipeline, record = _one_input_per_reason()[reason]
    outcome = reject(pipeline, record)
    assert outcome.reason == reason
    assert outcome.message
    assert outcome.error_class.startswith("consumer.errors.")


def test_every_reason_has_an_input():
    assert set(_one_input_per_reason()) == set(PIPELINE_REJECTION_REASONS)


# --- invalid_json -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"\xff\xfe{\x00}", "UTF-8"),
        (b'{"event": "points.redeemed", "shop": "caf\xe9"}', "UTF-8"),
        (b"{", "unexpected end"),
        (b"", "empty"),
        (b"{'single': 'quotes'}", "not UTF-8 JSON"),
        (b'{"a": 1} trailing', "not UTF-8 JSON"),
        (b"\xef\xbb\xbf{}", "not UTF-8 JSON"),
        (b"[1, 2]", "where an object was expected"),
        (b"42", "where an object was expected"),
        (b"4.2", "where an object was expected"),
        (b'"a string"', "where an object was expected"),
        (b"null", "where an object was expected"),
        (b"true", "where an object was expected"),
    ],
)
def test_invalid_json(pipeline, value, words):
    outcome = reject(pipeline, raw_record(value, [("User-Agent", b"MageLoyalty-Webhook/1.0")]))
    assert outcome.reason == "invalid_json"
    assert words in outcome.message
    assert outcome.field is None
    assert outcome.provider is None  # not parsed, so not attributed
    assert outcome.error_class == "consumer.errors.InvalidJson"


def test_tombstone(pipeline):
    outcome = reject(pipeline, raw_record(None))
    assert outcome.reason == "invalid_json"
    assert "tombstone" in outcome.message


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"[1]", "array"), (b"null", "null"), (b"42", "integer"), (b'"x"', "string")],
)
def test_invalid_json_names_the_json_type(pipeline, value, kind):
    assert f"JSON {kind} " in reject(pipeline, raw_record(value)).message


def test_deeply_nested_json_is_invalid_not_a_crash(pipeline):
    outcome = reject(pipeline, raw_record(b"[" * 5000 + b"]" * 5000))
    assert outcome.reason == "invalid_json"


# --- payload_too_large --------------------------------------------------------------------


def test_limit_from_the_constructor():
    seed = payloads.mage_seed_bytes()
    at_limit = Pipeline(max_payload_bytes=len(seed))
    assert isinstance(at_limit.process(raw_record(seed)), Accepted)
    under = Pipeline(max_payload_bytes=len(seed) - 1)
    outcome = reject(under, raw_record(seed))
    assert outcome.reason == "payload_too_large"
    assert str(len(seed)) in outcome.message
    assert str(len(seed) - 1) in outcome.message
    assert outcome.field is None


def test_default_limit_is_one_mebibyte_of_bytes(pipeline):
    assert DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024
    seed = payloads.mage_seed_bytes()
    exactly = seed + b" " * (DEFAULT_MAX_PAYLOAD_BYTES - len(seed))
    assert isinstance(pipeline.process(raw_record(exactly)), Accepted)
    outcome = reject(pipeline, raw_record(exactly + b" "))
    assert outcome.reason == "payload_too_large"
    assert "1048577" in outcome.message and "1048576" in outcome.message


def test_size_is_checked_before_parsing():
    outcome = reject(Pipeline(max_payload_bytes=4), raw_record(b"\xff\xff\xff\xff\xff"))
    assert outcome.reason == "payload_too_large"


def test_size_counts_bytes_not_characters():
    body = dumps({"note": "é" * 10})  # 10 characters, 20 bytes
    limit = len(body) - 1
    assert len(body.decode()) <= limit
    assert reject(Pipeline(max_payload_bytes=limit), raw_record(body)).reason == (
        "payload_too_large"
    )


# --- unknown_provider / unknown_event_type -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({}, []),
        ({"hello": "world"}, []),
        ({"event": "points.redeemed"}, []),  # Mage needs `data` too
        ({"event_type": 5, "customer": {"event_type": None}}, []),
        (payloads.mage_seed()["data"], [("X-Shopify-Topic", b"orders/create")]),
        ({"topic": "points_redemption/created"}, [("User-Agent", b"curl/8.0")]),
    ],
)
def test_unknown_provider(pipeline, body, headers):
    outcome = reject(pipeline, raw_record(body, headers))
    assert outcome.reason == "unknown_provider"
    assert outcome.provider is None
    assert outcome.message == "no provider header or body field recognised"


@pytest.mark.parametrize(
    ("headers", "provider"),
    [
        ([("User-Agent", b"MageLoyalty-Webhook/1.0")], "mage_loyalty"),
        ([("X-Webhook-Event", b"")], "mage_loyalty"),
        ([("rivo-webhook-id", b"msg_1")], "rivo"),
        ([("Rivo-Webhook-Topic", b"")], "rivo"),
    ],
)
def test_unknown_event_type(pipeline, headers, provider):
    outcome = reject(pipeline, raw_record({"shop": "x"}, headers))
    assert outcome.reason == "unknown_event_type"
    assert outcome.provider == provider
    assert outcome.event_type is None
    assert provider in outcome.message
    assert outcome.field is None


# --- order of checks and attribution -------------------------------------------------------


def test_signature_is_checked_before_the_schema():
    body = dumps({"event": "points.redeemed", "data": {"nothing": True}})
    outcome = reject(SIGNED, raw_record(body, mage_headers(body, "wrong")))
    assert outcome.reason == "signature_invalid"
    outcome = reject(SIGNED, raw_record(body, mage_headers(body, MAGE_SECRET)))
    assert outcome.reason == "schema_violation"
    assert outcome.provider == "mage_loyalty"
    assert outcome.event_type == "points.redeemed"


def test_other_events_are_not_held_to_the_redemption_schema(pipeline):
    body = {"event": "points.earned", "data": {"points_earned": "lots", "order": [1, 2]}}
    outcome = pipeline.process(raw_record(body))
    assert outcome == Ignored(provider="mage_loyalty", event_type="points.earned")
    rivo_body = {"id": "not a number", "customer": None}
    headers = [("rivo-webhook-topic", b"referral/completed")]
    assert pipeline.process(raw_record(rivo_body, headers)) == Ignored(
        provider="rivo", event_type="referral/completed"
    )


def test_headers_outrank_body_hints():
    # A Rivo-shaped body delivered with Mage's headers is judged as Mage's.
    outcome = PLAIN.process(
        raw_record(payloads.rivo_seed_bytes(), [("User-Agent", b"MageLoyalty-Webhook/1.0")])
    )
    assert isinstance(outcome, Rejected)
    assert outcome.provider == "mage_loyalty"


def test_rejected_outcomes_compare_without_the_class_name():
    a = Rejected(reason="invalid_json", message="m", error_class="x")
    b = Rejected(reason="invalid_json", message="m", error_class="y")
    assert a == b


# --- lineage metadata ----------------------------------------------------------------------


def test_metadata_carries_the_records_coordinates(pipeline, fixed_now):
    record = RawRecord(value=payloads.rivo_seed_bytes(), topic="t.raw", partition=11, offset=2**40)
    outcome = pipeline.process(record)
    assert isinstance(outcome, Accepted)
    assert outcome.record["metadata"] == {
        "source_topic": "t.raw",
        "source_partition": 11,
        "source_offset": 2**40,
        "processed_at": fixed_now,
        "signature_verified": None,
        "consumer_version": "9.9.9-test",
    }


def test_metadata_defaults_for_the_offline_command():
    outcome = PLAIN.process(RawRecord(value=payloads.mage_seed_bytes()))
    assert isinstance(outcome, Accepted)
    metadata = outcome.record["metadata"]
    assert (metadata["source_topic"], metadata["source_partition"], metadata["source_offset"]) == (
        "",
        -1,
        -1,
    )
    assert metadata["consumer_version"] == consumer.__version__


def test_processed_at_is_whole_milliseconds_in_utc():
    clocked = Pipeline(clock=lambda: 1771416000.1239)
    outcome = clocked.process(raw_record(payloads.mage_seed_bytes()))
    processed_at = outcome.record["metadata"]["processed_at"]
    assert processed_at == datetime(2026, 2, 18, 12, 0, 0, 123000, tzinfo=UTC)
    assert processed_at.utcoffset() == timedelta(0)


def test_processed_at_follows_the_clock():
    times = iter([1000.0, 2000.5])
    clocked = Pipeline(clock=lambda: next(times))
    first = clocked.process(raw_record(payloads.mage_seed_bytes()))
    second = clocked.process(raw_record(payloads.mage_seed_bytes()))
    assert first.record["metadata"]["processed_at"] == datetime(1970, 1, 1, 0, 16, 40, tzinfo=UTC)
    assert second.record["metadata"]["processed_at"] == datetime(
        1970, 1, 1, 0, 33, 20, 500000, tzinfo=UTC
    )
    assert first.record["event_id"] == second.record["event_id"]


@pytest.mark.parametrize(
    ("provider", "body", "headers"),
    [
        (
            "mage_loyalty",
            payloads.mage_seed_bytes(),
            mage_headers(payloads.mage_seed_bytes(), MAGE_SECRET),
        ),
        (
            "rivo",
            payloads.rivo_seed_bytes(),
            rivo_documented_headers(payloads.rivo_seed_bytes(), RIVO_SECRET),
        ),
        (
            "rivo",
            payloads.rivo_seed_bytes(),
            rivo_wire_headers(payloads.rivo_seed_bytes(), RIVO_SECRET),
        ),
    ],
)
def test_signature_verified_true_when_verified(provider, body, headers):
    outcome = SIGNED.process(raw_record(body, headers))
    assert isinstance(outcome, Accepted)
    assert outcome.provider == provider
    assert outcome.record["metadata"]["signature_verified"] is True


def test_from_settings_uses_the_secrets_and_the_limit():
    settings_ = Settings(webhook_secrets={"rivo": (RIVO_SECRET,)}, max_payload_bytes=2000)
    pipeline = Pipeline.from_settings(settings_)
    seed = payloads.rivo_seed_bytes()
    assert len(seed) < 2000
    assert reject(pipeline, raw_record(seed)).reason == "signature_missing"
    accepted = pipeline.process(raw_record(seed, rivo_wire_headers(seed, RIVO_SECRET)))
    assert accepted.record["metadata"]["signature_verified"] is True
    big = seed + b" " * 2000
    assert reject(pipeline, raw_record(big)).reason == "payload_too_large"
    # Mage has no secret here: unsigned Mage records are accepted, unverified.
    mage = pipeline.process(raw_record(payloads.mage_seed_bytes()))
    assert mage.record["metadata"]["signature_verified"] is None


def test_the_record_in_hand_is_not_shared_between_outcomes(pipeline):
    first = pipeline.process(raw_record(payloads.rivo_seed_bytes()))
    first.record["customer"]["email"] = "changed"
    second = pipeline.process(raw_record(payloads.rivo_seed_bytes()))
    assert second.record["customer"]["email"] != "changed"


# --- crashes: inputs that escape as exceptions today ---------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        payloads.set_path(payloads.rivo_seed(), "credits_amount", "1e30"),
        payloads.set_path(payloads.rivo_seed(), "points_amount", "7" * 5000),
        payloads.set_path(payloads.mage_seed(), "data.shopify_customer_id", "7" * 5000),
        payloads.set_path(payloads.mage_seed(), "timestamp", "9999-12-31T23:59:59-01:00"),
    ],
    ids=["credits 1e30", "points 5000 digits", "customer id 5000 digits", "year 9999 -01:00"],
)
def test_known_crashing_inputs_end_in_a_rejection(body):
    outcome = PLAIN.process(raw_record(body))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "normalization_error"


# --- property-based -----------------------------------------------------------------------

# Every field name the raw schemas list: random keys include them so mutations hit
# real fields, and "extra" fields are drawn from outside them.
KNOWN_KEYS = tuple(sorted(raw_schema_keys()))
EVENT_NAMES = (
    "points.redeemed",
    "points.earned",
    "customer.tier_upgrade",
    "points_redemption/created",
    "points_event/created",
    "notification/reward_expiry_last_chance",
)
HEADER_NAMES = (
    "User-Agent",
    "X-Webhook-Event",
    "X-Webhook-Signature",
    "X-Webhook-Timestamp",
    "Rivo-Signature",
    "rivo-webhook-topic",
    "rivo-webhook-id",
    "rivo-webhook-timestamp",
    "rivo-webhook-signature",
    "X-Shop-Domain",
    "Content-Type",
)

# ISO 8601 spellings of instants well inside the calendar (the edges crash today: see
# test_known_crashing_inputs_end_in_a_rejection).
_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
iso_timestamps = st.builds(
    lambda moment, tz, style: {
        "z": moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "offset": moment.replace(tzinfo=tz).isoformat(),
        "naive": moment.isoformat(),
        "millis": moment.replace(tzinfo=UTC).isoformat(timespec="milliseconds"),
    }[style],
    st.datetimes(),
    _offsets,
    st.sampled_from(["z", "offset", "naive", "millis"]),
)
interesting_strings = st.sampled_from(
    [
        "",
        " ",
        "0",
        "0.0",
        "25.5",
        "-5",
        "500",
        "+7",
        "1e3",
        "NaN",
        "9007199254740993",
        "9223372036854775808",
        "gid://shopify/Customer/9876543210987",
        "points",
        "credits",
        "fixed_amount",
        "Jane@Example.com ",
        *EVENT_NAMES,
    ]
)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | interesting_strings
    | iso_timestamps
)
json_keys = st.sampled_from(KNOWN_KEYS) | st.text(string.ascii_letters + "_-", max_size=8)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=5)
    ),
    max_leaves=12,
)


def _spell(name: str, style: int) -> str:
    return (name, name.lower(), name.upper(), name.title())[style]


header_names = st.builds(_spell, st.sampled_from(HEADER_NAMES), st.integers(0, 3)) | st.text(
    max_size=10
)
header_values = (
    st.none()
    | st.binary(max_size=24)
    | st.sampled_from(
        [
            b"MageLoyalty-Webhook/1.0",
            b"sha256=00ff",
            b"v1,AAAA v1,bm9wZQ==",
            b"AAAA",
            b"msg_1",
            b"1745593716",
            *(name.encode() for name in EVENT_NAMES),
        ]
    )
)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=6)


def check_outcome(outcome) -> None:
    """What every outcome promises, whatever the input."""
    assert type(outcome) in (Accepted, Ignored, Rejected)
    # Shown by --hypothesis-show-statistics: how the inputs spread over the outcomes.
    label = type(outcome).__name__
    event(f"{label}:{outcome.reason}" if isinstance(outcome, Rejected) else label)
    if isinstance(outcome, Accepted):
        assert outcome.provider in PROVIDER_NAMES
        assert outcome.event_type == REDEMPTION_EVENTS[outcome.provider]
        assert outcome.record["provider"] == outcome.provider
        assert outcome.key == outcome.record["customer"]["shopify_customer_id"].encode()
        assert outcome.key.isdigit()
        assert outcome.event_id.startswith(outcome.provider + ":")
        assert validate(outcome.record, CANONICAL, raise_errors=True)
        decoded = CODEC.decode(CODEC.encode(outcome.record))
        assert decoded["event_id"] == outcome.record["event_id"]
        assert decoded["customer"] == outcome.record["customer"]
    elif isinstance(outcome, Ignored):
        assert outcome.provider in PROVIDER_NAMES
        assert outcome.event_type
        assert outcome.event_type != REDEMPTION_EVENTS[outcome.provider]
        assert outcome.reason == "not_a_redemption"
    else:
        assert outcome.reason in PIPELINE_REJECTION_REASONS
        assert isinstance(outcome.message, str) and outcome.message
        assert outcome.field is None or (isinstance(outcome.field, str) and outcome.field)
        assert outcome.provider is None or outcome.provider in PROVIDER_NAMES


@settings(max_examples=examples(400))
@given(value=st.none() | st.binary(max_size=300), headers=header_lists)
def test_arbitrary_bytes_never_raise(value, headers):
    for pipeline in (PLAIN, SIGNED):
        check_outcome(pipeline.process(RawRecord(value=value, headers=headers)))


@settings(max_examples=examples(400))
@given(body=json_values, headers=header_lists)
def test_arbitrary_json_never_raises(body, headers):
    value = dumps(body)
    for pipeline in (PLAIN, SIGNED):
        outcome = pipeline.process(RawRecord(value=value, headers=headers))
        check_outcome(outcome)
        if not isinstance(body, dict):
            assert outcome.reason == "invalid_json"


def _dict_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, child in node.items():
            yield (*prefix, key)
            yield from _dict_paths(child, (*prefix, key))


@st.composite
def mutated_seeds(draw) -> tuple[str, dict]:
    """A seed payload with a few fields replaced by random JSON, deleted, or added."""
    provider = draw(st.sampled_from(PROVIDER_NAMES))
    body = payloads.seed(provider)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(list(_dict_paths(body))))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[draw(json_keys)] = draw(json_values)
    return provider, body


@settings(max_examples=examples(500))
@given(seed=mutated_seeds(), headers=header_lists)
def test_mutated_seeds_never_raise(seed, headers):
    _, body = seed
    value = dumps(body)
    for pipeline in (PLAIN, SIGNED):
        check_outcome(pipeline.process(RawRecord(value=value, headers=headers)))


@settings(max_examples=examples(300))
@given(seed=mutated_seeds(), data=st.data())
def test_correctly_signed_records_never_fail_the_signature_check(seed, data):
    provider, body = seed
    value = dumps(body)
    sign = data.draw(st.sampled_from(REDEMPTION_SIGNERS[provider]))
    headers = sign(value, SECRETS[provider])
    outcome = SIGNED.process(RawRecord(value=value, headers=headers))
    check_outcome(outcome)
    if isinstance(outcome, Rejected):
        assert outcome.reason not in ("signature_missing", "signature_invalid")
        assert outcome.provider == provider
    if isinstance(outcome, Accepted):
        assert outcome.provider == provider
        assert outcome.record["metadata"]["signature_verified"] is True


@settings(max_examples=examples(300))
@given(seed=mutated_seeds())
def test_accepted_mutations_round_trip_to_the_millisecond(seed):
    _, body = seed
    outcome = PLAIN.process(raw_record(body))
    check_outcome(outcome)
    if isinstance(outcome, Accepted):
        # Timestamps compared to the millisecond: finer precision is lost in encoding
        # (test_schemas.py::test_round_trip_with_sub_millisecond_timestamps).
        assert CODEC.decode(CODEC.encode(outcome.record)) == _to_millis(outcome.record)


def _to_millis(value):
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {key: _to_millis(item) for key, item in value.items()}
    return value


RAW_SCHEMA_KEYS = raw_schema_keys()


@st.composite
def seeds_with_extra_fields(draw) -> tuple[dict, dict]:
    original = payloads.seed(draw(st.sampled_from(PROVIDER_NAMES)))
    body = copy.deepcopy(original)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        targets = [body, *(node for node in _nested_dicts(body))]
        target = draw(st.sampled_from(targets))
        key = draw(
            st.text(string.ascii_lowercase + "_", min_size=1, max_size=10).filter(
                lambda k, target=target: k not in RAW_SCHEMA_KEYS and k not in target
            )
        )
        target[key] = draw(json_values)
    return original, body


def _nested_dicts(node):
    for child in node.values():
        if isinstance(child, dict):
            yield child
            yield from _nested_dicts(child)


@settings(max_examples=examples(300))
@given(seeds_with_extra_fields())
def test_unknown_extra_fields_never_cause_a_rejection(case):
    original, with_extras = case
    expected = STILL.process(raw_record(original))
    outcome = STILL.process(raw_record(with_extras))
    assert isinstance(outcome, Accepted)
    assert outcome.record == expected.record


@settings(max_examples=examples(200))
@given(
    indent=st.none() | st.integers(min_value=0, max_value=4),
    sort_keys=st.booleans(),
    ensure_ascii=st.booleans(),
    timestamp=st.sampled_from(
        [
            "2026-02-18T12:00:00.000Z",
            "2026-02-18T12:00:00Z",
            "2026-02-18T14:00:00+02:00",
            "2026-02-18T12:00:00.000000+00:00",
        ]
    ),
)
def test_mage_redelivery_keeps_its_event_id(indent, sort_keys, ensure_ascii, timestamp):
    body = payloads.set_path(payloads.mage_seed(), "timestamp", timestamp)
    value = json.dumps(body, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    outcome = PLAIN.process(raw_record(value.encode()))
    original = PLAIN.process(raw_record(payloads.mage_seed_bytes()))
    assert outcome.event_id == original.event_id


@settings(max_examples=examples(200))
@given(body=json_values.filter(lambda v: isinstance(v, dict)), headers=header_lists)
def test_the_record_and_headers_are_not_modified(body, headers):
    value = dumps(body)
    frozen_headers = [(name, value_) for name, value_ in headers]
    record = RawRecord(value=value, headers=headers)
    PLAIN.process(record)
    assert record.value == value
    assert list(record.headers) == frozen_headers
