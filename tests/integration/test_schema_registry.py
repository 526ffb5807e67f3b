"""With a schema registry configured: Confluent wire format, subject <clean>-value.

Runs against a real Confluent-API-compatible registry (Apicurio Registry, from Maven
Central) that the tests start themselves."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from consumer.reader import RedemptionReader
from consumer.schemas import CANONICAL_SCHEMA_FILE, SCHEMA_PACKAGE, package_schemas
from tests.helpers.payloads import MAGE_SEED_FILE as MAGE_SEED
from tests.helpers.payloads import RIVO_SEED_FILE as RIVO_SEED
from tests.integration.schema_registry import LocalSchemaRegistry
from tests.integration.service_harness import (
    produce_all,
    read_all,
    service_settings,
    start_service,
    wait_until,
)

# The canonical schema of the first release, 0.2.0, as a downstream job built then has it.
RELEASED_0_2_0 = "history/loyalty_redemption.v1.avsc"


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


@pytest.fixture
def schema_dir_with_a_new_provider(tmp_path) -> Path:
    """The packaged schemas after a provider symbol is added to the canonical enum (what
    adding a provider does to the schema): a new writer schema."""
    packaged = Path(str(resources.files(SCHEMA_PACKAGE)))
    shutil.copytree(packaged, tmp_path, dirs_exist_ok=True)
    canonical = orjson.loads((tmp_path / CANONICAL_SCHEMA_FILE).read_bytes())
    provider = next(f for f in canonical["fields"] if f["name"] == "provider")["type"]
    provider["symbols"].insert(provider["symbols"].index("other"), "acme_rewards")
    (tmp_path / CANONICAL_SCHEMA_FILE).write_bytes(orjson.dumps(canonical))
    return tmp_path


def test_a_reader_on_the_0_2_0_schema_reads_records_written_after_a_provider_is_added(
    kafka_bootstrap_servers, new_topic, group_id, registry_url, schema_dir_with_a_new_provider
):
    """Through the registry, a reader built on the released schema reads every record
    the changed writer writes: the existing providers' as they are, the new provider's
    symbol as the enum's default, 'other'. (Without a registry it could not: see
    tests/unit/test_schema_evolution.py, "upgrade readers before writers".)"""
    raw, clean, dlq = new_topic("raw"), new_topic("clean", 1), new_topic("dlq", 1)
    produce_all(
        kafka_bootstrap_servers, raw, [(MAGE_SEED.read_bytes(), []), (RIVO_SEED.read_bytes(), [])]
    )
    settings = service_settings(
        kafka_bootstrap_servers,
        raw,
        clean,
        dlq,
        group_id,
        schema_registry_url=registry_url,
        schema_dir=schema_dir_with_a_new_provider,
    )
    service = start_service(settings)
    wait_until(lambda: service.outcome_total("accepted") == 2, "both records accepted")
    service.stop()

    # A record of the new provider, written as the changed service writes its records.
    client = SchemaRegistryClient({"url": registry_url})
    changed_text = (schema_dir_with_a_new_provider / CANONICAL_SCHEMA_FILE).read_text()
    current_reader = RedemptionReader(registry_url, clean)
    written = read_all(kafka_bootstrap_servers, clean, 2)
    new_provider_record = current_reader.decode(written[0].value()) | {
        "provider": "acme_rewards",
        "event_id": "acme_rewards:77",
    }
    serializer = AvroSerializer(client, changed_text)
    producer = Producer({"bootstrap.servers": kafka_bootstrap_servers})
    producer.produce(
        clean,
        value=serializer(new_provider_record, SerializationContext(clean, MessageField.VALUE)),
    )
    assert producer.flush(30) == 0

    messages = read_all(kafka_bootstrap_servers, clean, 3)
    changed = client.get_latest_version(f"{clean}-value")
    assert "acme_rewards" in changed.schema.schema_str
    assert {struct.unpack(">bI", m.value()[:5])[1] for m in messages} == {changed.schema_id}

    released_reader = RedemptionReader(registry_url, clean, reader_schema_file=RELEASED_0_2_0)
    records = [released_reader.decode(message.value()) for message in messages]
    assert sorted(record["provider"] for record in records) == ["mage_loyalty", "other", "rivo"]
    by_provider = {record["provider"]: record for record in records}
    assert by_provider["other"]["event_id"] == "acme_rewards:77"
    assert by_provider["mage_loyalty"]["points_redeemed"] == 500
    assert by_provider["rivo"]["event_id"].startswith("rivo:")
