"""Everything that touches confluent-kafka apart from the loop itself: client
construction, Message -> RawRecord, the clean-record encoder, produce with back-pressure,
the delivery reports, and the output topics' size limits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from consumer.config import Settings
from consumer.errors import DeliveryFailed, TopicUnavailable
from consumer.kafka_errors import (
    client_cannot_continue,
    configuration_refused,
    delivery_failed,
    nothing_to_commit,
    stops_the_service,
    topic_unreachable,
)
from consumer.logs import RepeatFilter
from consumer.metrics import Metrics
from consumer.records import HeaderList, RawRecord
from consumer.schemas import SingleObjectCodec, schema_library

log = logging.getLogger(__name__)
# librdkafka's own logs and the clients' error callbacks: while a broker is unreachable
# they repeat several times a second per client, so repeats are collapsed.
client_log = logging.getLogger("consumer.kafka")
client_log.addFilter(RepeatFilter(window_seconds=30.0))

# How long output_limits() waits for the topics' configuration at start-up.
LIMITS_TIMEOUT_SECONDS = 10.0
# Kafka's default max.message.bytes (message.max.bytes on the broker), assumed for a
# topic whose configuration cannot be read.
BROKER_DEFAULT_MESSAGE_BYTES = 1_048_588
# A record's framing in a v2 batch (length, attributes, deltas, varints) and a header's,
# rounded up; plus the batch header for a record alone in its batch.
RECORD_FRAMING_BYTES = 128
HEADER_FRAMING_BYTES = 10

# How long produce() waits for librdkafka to drain its queue when the queue is full.
# Serving delivery reports is what frees the space, so each wait also serves them.
BACKPRESSURE_POLL_SECONDS = 0.1

Encoder = Callable[[Mapping[str, Any]], bytes]


def topic_partitions(
    consumer: Consumer, topic: str, bootstrap: str | None, timeout: float
) -> list[int]:
    """The topic's partition numbers, for the operators' commands (replay, tail)."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise topic_unreachable(bootstrap, exc) from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise TopicUnavailable(f"the topic {topic} does not exist")
    return sorted(described.partitions)


def to_raw_record(message: Message) -> RawRecord:
    _, timestamp_ms = message.timestamp()
    return RawRecord(
        value=message.value(),
        headers=message.headers() or (),
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        timestamp_ms=timestamp_ms if timestamp_ms >= 0 else None,
        key=message.key(),
    )


def clean_record_encoder(settings: Settings) -> Encoder:
    """Confluent wire format through the registry when one is configured (subject
    '<clean topic>-value', registered at start-up, see registry_encoder.py); Avro
    single-object encoding otherwise, whose fingerprint a reader resolves against the
    archived schemas."""
    if settings.schema_registry_url:
        from consumer.registry_encoder import RegistryEncoder

        return RegistryEncoder(settings)
    return SingleObjectCodec(schema_library(settings.schema_dir).canonical()).encode


def produce(
    producer: Producer,
    topic: str,
    on_queue_full: Callable[[], None] = lambda: None,
    **message: Any,
) -> None:
    """Produce, waiting for queue space rather than dropping when librdkafka is full.
    The wait is bounded by librdkafka: every queued record is acknowledged or fails
    within message.timeout.ms; `on_queue_full` runs before each wait."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:
            on_queue_full()
            producer.poll(BACKPRESSURE_POLL_SECONDS)


class DeliveryReports:
    """The producer's delivery reports, which arrive only for failures
    (`delivery.report.only.error`): no callback per record on the happy path. The first
    failure is kept; a checkpoint raises it instead of committing past it."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.first_failure: DeliveryFailed | None = None

    def on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            return
        topic = message.topic()
        self._metrics.delivery_errors.labels(topic).inc()
        log.error(
            "delivery failed",
            extra={"output_topic": topic, "partition": message.partition(), "error": error.str()},
        )
        if self.first_failure is None:
            self.first_failure = delivery_failed(topic, error)

    def raise_first_failure(self) -> None:
        if self.first_failure is not None:
            raise self.first_failure


def record_size(key: bytes | None, value: bytes | None, headers: HeaderList) -> int:
    """A record's size as the producer's message.max.bytes check and the broker's
    max.message.bytes see it, rounded up by the record's own framing."""
    size = RECORD_FRAMING_BYTES + len(key or b"") + len(value or b"")
    for name, header_value in headers:
        size += len(name) + len(header_value or b"") + HEADER_FRAMING_BYTES
    return size


def output_limits(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """The largest record each output topic takes: the smaller of the producer's
    message.max.bytes and the topic's max.message.bytes (read once, at start-up, so a
    record over it is dead-lettered as output_too_large instead of being refused by the
    broker on every restart). When the topic's limit cannot be read (no DescribeConfigs
    permission), the broker's default is assumed and said."""
    producer_limit = int(settings.producer_config()["message.max.bytes"])
    admin = AdminClient(settings.client_config({}, "producer"), logger=client_log)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
    limits: dict[str, int] = {}
    for resource, future in admin.describe_configs(
        resources, request_timeout=LIMITS_TIMEOUT_SECONDS
    ).items():
        topic = resource.name
        try:
            entry = future.result(timeout=LIMITS_TIMEOUT_SECONDS).get("max.message.bytes")
            topic_limit = int(entry.value) if entry is not None else BROKER_DEFAULT_MESSAGE_BYTES
        except Exception as exc:  # KafkaException, a timeout, an authorization error
            topic_limit = BROKER_DEFAULT_MESSAGE_BYTES
            log.warning(
                "cannot read the topic's max.message.bytes; assuming the broker default",
                extra={"topic": topic, "assumed": topic_limit, "error": str(exc)},
            )
        limits[topic] = min(producer_limit, topic_limit)
    return limits


def new_consumer(settings: Settings, metrics: Metrics) -> Consumer:
    config = settings.consumer_config()
    return construct_client(Consumer, settings, "consumer", config, _callbacks("consumer", metrics))


def new_producer(
    settings: Settings, metrics: Metrics, reports: DeliveryReports | None = None
) -> Producer:
    config = settings.producer_config()
    callbacks = _callbacks("producer", metrics)
    if reports is not None:
        callbacks["on_delivery"] = reports.on_delivery
    return construct_client(Producer, settings, "producer", config, callbacks)


# Where the throwaway client of _check_properties may say it has no brokers.
_unheard = logging.getLogger("consumer.kafka.check")
_unheard.addHandler(logging.NullHandler())
_unheard.propagate = False


def _check_properties(client_class: type, config: dict) -> None:
    """librdkafka's own check of every property, by a throwaway client without
    bootstrap servers: it opens no connection, so a refused configuration is reported
    before any client has started connecting."""
    offline = {k: v for k, v in config.items() if k not in ("bootstrap.servers",)}
    client = client_class(offline, logger=_unheard)
    if isinstance(client, Consumer):
        client.close()


def construct_client(
    client_class: type, settings: Settings, client: str, config: dict, callbacks: dict
) -> Any:
    """A librdkafka client, with its logs through `client_log`. librdkafka checks the
    property names and values here, before any connection: a refusal becomes a
    ConfigError naming the environment variable that set the property."""
    try:
        _check_properties(client_class, config)
        return client_class({**config, **callbacks}, logger=client_log)
    except KafkaException as exc:
        raise configuration_refused(
            exc, client, lambda prop: settings.variable_for_property(prop, client)
        ) from None


def _callbacks(client: str, metrics: Metrics) -> dict[str, Any]:
    stopping = False

    def on_error(error: KafkaError) -> None:
        nonlocal stopping
        metrics.client_errors.labels(client, error.name()).inc()
        if stops_the_service(error) and not stopping:
            # Raised out of the poll, consume or flush call that served this callback,
            # i.e. into the runner's loop. Once per client: the same cause is reported
            # again on every reconnect, and the shutdown must not trip over it.
            stopping = True
            raise client_cannot_continue(client, error)
        # The cause in the message: repeats of one cause collapse, distinct causes show.
        client_log.warning(
            f"kafka client error: {error.str()}", extra={"client": client, "error": error.str()}
        )

    callbacks = {"stats_cb": metrics.kafka_stats.update, "error_cb": on_error}
    if client == "consumer":

        def on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
            # Reports of the checkpoints' commits (the asynchronous ones fail only here).
            if error is not None and not nothing_to_commit(error):
                metrics.commit_errors.inc()
                log.error("commit failed", extra={"error": error.str()})

        callbacks["on_commit"] = on_commit
    return callbacks
