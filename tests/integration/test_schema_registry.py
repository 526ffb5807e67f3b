"""With a schema registry configured: Confluent wire format, subject <clean>-value.

Runs against a real Confluent-API-compatible registry (Apicurio Registry, from Maven
Central) that the tests start themselves."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.reader import RedemptionReader
from consumer.schemas import CANONICAL_SCHEMA_FILE, package_schemas
from tests.helpers.payloads import MAGE_SEED_FILE as MAGE_SEED
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


def test_the_current_schema_is_full_transitive_compatible_in_the_registry(registry_url):
    """The registry's own compatibility check, as a production registry would run it
    on the service's first registration of a new version."""
    client = SchemaRegistryClient({"url": registry_url})
    subject = "compatibility-check-value"
    client.set_compatibility(subject, "FULL_TRANSITIVE")
    library = package_schemas()
    versions = []
    for number, _ in library.canonical_history().items():
        text = library.text(f"history/loyalty_redemption.v{number}.avsc")
        client.register_schema(subject, Schema(text, "AVRO"))
        versions.append(client.get_latest_version(subject).version)

    current = Schema(library.text(CANONICAL_SCHEMA_FILE), "AVRO")
    for version in versions:
        assert client.test_compatibility(subject, current, version=version)
    client.register_schema(subject, current)

    # The check is not vacuous: a field without a default breaks old data for new readers.
    broken = orjson.loads(library.text(CANONICAL_SCHEMA_FILE))
    broken["fields"].append({"name": "channel", "type": "string", "doc": "no default"})
    incompatible = Schema(orjson.dumps(broken).decode(), "AVRO")
    assert not client.test_compatibility(subject, incompatible, version=versions[-1])
    with pytest.raises(SchemaRegistryError):
        client.register_schema(subject, incompatible)
