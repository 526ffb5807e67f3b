"""The service on the real broker: every record ends where the contract says."""

from __future__ import annotations

import io

import orjson
from fastavro import schemaless_reader

from consumer import dead_letter
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from consumer.dev.signing import rivo_documented_headers
from consumer.reader import RedemptionReader
from consumer.schemas import CANONICAL_SCHEMA_FILE, SingleObjectCodec, load_schema
from tests.helpers import payloads
from tests.integration.service_harness import (
    everything_committed,
    produce_all,
    read_all,
    service_settings,
    start_service,
    wait_until,
)

PARTITIONS = 3


def _topics(new_topic):
    return new_topic("raw", PARTITIONS), new_topic("clean", PARTITIONS), new_topic("dlq", 1)


def test_every_sample_ends_where_the_contract_says(kafka_bootstrap_servers, new_topic, group_id):
    raw, clean, dlq = _topics(new_topic)
    samples = sample_webhooks()
    produce_all(kafka_bootstrap_servers, raw, ((s.value, s.headers) for s in samples))
    settings = service_settings(
        kafka_bootstrap_servers, raw, clean, dlq, group_id, secrets=LOCAL_SECRETS
    )

    service = start_service(settings)
    expected_accepted = sum(s.expected == "accepted" for s in samples)
    expected_ignored = sum(s.expected == "ignored" for s in samples)
    expected_rejected = len(samples) - expected_accepted - expected_ignored
    wait_until(
        lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, PARTITIONS),
        "every raw offset committed",
    )
    service.stop()

    assert service.consumed() == len(samples)
    assert service.outcome_total("accepted") == expected_accepted
    assert service.outcome_total("ignored") == expected_ignored
    assert service.outcome_total("rejected") == expected_rejected
    assert (
        service.outcome_total("accepted")
        + service.outcome_total("ignored")
        + service.outcome_total("rejected")
        == service.consumed()
    )

    clean_records = read_all(kafka_bootstrap_servers, clean, expected_accepted)
    assert len(clean_records) == expected_accepted
    codec = SingleObjectCodec()
    decoded = {}
    for message in clean_records:
        record = codec.decode(message.value())
        headers = dict(message.headers())
        assert message.key() == record["customer"]["shopify_customer_id"].encode()
        assert headers["provider"] == record["provider"].encode()
        assert headers["event_id"] == record["event_id"].encode()
        assert headers["event_type"] == record["provider_event_type"].encode()
        assert record["metadata"]["source_topic"] == raw
        assert record["metadata"]["signature_verified"] is True
        decoded[record["event_id"]] = record
    assert set(decoded) == {
        "mage_loyalty:027ef58a12c09fd031d5d225927cc1214aa9909ef80f5b6ee0da3ac75b642dbb",
        "rivo:1234567",
        "rivo:1234568",
    }
    credits = decoded["rivo:1234568"]
    assert credits["source"] == "credits"
    assert credits["credits_redeemed"] == "25.50"
    assert credits["shop"] == "my-store.myshopify.com"

    dead = read_all(kafka_bootstrap_servers, dlq, expected_rejected)
    assert len(dead) == expected_rejected
    rejected_samples = [s for s in samples if s.expected not in ("accepted", "ignored")]
    for message in dead:
        headers = message.headers()
        added = dict(headers)
        # Raw value and original headers byte for byte, original headers first.
        (sample,) = [
            s
            for s in rejected_samples
            if s.value == message.value() and headers[: len(s.headers)] == list(s.headers)
        ]
        assert added[dead_letter.REASON].decode() == sample.expected
        assert added[dead_letter.CONNECT_TOPIC] == raw.encode()
        assert int(added[dead_letter.CONNECT_OFFSET]) >= 0
        assert int(added[dead_letter.CONNECT_PARTITION]) in range(PARTITIONS)
        assert added[dead_letter.CONNECT_EXCEPTION_MESSAGE]
        assert added[dead_letter.CONNECT_EXCEPTION_CLASS].startswith(b"consumer.errors.")
        assert added[dead_letter.FAILED_AT].endswith(b"Z")
    assert sorted(dict(m.headers())[dead_letter.REASON].decode() for m in dead) == sorted(
        s.expected for s in rejected_samples
    )
    assert service.value("loyalty_dead_letter_records_total", reason="invalid_json") == 1


def rivo_redemptions(count: int, first_id: int = 5_000_000):
    """`count` distinct, validly signed Rivo redemptions."""
    template = orjson.loads(payloads.rivo_seed_bytes())
    for n in range(count):
        template["id"] = first_id + n
        template["customer"]["id"] = 9_000_000_000_000 + n % 50
        body = orjson.dumps(template)
        yield (
            body,
            rivo_documented_headers(LOCAL_SECRETS["rivo"], body, "points_redemption/created"),
        )


def test_a_consumer_stopped_mid_stream_and_restarted_loses_nothing(
    kafka_bootstrap_servers, new_topic, group_id
):
    raw, clean, dlq = _topics(new_topic)
    total = 3000
    produce_all(kafka_bootstrap_servers, raw, rivo_redemptions(total))
    settings = service_settings(
        kafka_bootstrap_servers, raw, clean, dlq, group_id, secrets=LOCAL_SECRETS, batch_size=100
    )

    first = start_service(settings)
    wait_until(lambda: first.consumed() >= 500, "the first run to get going")
    first.stop()
    assert first.consumed() < total, "the first run should stop mid-stream"

    second = start_service(settings)
    wait_until(
        lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, PARTITIONS),
        "every raw offset committed after the restart",
    )
    second.stop()

    produced_ids = {f"rivo:{5_000_000 + n}" for n in range(total)}
    clean_ids = [
        dict(m.headers())["event_id"].decode()
        for m in read_all(kafka_bootstrap_servers, clean, total)
    ]
    assert set(clean_ids) == produced_ids
    # A clean stop flushes and commits everything it read, so the restart repeats nothing;
    # each consumption produced exactly one clean record.
    assert len(clean_ids) == total
    assert first.consumed() + second.consumed() == total


def test_a_clean_record_decodes_with_the_canonical_schema(
    kafka_bootstrap_servers, new_topic, group_id
):
    raw, clean, dlq = _topics(new_topic)
    body = payloads.rivo_seed_bytes()
    produce_all(kafka_bootstrap_servers, raw, [(body, [("X-Shop-Domain", b"shop.example")])])
    service = start_service(service_settings(kafka_bootstrap_servers, raw, clean, dlq, group_id))
    wait_until(lambda: service.outcome_total("accepted") == 1, "the record to be accepted")
    service.stop()

    (message,) = read_all(kafka_bootstrap_servers, clean, 1)
    value = message.value()
    codec = SingleObjectCodec()
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == codec.fingerprint
    # A downstream reader needs nothing of this package: the schema file and fastavro.
    record = schemaless_reader(io.BytesIO(value[10:]), load_schema(CANONICAL_SCHEMA_FILE), None)
    assert record["event_id"] == "rivo:1234567"
    assert record["provider"] == "rivo"
    assert record["shop"] == "shop.example"
    assert record["customer"]["shopify_customer_id"] == "9876543210987"
    assert record["points_redeemed"] == 500
    assert record["credits_redeemed"] == "0.00"
    assert record["reward"]["type"] == "fixed_amount"
    assert record["occurred_at"].isoformat() == "2025-04-25T15:08:36.223000+00:00"
    assert record["metadata"]["signature_verified"] is None
    assert RedemptionReader().decode(value) == record
