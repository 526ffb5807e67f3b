"""consumer.records: header lookup and the outcome types."""

from __future__ import annotations

import dataclasses

import pytest

from consumer.records import Accepted, Ignored, RawRecord, Rejected, header_lookup


def test_header_names_are_lower_cased():
    assert header_lookup([("X-Webhook-Event", b"points.redeemed"), ("RIVO-SIGNATURE", b"x")]) == {
        "x-webhook-event": "points.redeemed",
        "rivo-signature": "x",
    }


def test_first_occurrence_of_a_name_wins_whatever_its_case():
    headers = [("X-Shop-Domain", b"first"), ("x-shop-domain", b"second"), ("X-SHOP-DOMAIN", b"3")]
    assert header_lookup(headers) == {"x-shop-domain": "first"}


def test_none_values_are_skipped_not_counted_as_first():
    assert header_lookup([("X-Shop-Domain", None), ("x-shop-domain", b"kept")]) == {
        "x-shop-domain": "kept"
    }


def test_values_are_decoded_as_utf8_with_replacement():
    assert header_lookup([("a", "café".encode()), ("b", b"\xff")]) == {"a": "café", "b": "\ufffd"}


def test_empty_headers():
    assert header_lookup([]) == {}


def test_raw_record_defaults():
    record = RawRecord(value=b"{}")
    assert (record.headers, record.topic, record.partition, record.offset) == ((), "", -1, -1)
    assert record.timestamp_ms is None and record.key is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.value = b"[]"  # type: ignore[misc]


def test_accepted_key_and_event_id():
    accepted = Accepted(
        record={"event_id": "rivo:1", "customer": {"shopify_customer_id": "9876543210987"}},
        provider="rivo",
        event_type="points_redemption/created",
    )
    assert accepted.key == b"9876543210987"
    assert accepted.event_id == "rivo:1"


def test_ignored_reason():
    assert Ignored(provider="rivo", event_type="referral/completed").reason == "not_a_redemption"


def test_rejected_defaults():
    rejected = Rejected(reason="invalid_json", message="not JSON")
    assert (rejected.field, rejected.provider, rejected.event_type, rejected.error_class) == (
        None,
        None,
        None,
        "",
    )
