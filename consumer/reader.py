"""For downstream consumers: decode a clean-topic value in either wire format.

    from consumer.reader import RedemptionReader
    reader = RedemptionReader(registry_url=None)      # or "http://registry:8081"
    record = reader.decode(message.value())           # dict per the reader schema

The reader schema is the current canonical schema unless another is named (say, the
archived version a downstream job was built on: "history/loyalty_redemption.v1.avsc").
Records are read with Avro schema resolution from whatever schema wrote them:
- Avro single-object encoding (C3 01 + fingerprint): the writer schema is found by its
  fingerprint among every released version shipped in the package;
- Confluent wire format (byte 0, then a 4-byte schema id): the writer schema comes from
  the schema registry.

So through the registry (the production mode) a reader built on any released version
reads records written with a newer one: a provider symbol it does not know reads as
'other', a field it does not know is skipped. In single-object mode a reader knows only
the versions it ships with, and a record written with a newer one is refused, saying
so: upgrade readers before writers.
"""

from __future__ import annotations

from typing import Any

from consumer.schemas import (
    CANONICAL_SCHEMA_FILE,
    SINGLE_OBJECT_MARKER,
    SingleObjectCodec,
    package_schemas,
)

CONFLUENT_MAGIC_BYTE = 0


class RedemptionReader:
    def __init__(
        self,
        registry_url: str | None = None,
        topic: str = "",
        reader_schema_file: str = CANONICAL_SCHEMA_FILE,
    ) -> None:
        schemas = package_schemas()
        self._codec = SingleObjectCodec(schemas.load(reader_schema_file))
        self._deserializer = None
        self._topic = topic
        if registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            # The registry's writer schema, resolved into the reader's shape.
            self._deserializer = AvroDeserializer(
                SchemaRegistryClient({"url": registry_url}), schemas.text(reader_schema_file)
            )

    def decode(self, value: bytes) -> dict[str, Any]:
        if value[:2] == SINGLE_OBJECT_MARKER:
            return self._codec.decode(value)
        if value[:1] == bytes([CONFLUENT_MAGIC_BYTE]):
            if self._deserializer is None:
                raise ValueError("Confluent wire format needs a schema registry URL")
            from confluent_kafka.serialization import MessageField, SerializationContext

            return self._deserializer(value, SerializationContext(self._topic, MessageField.VALUE))
        raise ValueError("neither Avro single-object encoding nor Confluent wire format")
