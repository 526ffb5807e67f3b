"""For downstream consumers: decode a clean-topic value in either wire format.

    from consumer.reader import RedemptionReader
    reader = RedemptionReader(registry_url=None)      # or "http://registry:8081"
    record = reader.decode(message.value())           # dict per schemas/loyalty_redemption.avsc

Confluent wire format (first byte 0, then a 4-byte schema id) is resolved through the
schema registry; Avro single-object encoding (C3 01 + fingerprint) against schemas/.
"""

from __future__ import annotations

from typing import Any

from consumer.schemas import SINGLE_OBJECT_MARKER, SingleObjectCodec

CONFLUENT_MAGIC_BYTE = 0


class RedemptionReader:
    def __init__(self, registry_url: str | None = None, topic: str = "") -> None:
        self._codec = SingleObjectCodec()
        self._deserializer = None
        self._topic = topic
        if registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            self._deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))

    def decode(self, value: bytes) -> dict[str, Any]:
        if value[:2] == SINGLE_OBJECT_MARKER:
            return self._codec.decode(value)
        if value[:1] == bytes([CONFLUENT_MAGIC_BYTE]):
            if self._deserializer is None:
                raise ValueError("Confluent wire format needs a schema registry URL")
            from confluent_kafka.serialization import MessageField, SerializationContext

            return self._deserializer(value, SerializationContext(self._topic, MessageField.VALUE))
        raise ValueError("neither Avro single-object encoding nor Confluent wire format")
