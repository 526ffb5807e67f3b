"""With a schema registry configured: Confluent wire format, subject <clean>-value.

Runs against a real Confluent-API-compatible registry (Apicurio Registry, from Maven
Central) that the tests start themselves."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.reader import RedemptionReader
from consumer.samples import MAGE_SEED
from tests.integration.schema_registry import LocalSchemaRegistry
from tests.integration.service_harness import (
    produce_all,
    read_all,
    service_settings,
    start_service,
    wait_until,
)


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    with LocalSchemaRegistry() as registry:
        yield registry.url


def test_clean_records_use_the_confluent_wire_format(
    kafka_bootstrap_servers, new_topic, group_id, registry_url
):
    raw, clean, dlq = new_topic("raw"), new_topic("clean"), new_topic("dlq", 1)
    produce_all(kafka_bootstrap_servers, raw, [(MAGE_SEED.read_bytes(), [])] * 2)
    settings = service_settings(
        kafka_bootstrap_servers, raw, clean, dlq, group_id, schema_registry_url=registry_url
    )
    service = start_service(settings)
    wait_until(lambda: service.outcome_total("accepted") == 2, "both records accepted")
    service.stop()

    registered = SchemaRegistryClient({"url": registry_url}).get_latest_version(f"{clean}-value")
    assert registered.schema.schema_type in (None, "AVRO")
    assert "LoyaltyRedemption" in registered.schema.schema_str

    messages = read_all(kafka_bootstrap_servers, clean, 2)
    assert len(messages) == 2
    reader = RedemptionReader(registry_url, clean)
    for message in messages:
        value = message.value()
        magic, schema_id = struct.unpack(">bI", value[:5])
        assert magic == 0
        assert schema_id == registered.schema_id
        record = reader.decode(value)
        assert record["provider"] == "mage_loyalty"
        assert record["customer"]["shopify_customer_id"] == "6789012345"
        assert record["points_redeemed"] == 500
    # A redelivered webhook keeps its event_id: the downstream de-duplication key.
    assert len({reader.decode(m.value())["event_id"] for m in messages}) == 1
