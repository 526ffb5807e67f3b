"""Everything that touches confluent-kafka apart from the loop itself: client
construction, Message -> RawRecord, the clean-record encoder, produce with back-pressure,
and the bookkeeping that decides which offsets are safe to commit."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.config import Settings
from consumer.errors import ConfigError, KafkaFailure
from consumer.logs import RepeatFilter
from consumer.metrics import Metrics
from consumer.records import RawRecord
from consumer.schemas import SingleObjectCodec, schema_library

log = logging.getLogger(__name__)
# librdkafka's own logs and the clients' error callbacks: while a broker is unreachable
# they repeat several times a second per client, so repeats are collapsed.
client_log = logging.getLogger("consumer.kafka")
client_log.addFilter(RepeatFilter(window_seconds=30.0))

# How long produce() waits for librdkafka to drain its queue when the queue is full.
# Serving delivery reports is what frees the space, so each wait also serves them.
BACKPRESSURE_POLL_SECONDS = 0.1

Encoder = Callable[[Mapping[str, Any]], bytes]

# Errors that no retry cures: the credentials, the trusted CA or the ACLs are wrong.
# librdkafka would retry them forever while the service looked alive and did nothing,
# so they stop the service like librdkafka's own fatal errors do.
STOPPING_ERRORS = frozenset(
    (
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    )
)


def stops_the_service(error: KafkaError) -> bool:
    return error.fatal() or error.code() in STOPPING_ERRORS


class TopicUnavailable(Exception):
    """The brokers cannot be reached, or the topic does not exist; said in one line."""


def topic_partitions(
    consumer: Consumer, topic: str, bootstrap: str | None, timeout: float
) -> list[int]:
    """The topic's partition numbers, for the operators' commands (replay, tail)."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise TopicUnavailable(
            f"cannot reach the brokers at {bootstrap}: {exc.args[0].str()}"
        ) from None
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
    """Produce, waiting for queue space rather than dropping when librdkafka is full."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:
            on_queue_full()
            producer.poll(BACKPRESSURE_POLL_SECONDS)


class OffsetTracker:
    """Which input offsets may be committed: those whose every output is acknowledged.

    Outputs of one partition are acknowledged out of order (clean and dead-letter
    records go to different topics and partitions), so a partition's commit point is
    the first offset still waiting, or one past the last one done. Input offsets of a
    partition arrive in increasing order, which keeps this a queue per partition.
    """

    def __init__(self) -> None:
        # (topic, partition) -> {offset: done}, in consume order.
        self._in_flight: dict[tuple[str, int], dict[int, bool]] = {}

    def start(self, topic: str, partition: int, offset: int) -> None:
        # Called for every record: no empty dict built for setdefault, no iterator
        # unless the partition already has offsets in flight.
        key = (topic, partition)
        offsets = self._in_flight.get(key)
        if offsets is None:
            self._in_flight[key] = {offset: False}
            return
        rewound = bool(offsets) and offset <= next(reversed(offsets))
        offsets[offset] = False
        if rewound:
            # librdkafka moved the partition back without a revocation (an offset reset
            # after log truncation): keep the queue in offset order, so the commit point
            # can never pass an older offset still waiting. Rare, so the sort is cheap.
            self._in_flight[key] = dict(sorted(offsets.items()))

    def finish(self, topic: str, partition: int, offset: int) -> None:
        offsets = self._in_flight.get((topic, partition))
        if offsets is not None and offset in offsets:
            offsets[offset] = True

    def pending(self) -> int:
        return sum(
            1 for offsets in self._in_flight.values() for done in offsets.values() if not done
        )

    def take_commit_points(self) -> list[TopicPartition]:
        """Offsets to store (the next offset to read) for partitions that moved on."""
        moved: list[TopicPartition] = []
        for (topic, partition), offsets in self._in_flight.items():
            next_offset = None
            while offsets:
                first = next(iter(offsets))
                if not offsets[first]:
                    break
                del offsets[first]
                next_offset = first + 1
            if next_offset is not None:
                moved.append(TopicPartition(topic, partition, next_offset))
        return moved

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._in_flight.pop((tp.topic, tp.partition), None)


def new_consumer(settings: Settings, metrics: Metrics) -> Consumer:
    config = settings.consumer_config()
    return construct_client(Consumer, settings, "consumer", config, _callbacks("consumer", metrics))


def new_producer(settings: Settings, metrics: Metrics) -> Producer:
    config = settings.producer_config()
    return construct_client(Producer, settings, "producer", config, _callbacks("producer", metrics))


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


_QUOTED = re.compile(r'"([^"]+)"')


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
        text = exc.args[0].str() if isinstance(exc.args[0], KafkaError) else str(exc)
        named = (settings.variable_for_property(q, client) for q in _QUOTED.findall(text))
        variable = next((name for name in named if name), None)
        if variable:
            raise ConfigError(f"{variable}: {text}") from None
        raise ConfigError(f"the {client} refused its configuration: {text}") from None


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
            raise KafkaFailure(f"kafka {client} cannot continue: {error.str()} ({error.name()})")
        # The cause in the message: repeats of one cause collapse, distinct causes show.
        client_log.warning(
            f"kafka client error: {error.str()}", extra={"client": client, "error": error.str()}
        )

    callbacks = {"stats_cb": metrics.kafka_stats.update, "error_cb": on_error}
    if client == "consumer":

        def on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
            # Reports of librdkafka's own commits: background, on revocation, on close.
            if error is not None and error.code() != KafkaError._NO_OFFSET:
                metrics.commit_errors.inc()
                log.error("commit failed", extra={"error": error.str()})

        callbacks["on_commit"] = on_commit
    return callbacks
