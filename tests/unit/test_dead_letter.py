"""consumer.dead_letter: the headers of a dead-lettered record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer import dead_letter
from consumer.dead_letter import dead_letter_headers
from consumer.pipeline import Pipeline
from consumer.records import RawRecord, Rejected
from tests.helpers import payloads

FAILED_AT = datetime(2026, 2, 18, 12, 0, 1, 250000, tzinfo=UTC)
ORIGINAL = [
    ("User-Agent", b"MageLoyalty-Webhook/1.0"),
    ("X-Webhook-Signature", b"sha256=ab"),
    ("x-webhook-signature", b"sha256=cd"),  # repeated name, other case: kept as is
    ("X-Empty", b""),
    ("X-Null", None),
    ("X-Binary", b"\x00\xff\xfe not utf-8"),
]
RAW = RawRecord(
    value=b'{"event": "points.redeemed"}', headers=ORIGINAL, topic="raw", partition=4, offset=99
)
REJECTED = Rejected(
    reason="schema_violation",
    message="data: required field is missing or null",
    field="data",
    provider="mage_loyalty",
    event_type="points.redeemed",
    error_class="consumer.errors.SchemaViolation",
)


def test_original_headers_come_first_byte_for_byte_in_order():
    headers = dead_letter_headers(RAW, REJECTED, FAILED_AT, "1.2.3")
    assert headers[: len(ORIGINAL)] == ORIGINAL
    for (name, value), (original_name, original_value) in zip(headers, ORIGINAL, strict=False):
        assert name == original_name
        assert value is original_value or value == original_value


def test_added_headers_and_their_values():
    added = dead_letter_headers(RAW, REJECTED, FAILED_AT, "1.2.3")[len(ORIGINAL) :]
    assert added == [
        ("__connect.errors.topic", b"raw"),
        ("__connect.errors.partition", b"4"),
        ("__connect.errors.offset", b"99"),
        ("__connect.errors.exception.class.name", b"consumer.errors.SchemaViolation"),
        ("__connect.errors.exception.message", b"data: required field is missing or null"),
        ("loyalty.error.reason", b"schema_violation"),
        ("loyalty.error.field", b"data"),
        ("loyalty.error.provider", b"mage_loyalty"),
        ("loyalty.error.event_type", b"points.redeemed"),
        ("loyalty.error.failed_at", b"2026-02-18T12:00:01.250Z"),
        ("loyalty.error.consumer_version", b"1.2.3"),
        ("loyalty.error.value_omitted_bytes", b""),
        ("loyalty.error.headers_omitted_bytes", b""),
    ]
    assert [name for name, _ in added] == list(dead_letter.SERVICE_HEADERS)


def test_header_names_are_connects_where_the_meaning_matches():
    assert dead_letter.CONNECT_TOPIC == "__connect.errors.topic"
    assert dead_letter.CONNECT_PARTITION == "__connect.errors.partition"
    assert dead_letter.CONNECT_OFFSET == "__connect.errors.offset"
    assert dead_letter.CONNECT_EXCEPTION_CLASS == "__connect.errors.exception.class.name"
    assert dead_letter.CONNECT_EXCEPTION_MESSAGE == "__connect.errors.exception.message"


def test_headers_that_do_not_apply_are_written_empty():
    early = Rejected(reason="invalid_json", message="not UTF-8 JSON", error_class="x.InvalidJson")
    headers = dict(dead_letter_headers(RawRecord(value=b"{"), early, FAILED_AT, "1.2.3"))
    for name in (
        "loyalty.error.field",
        "loyalty.error.provider",
        "loyalty.error.event_type",
        "loyalty.error.value_omitted_bytes",
        "loyalty.error.headers_omitted_bytes",
    ):
        assert headers[name] == b""
    assert headers["loyalty.error.reason"] == b"invalid_json"
    assert headers["__connect.errors.partition"] == b"-1"
    assert headers["__connect.errors.offset"] == b"-1"


def test_every_added_value_is_bytes():
    for name, value in dead_letter_headers(RAW, REJECTED, FAILED_AT, "1.2.3")[len(ORIGINAL) :]:
        assert isinstance(name, str)
        assert isinstance(value, bytes)


def test_non_ascii_message_is_utf8():
    rejected = Rejected(reason="normalization_error", message="reward.name: «absent»")
    headers = dict(dead_letter_headers(RAW, rejected, FAILED_AT, "1"))
    assert headers["__connect.errors.exception.message"] == "reward.name: «absent»".encode()


def test_the_raw_record_is_not_modified():
    before = list(RAW.headers)
    dead_letter_headers(RAW, REJECTED, FAILED_AT, "1.2.3")
    assert list(RAW.headers) == before


@pytest.mark.parametrize(
    ("body", "headers", "reason", "field"),
    [
        (b"[]", [], "invalid_json", None),
        (
            payloads.mage_seed_bytes().replace(b'"timestamp"', b'"ts"'),
            [],
            "schema_violation",
            "timestamp",
        ),
    ],
)
def test_headers_for_a_pipeline_rejection(body, headers, reason, field):
    raw = RawRecord(value=body, headers=headers, topic="raw", partition=0, offset=5)
    outcome = Pipeline().process(raw)
    assert isinstance(outcome, Rejected)
    added = dict(dead_letter_headers(raw, outcome, FAILED_AT, "1.2.3"))
    assert added["loyalty.error.reason"] == reason.encode()
    assert added["__connect.errors.exception.message"] == outcome.message.encode()
    assert added["__connect.errors.exception.class.name"].startswith(b"consumer.errors.")
    if field is None:
        assert added["loyalty.error.field"] == b""
    else:
        assert added["loyalty.error.field"] == field.encode()


header_lists = st.lists(
    st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=16)), max_size=8
)


@given(headers=header_lists, field=st.none() | st.text(min_size=1, max_size=10))
def test_original_headers_always_kept_first(headers, field):
    raw = RawRecord(value=b"x", headers=headers, topic="t", partition=1, offset=2)
    rejected = Rejected(reason="invalid_json", message="m", field=field, error_class="c")
    out = dead_letter_headers(raw, rejected, FAILED_AT, "v")
    assert out[: len(headers)] == headers
    added = out[len(headers) :]
    assert [name for name, _ in added] == list(dead_letter.SERVICE_HEADERS)
    assert dict(added)["loyalty.error.field"] == (field or "").encode()


SPOOFED = [(name, b"spoofed") for name in dead_letter.SERVICE_HEADERS]


def test_spoofed_service_headers_are_kept_but_the_last_occurrence_is_the_services():
    """An upstream record may carry the service's own header names. They stay, byte for
    byte (the original headers are evidence), and the service's value of every one of
    them, empty where it does not apply, comes last, where readers look."""
    early = Rejected(reason="invalid_json", message="m", error_class="c")
    raw = RawRecord(value=b"{", headers=SPOOFED, topic="raw", partition=0, offset=1)
    out = dead_letter_headers(raw, early, FAILED_AT, "v")
    assert out[: len(SPOOFED)] == SPOOFED
    last = dict(out)  # the last occurrence of each name
    assert last["loyalty.error.provider"] == b""
    assert last["loyalty.error.field"] == b""
    assert last["loyalty.error.value_omitted_bytes"] == b""
    assert last["__connect.errors.topic"] == b"raw"
    assert all(value != b"spoofed" for value in last.values())


def test_value_and_headers_omitted():
    raw = RawRecord(value=b"x" * 10, headers=ORIGINAL, topic="raw", partition=0, offset=1)
    without_value = dead_letter_headers(raw, REJECTED, FAILED_AT, "v", value_omitted_bytes=10)
    assert without_value[: len(ORIGINAL)] == ORIGINAL
    assert dict(without_value)["loyalty.error.value_omitted_bytes"] == b"10"
    assert dict(without_value)["loyalty.error.headers_omitted_bytes"] == b""
    without_both = dead_letter_headers(
        raw, REJECTED, FAILED_AT, "v", value_omitted_bytes=10, headers_omitted_bytes=77
    )
    assert [name for name, _ in without_both] == list(dead_letter.SERVICE_HEADERS)
    assert dict(without_both)["loyalty.error.headers_omitted_bytes"] == b"77"
